package deploy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/remediator/remediator/internal/config"
)

// hostnameLabel is the node label a node agent's Deployment is pinned to its node with; the
// kubelet sets it to the node's name unless --hostname-override says otherwise.
const hostnameLabel = "kubernetes.io/hostname"

// agentPod is a node agent's workload with its configuration as its pod sees it.
type agentPod struct {
	workload  workload
	container corev1.Container
	// cfg is the agent's configuration: nil without --config, or when it does not load
	// (loadConfigs says why).
	cfg *config.Config
	// node is the node the workload is pinned to (nodeSelector kubernetes.io/hostname).
	node string
	// key is the public key of the seed at the agent's nats.nkey_file, as its pod sees it.
	key string
}

// publicKey returns the public key of the nkey seed (or creds file) at path.
func publicKey(path string) (string, error) {
	kp, err := config.ReadSeed(path)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// generatedHash is the suffix kustomize's generators append to a ConfigMap's or Secret's name.
var generatedHash = regexp.MustCompile(`-[245-9bcdfghkmt]{10}$`)

// unhashed is the name of a generated ConfigMap or Secret as its generator names it, so that
// messages do not change with the content.
func unhashed(name string) string { return generatedHash.ReplaceAllString(name, "") }

// podSecrets lists the Secrets a pod gets: volumes, projected volumes and environment.
func podSecrets(spec corev1.PodSpec) []string {
	var names []string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			names = append(names, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					names = append(names, s.Secret.Name)
				}
			}
		}
	}
	for _, c := range containers(spec) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				names = append(names, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				names = append(names, e.SecretRef.Name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// checkAgentIdentities checks that each node's agent holds its own NATS identity: the key at
// its nats.nkey_file is the one serve's agents file names for its node, every node of the
// agents file has an agent, and serve's key is one the agents obey. That its pod gets no other
// identity's Secret is checkAgents'; that the agents file does not give an agent serve's own
// key is internal/config's (serve's configuration does not load).
func (d *deployment) checkAgentIdentities() []error {
	var errs []error
	if d.serve == nil || len(d.agents) == 0 {
		return errs
	}
	// Who each key belongs to.
	owner := map[string]string{}
	if d.serveKey != "" {
		owner[d.serveKey] = "serve"
	}
	for _, id := range slices.Sorted(maps.Keys(d.serve.NATS.Agents)) {
		if k := d.serve.NATS.Agents[id]; owner[k] == "" {
			owner[k] = "agent " + id
		}
	}
	if d.serve.NATS.URL != "" && d.serve.NATS.AgentsFile == "" {
		errs = append(errs, fmt.Errorf("serve configuration: no nats.agents_file: serve would take no agent's answer"))
	}
	onNode := map[string]string{} // cluster/node: the workload that runs its agent
	unread := map[string]bool{}   // nodes whose agent's configuration did not load
	for _, a := range d.agents {
		w := a.workload
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%v: container %q: %s", w, a.container.Name, fmt.Sprintf(format, args...)))
		}
		if a.cfg == nil {
			if _, ok := flag(a.container.Args, "config"); !ok {
				bad("no --config: the agent needs nats.url, nats.nkey_file and agent.service_keys")
			}
			// Whose agent it is comes from its configuration; without one, its own error says
			// why rather than its node's lack of an agent.
			unread[a.node] = true
			continue
		}
		if d.serveKey != "" && !slices.Contains(a.cfg.Agent.ServiceKeys, d.serveKey) {
			bad("agent.service_keys %v does not hold serve's public key %s (serve's nats.nkey_file): the agent would refuse every request", a.cfg.Agent.ServiceKeys, d.serveKey)
		}
		cluster, err := a.cfg.AgentCluster()
		if err != nil || a.node == "" || a.key == "" {
			continue // loadConfigs and checkAgents say why
		}
		id := cluster + "/" + a.node
		if other, ok := onNode[id]; ok {
			bad("runs on node %s, as %s does: each control-plane node has one agent", a.node, other)
		}
		onNode[id] = w.String()
		want, named := d.serve.NATS.Agents[id]
		switch {
		case !named:
			bad("serve's agents file (nats.agents_file) names no agent %s: serve would take none of its answers, and NATS would not let its key in (remediator agent credentials --node %s)", id, a.node)
		case a.key != want && owner[a.key] != "":
			bad("nats.nkey_file holds the key of %s (%s), not this node's: serve's agents file names %s for %s", owner[a.key], a.key, want, id)
		case a.key != want:
			bad("nats.nkey_file holds the key %s, but serve's agents file names %s for %s: NATS and serve know this agent by that one", a.key, want, id)
		}
	}
	// Every agent serve expects has a workload: a node without one fails every node-local step.
	for _, id := range slices.Sorted(maps.Keys(d.serve.NATS.Agents)) {
		if _, node, _ := strings.Cut(id, "/"); onNode[id] == "" && !unread[node] {
			errs = append(errs, fmt.Errorf("serve's agents file names agent %s, but no agent of the build runs on node %s: its node-local steps would go unanswered", id, node))
		}
	}
	return errs
}

// checkMetricsScrape checks that the ServiceMonitors of serve's Service send the token serve's
// /metrics asks for (api.metrics_token_file), from a Secret of the build that holds it.
func (d *deployment) checkMetricsScrape() []error {
	if d.serve == nil {
		return nil
	}
	token := d.serve.API.MetricsToken
	var errs []error
	for _, o := range d.objects {
		sm, ok := o.value.(*monitoringv1.ServiceMonitor)
		if !ok || !d.selectsServe(o.namespace, sm) {
			continue
		}
		for _, e := range sm.Spec.Endpoints {
			bad := func(format string, args ...any) {
				errs = append(errs, fmt.Errorf("%v: endpoint %s: %s", o, e.Port, fmt.Sprintf(format, args...)))
			}
			var ref *corev1.SecretKeySelector
			if e.Authorization != nil {
				ref = e.Authorization.Credentials
			}
			switch {
			case ref == nil && token == "":
			case ref == nil:
				bad("sends no token, and serve's /metrics asks for one (api.metrics_token_file): every scrape would get 401")
			case token == "":
				bad("sends a token, and serve's /metrics asks for none (api.metrics_token_file is not set)")
			default:
				s, ok := d.find("Secret", o.namespace, ref.Name)
				got, hasKey := d.data(s)[ref.Key]
				switch {
				case !ok:
					bad("authorization: Secret %s/%s is not in the build", o.namespace, ref.Name)
				case !hasKey:
					bad("authorization: Secret %s has no key %q", unhashed(ref.Name), ref.Key)
				case string(got) == token:
				case strings.TrimSpace(string(got)) == token:
					// remediator trims its token file; Prometheus sends the Secret's bytes as they are.
					bad("the token in Secret %s has white space around it: write the file without a trailing newline", unhashed(ref.Name))
				default:
					bad("the token in Secret %s is not serve's api.metrics_token_file: every scrape would get 401", unhashed(ref.Name))
				}
			}
		}
	}
	return errs
}

// selectsServe says whether a ServiceMonitor selects a Service whose pods run serve.
func (d *deployment) selectsServe(namespace string, sm *monitoringv1.ServiceMonitor) bool {
	sel, err := selector(&sm.Spec.Selector)
	if err != nil {
		return false
	}
	for _, o := range d.objects {
		svc, ok := o.value.(*corev1.Service)
		if !ok || o.namespace != namespace || !sel.Matches(labels.Set(svc.Labels)) || len(svc.Spec.Selector) == 0 {
			continue
		}
		for _, w := range d.workloads() {
			if w.namespace == namespace && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.pod.Labels)) &&
				slices.ContainsFunc(w.pod.Spec.Containers, func(c corev1.Container) bool { return remediatorCommand(c) == "serve" }) {
				return true
			}
		}
	}
	return false
}
