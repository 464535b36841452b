package deploy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/yamlstrict"
)

// kubeadmEtcdDataDir is etcd's --data-dir in kubeadm's etcd.yaml, which the agent reads from
// the manifest when agent.etcd_data_dir is not set: the agent must see it at the same path.
const kubeadmEtcdDataDir = "/var/lib/etcd"

// insecureNATS is what the lint says of a remediator configuration with nats.insecure.
const insecureNATS = "nats.insecure: true: this deployment's NATS takes only TLS and nkeys (deploy/nats), and an insecure client is one anyone on the network can pose as or listen to"

// noEnv is an environment with nothing set.
func noEnv(string) string { return "" }

// loadConfigs loads the configuration of every remediator and kubernetes-event-exporter
// container as the container sees it: the files of its ConfigMap and Secret volumes written
// under a temporary root at their mount paths, so that config.Load reads exactly what the pod
// would, *_file secrets included.
func (d *deployment) loadConfigs() []error {
	root, err := os.MkdirTemp("", "lint-deploy-")
	if err != nil {
		return []error{err}
	}
	defer os.RemoveAll(root)
	var errs []error
	for _, w := range d.workloads() {
		for _, c := range w.pod.Spec.Containers {
			view := filepath.Join(root, w.kind, w.namespace, w.name, c.Name)
			fail := func(err error) { errs = append(errs, fmt.Errorf("%v: container %q: %w", w, c.Name, err)) }
			switch {
			case remediatorCommand(c) == "serve" || remediatorCommand(c) == "agent":
				cfg, err := d.loadConfig(view, w, c)
				if err != nil {
					fail(err)
				}
				var key string // the public key of its NATS identity
				if cfg != nil {
					if cfg.NATS.Insecure {
						fail(errors.New(insecureNATS))
					}
					if p := cfg.NATS.IdentityFile(); p != "" {
						if key, err = publicKey(filepath.Join(view, p)); err != nil {
							fail(err)
						}
					}
				}
				if remediatorCommand(c) == "agent" {
					// Kept whether its configuration loads or not: checkAgents checks its
					// workload all the same.
					d.agents = append(d.agents, agentPod{workload: w, container: c, cfg: cfg, node: w.pod.Spec.NodeSelector[hostnameLabel], key: key})
					continue
				}
				if cfg == nil {
					continue // no --config (the defaults need no check), or it says why above
				}
				for _, err := range checkServe(w, c, cfg) {
					fail(err)
				}
				d.serve, d.serveKey, d.webhookToken = cfg, key, cfg.Webhook.BearerToken
			case strings.Contains(c.Image, "kubernetes-event-exporter"):
				cfg, err := d.loadExporterConfig(view, w, c)
				if err != nil {
					fail(err)
					continue
				}
				d.exporter = cfg
			}
		}
	}
	// They must agree on the cluster, the queue and the token.
	for _, a := range d.agents {
		if d.serve == nil || a.cfg == nil {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%v: agent configuration: %s", a.workload, fmt.Sprintf(format, args...)))
		}
		cluster, err := a.cfg.AgentCluster()
		switch {
		case err != nil:
			bad("%v", err)
		case !slices.Contains(d.serve.ClusterNames(), cluster):
			bad("cluster %q is not one of serve's (%s): remediator would ask agents no one runs", cluster, strings.Join(d.serve.ClusterNames(), ", "))
		}
		if a.cfg.NATS.URL != d.serve.NATS.URL {
			bad("nats.url %q differs from serve's %q", a.cfg.NATS.URL, d.serve.NATS.URL)
		}
	}
	if d.serve != nil && d.exporter != nil {
		errs = append(errs, d.checkExporter()...)
	}
	return errs
}

// remediatorCommand is the remediator subcommand a container runs, or "".
func remediatorCommand(c corev1.Container) string {
	image, _, _ := strings.Cut(c.Image, ":")
	if path.Base(image) != "remediator" || len(c.Args) == 0 {
		return ""
	}
	return c.Args[0]
}

// flag returns the value of a command-line flag (--name value, --name=value, -name=value).
func flag(args []string, name string) (string, bool) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// loadConfig loads a remediator container's --config through internal/config; nil without
// --config (the defaults, which need no check). The returned paths are the container's.
func (d *deployment) loadConfig(view string, w workload, c corev1.Container) (*config.Config, error) {
	file, ok := flag(c.Args, "config")
	if !ok {
		return nil, nil
	}
	if err := d.writeFiles(view, w, c); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(view, file))
	if err != nil {
		return nil, fmt.Errorf("--config %s: no mount of the pod puts a file there", file)
	}
	// Absolute paths in the file are the container's: point them into the view.
	var doc map[string]any
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("--config %s: %w", file, err)
	}
	reroot(doc, view)
	if data, err = yamlv3.Marshal(doc); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(view, file), data, 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(filepath.Join(view, file), env(c))
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), view, ""))
	}
	unroot(&cfg, view)
	return &cfg, nil
}

// reroot points every absolute *_file and *_dir value of a decoded configuration (remediator's
// or nats-server's) under root, where the lint writes the files its pod would see.
func reroot(v any, root string) {
	switch t := v.(type) {
	case map[string]any:
		for k, sub := range t {
			if s, ok := sub.(string); ok && (strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_dir")) && filepath.IsAbs(s) {
				t[k] = filepath.Join(root, s)
				continue
			}
			reroot(sub, root)
		}
	case []any:
		for _, sub := range t {
			reroot(sub, root)
		}
	}
}

// unroot turns the paths of a configuration loaded from a view back into the container's.
func unroot(cfg *config.Config, view string) {
	for _, p := range []*string{&cfg.DataDir, &cfg.PoliciesDir, &cfg.Webhook.BearerTokenFile, &cfg.NATS.CredsFile,
		&cfg.NATS.NkeyFile, &cfg.NATS.AgentsFile, &cfg.NATS.TLS.CAFile, &cfg.NATS.TLS.CertFile, &cfg.NATS.TLS.KeyFile,
		&cfg.TLS.CertFile, &cfg.TLS.KeyFile, &cfg.API.MetricsTokenFile,
		&cfg.API.BearerTokenFile, &cfg.API.OperatorsFile, &cfg.Slack.BotTokenFile, &cfg.Slack.SigningSecretFile,
		&cfg.Agent.ManifestsDir, &cfg.Agent.StoppedDir, &cfg.Agent.BackupDir, &cfg.Agent.EtcdDataDir, &cfg.Agent.Service.FlagsFile} {
		*p = strings.TrimPrefix(*p, view)
	}
	for i := range cfg.Clusters {
		t := &cfg.Clusters[i].Etcd.TLS
		for _, p := range []*string{&t.CAFile, &t.CertFile, &t.KeyFile} {
			*p = strings.TrimPrefix(*p, view)
		}
	}
}

// env is a container's environment as far as the build knows it: literal values.
func env(c corev1.Container) func(string) string {
	return func(name string) string {
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom == nil {
				return e.Value
			}
		}
		return ""
	}
}

// writeFiles writes the files a container sees from its ConfigMap and Secret volumes under
// view, at their paths in the container, and makes the folders its other volumes mount.
func (d *deployment) writeFiles(view string, w workload, c corev1.Container) error {
	type ref struct {
		kind, name string
		items      []corev1.KeyToPath
	}
	for _, m := range c.VolumeMounts {
		v, ok := volume(w.pod.Spec, m.Name)
		if !ok {
			continue // checkReferences says so
		}
		var refs []ref
		switch {
		case v.ConfigMap != nil:
			refs = append(refs, ref{"ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items})
		case v.Secret != nil:
			refs = append(refs, ref{"Secret", v.Secret.SecretName, v.Secret.Items})
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					refs = append(refs, ref{"ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items})
				}
				if s.Secret != nil {
					refs = append(refs, ref{"Secret", s.Secret.Name, s.Secret.Items})
				}
			}
		default:
			if err := os.MkdirAll(filepath.Join(view, m.MountPath), 0o700); err != nil {
				return err
			}
		}
		for _, r := range refs {
			o, ok := d.find(r.kind, w.namespace, r.name)
			if !ok {
				continue // checkReferences says so
			}
			data := d.data(o)
			paths := map[string]string{} // path in the volume: key
			for k := range data {
				paths[k] = k
			}
			if len(r.items) > 0 {
				paths = map[string]string{}
				for _, it := range r.items {
					paths[it.Path] = it.Key
				}
			}
			for p, k := range paths {
				dst := filepath.Join(view, m.MountPath, p)
				if m.SubPath != "" {
					if p != m.SubPath {
						continue
					}
					dst = filepath.Join(view, m.MountPath)
				}
				if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
					return err
				}
				if err := os.WriteFile(dst, data[k], 0o600); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// mountOf returns the mount under which a container sees path, and its volume.
func mountOf(spec corev1.PodSpec, c corev1.Container, p string) (corev1.VolumeMount, corev1.Volume, bool) {
	var best corev1.VolumeMount
	for _, m := range c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best.MountPath) {
			best = m
		}
	}
	if best.Name == "" {
		return best, corev1.Volume{}, false
	}
	v, ok := volume(spec, best.Name)
	return best, v, ok
}

// checkServe checks what serve's configuration asks of its pod.
func checkServe(w workload, c corev1.Container, cfg *config.Config) []error {
	var errs []error
	if _, port, err := net.SplitHostPort(cfg.Listen); err == nil {
		n, _ := strconv.Atoi(port)
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == n }) {
			errs = append(errs, fmt.Errorf("listen %s: the container declares no port %d", cfg.Listen, n))
		}
	}
	if dep, ok := w.value.(*appsv1.Deployment); ok && (dep.Spec.Replicas == nil || *dep.Spec.Replicas > 1) && cfg.NATS.URL == "" {
		errs = append(errs, errors.New("nats.url is empty, so each replica would run its own embedded NATS and share nothing: set nats.url or run one replica"))
	}
	if !cfg.API.Secured() {
		errs = append(errs, errors.New("api: no api.operators_file (nor api.bearer_token_file): every read of the API and the incidents page would be open to whoever reaches serve's port, which the ingress opens in the cluster"))
	}
	if m, _, ok := mountOf(w.pod.Spec, c, cfg.DataDir); !ok || m.ReadOnly {
		errs = append(errs, fmt.Errorf("data_dir %s: on the read-only root filesystem; mount a writable volume there (etcd snapshots go to it)", cfg.DataDir))
	}
	return errs
}

// checkAgents checks the node agents' workloads: one Deployment per control-plane node,
// pinned to it, with the node's name, its own node's Secret and no other, the host network,
// and every folder it works in mounted from the host at the same path (the paths in etcd's
// manifest are the host's).
func (d *deployment) checkAgents() []error {
	var errs []error
	for _, ap := range d.agents {
		w, c := ap.workload, ap.container
		spec := w.pod.Spec
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%v: container %q: %s", w, c.Name, fmt.Sprintf(format, args...)))
		}
		switch v := w.value.(type) {
		case *appsv1.Deployment:
			if v.Spec.Replicas == nil || *v.Spec.Replicas != 1 {
				bad("a node agent's Deployment runs one replica: two pods of one node's agent would both take its requests")
			}
			if v.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				bad("strategy %q: use Recreate, so that a rollout never runs two agents of one node at once", v.Spec.Strategy.Type)
			}
			if ap.node == "" {
				bad("no nodeSelector %s: a node agent's Deployment is pinned to its node", hostnameLabel)
			}
		default:
			bad("the node agents run as one Deployment per control-plane node, pinned to it with its own Secret: a %s's pods all get the same Secrets, so every node would hold the same key and could answer in another's place", w.kind)
		}
		// Its own node's identity and nothing else: not another node's key, nor serve's
		// Secrets (the etcd certificate, the tokens).
		if want := "remediator-agent-" + ap.node; ap.node != "" {
			var got []string
			for _, s := range podSecrets(spec) {
				got = append(got, unhashed(s))
			}
			if !slices.Equal(got, []string{want}) {
				bad("gets Secrets [%s]: a node's agent gets its own node's Secret, %s, and no other: with another identity's key or certificate it could act in its place", strings.Join(got, ", "), want)
			}
		}
		if _, ok := spec.NodeSelector["node-role.kubernetes.io/control-plane"]; !ok {
			bad("no nodeSelector node-role.kubernetes.io/control-plane: the agent belongs on control-plane nodes only")
		}
		for _, taint := range []string{"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"} {
			if !tolerates(spec.Tolerations, taint, corev1.TaintEffectNoSchedule) {
				bad("does not tolerate the %s:NoSchedule taint, so it never runs on a control-plane node", taint)
			}
		}
		// A DaemonSet's pods tolerate these by themselves; a Deployment's get them for 300s.
		for _, taint := range []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} {
			if _, ok := w.value.(*appsv1.Deployment); ok && !toleratesForever(spec.Tolerations, taint, corev1.TaintEffectNoExecute) {
				bad("does not tolerate %s:NoExecute for ever: it would be evicted from a sick node, which no other node's agent can repair", taint)
			}
		}
		if !spec.HostNetwork {
			bad("hostNetwork is off: the agent checks etcd and kube-apiserver on the node's 127.0.0.1")
		}
		if pc := spec.PriorityClassName; pc == "" || !slices.ContainsFunc(d.objects, func(o object) bool { return o.kind == "PriorityClass" && o.name == pc }) {
			bad("priorityClassName %q is not a PriorityClass of the build: without one the agent is evicted first from the node it must repair", pc)
		}
		if node, _ := flag(c.Args, "node"); !fromNodeName(c, node) {
			bad("--node %q is not the node's name from the downward API (env from fieldRef spec.nodeName)", node)
		}
		a := config.Defaults(noEnv).Agent
		switch _, hasConfig := flag(c.Args, "config"); {
		case ap.cfg != nil:
			a = ap.cfg.Agent
		case hasConfig:
			continue // its configuration does not load (loadConfigs says why): its folders are unknown
		}
		dataDir, dataKey := a.EtcdDataDir, "agent.etcd_data_dir"
		if dataDir == "" {
			dataDir, dataKey = kubeadmEtcdDataDir, "etcd's --data-dir (kubeadm)"
		}
		for _, dir := range []struct{ key, path string }{
			{"agent.manifests_dir", a.ManifestsDir}, {"agent.stopped_dir", a.StoppedDir},
			{"agent.backup_dir", a.BackupDir}, {dataKey, dataDir},
		} {
			m, v, ok := mountOf(spec, c, dir.path)
			switch {
			case !ok || v.HostPath == nil:
				bad("%s %s: not mounted from the host", dir.key, dir.path)
			case m.ReadOnly:
				bad("%s %s: mounted read-only", dir.key, dir.path)
			case path.Join(v.HostPath.Path, strings.TrimPrefix(dir.path, m.MountPath)) != dir.path:
				bad("%s %s: mounted from the host's %s; it must be the same path on both sides", dir.key, dir.path, v.HostPath.Path)
			}
		}
	}
	return errs
}

// toleratesForever says whether a toleration of the taint has no tolerationSeconds.
func toleratesForever(ts []corev1.Toleration, key string, effect corev1.TaintEffect) bool {
	return slices.ContainsFunc(ts, func(t corev1.Toleration) bool {
		return t.TolerationSeconds == nil && tolerates([]corev1.Toleration{t}, key, effect)
	})
}

func tolerates(ts []corev1.Toleration, key string, effect corev1.TaintEffect) bool {
	return slices.ContainsFunc(ts, func(t corev1.Toleration) bool {
		keyOK := t.Key == key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)
		return keyOK && (t.Effect == "" || t.Effect == effect) && (t.Operator == corev1.TolerationOpExists || t.Value == "")
	})
}

// fromNodeName says whether value is $(VAR) for an env var the downward API fills with the
// pod's node name.
func fromNodeName(c corev1.Container, value string) bool {
	name, ok := strings.CutPrefix(value, "$(")
	if !ok || !strings.HasSuffix(name, ")") {
		return false
	}
	name = strings.TrimSuffix(name, ")")
	return slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	})
}

// exporterConfig is kubernetes-event-exporter's configuration (pkg/exporter/config.go and
// the webhook sink's, upstream), with the keys this deployment uses: an unknown key fails.
type exporterConfig struct {
	LogLevel           string             `yaml:"logLevel"`
	LogFormat          string             `yaml:"logFormat"`
	ClusterName        string             `yaml:"clusterName"`
	Namespace          string             `yaml:"namespace"`
	MaxEventAgeSeconds int64              `yaml:"maxEventAgeSeconds"`
	KubeQPS            float32            `yaml:"kubeQPS"`
	KubeBurst          int                `yaml:"kubeBurst"`
	Route              exporterRoute      `yaml:"route"`
	Receivers          []exporterReceiver `yaml:"receivers"`
}

// exporterRoute is a node of the exporter's routing tree: drop rules first, then match rules,
// each sending to its receiver; the sub-routes only if every match rule matched.
type exporterRoute struct {
	Drop   []exporterRule  `yaml:"drop"`
	Match  []exporterRule  `yaml:"match"`
	Routes []exporterRoute `yaml:"routes"`
}

// exporterRule matches an event: every field set is a regular expression the event's field
// must match (unanchored), labels and annotations are the involved object's.
type exporterRule struct {
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
	Message     string            `yaml:"message"`
	APIVersion  string            `yaml:"apiVersion"`
	Kind        string            `yaml:"kind"`
	Namespace   string            `yaml:"namespace"`
	Reason      string            `yaml:"reason"`
	Type        string            `yaml:"type"`
	MinCount    int32             `yaml:"minCount"`
	Component   string            `yaml:"component"`
	Host        string            `yaml:"host"`
	Receiver    string            `yaml:"receiver"`
}

type exporterReceiver struct {
	Name    string `yaml:"name"`
	Webhook *struct {
		Endpoint string            `yaml:"endpoint"`
		Headers  map[string]string `yaml:"headers"`
	} `yaml:"webhook"`
}

// loadExporterConfig reads the exporter's -conf file as the exporter does: with ${VAR}
// expanded from its environment (here: literal values and Secret keys of the build).
func (d *deployment) loadExporterConfig(view string, w workload, c corev1.Container) (*exporterConfig, error) {
	file, ok := flag(c.Args, "conf")
	if !ok {
		return nil, errors.New("no -conf flag: the exporter would look for config.yaml in its working directory")
	}
	if err := d.writeFiles(view, w, c); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(view, file))
	if err != nil {
		return nil, fmt.Errorf("-conf %s: no mount of the pod puts a file there", file)
	}
	var unset []string
	expanded := os.Expand(string(data), func(name string) string {
		v, ok := d.envValue(w, c, name)
		if !ok {
			unset = append(unset, name)
		}
		return v
	})
	if len(unset) > 0 {
		return nil, fmt.Errorf("-conf %s: uses ${%s}, which the container's environment does not set (it would be empty)", file, strings.Join(unset, "}, ${"))
	}
	var cfg exporterConfig
	if err := yamlstrict.Decode([]byte(expanded), &cfg); err != nil {
		return nil, fmt.Errorf("-conf %s: %w", file, err)
	}
	return &cfg, nil
}

// envValue resolves a container's env var from a literal or a ConfigMap or Secret key.
func (d *deployment) envValue(w workload, c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			return e.Value, true
		case e.ValueFrom.SecretKeyRef != nil:
			if o, ok := d.find("Secret", w.namespace, e.ValueFrom.SecretKeyRef.Name); ok {
				v, ok := d.data(o)[e.ValueFrom.SecretKeyRef.Key]
				return string(v), ok
			}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			if o, ok := d.find("ConfigMap", w.namespace, e.ValueFrom.ConfigMapKeyRef.Name); ok {
				v, ok := d.data(o)[e.ValueFrom.ConfigMapKeyRef.Key]
				return string(v), ok
			}
		}
	}
	return "", false
}

// checkExporter checks that the exporter's events reach remediator: the cluster name it
// stamps on them, the receivers its routes name, and the webhook's URL and token.
func (d *deployment) checkExporter() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("event-exporter configuration: %s", fmt.Sprintf(format, args...)))
	}
	cfg := d.exporter
	if names := d.serve.ClusterNames(); cfg.ClusterName != "" && !slices.Contains(names, cfg.ClusterName) || cfg.ClusterName == "" && len(names) > 1 {
		bad("clusterName %q is not one of remediator's clusters (%s): the webhook would refuse every event", cfg.ClusterName, strings.Join(names, ", "))
	}
	receivers := map[string]exporterReceiver{}
	for _, r := range cfg.Receivers {
		receivers[r.Name] = r
	}
	var walk func(r exporterRoute, at string)
	walk = func(r exporterRoute, at string) {
		for i, rule := range slices.Concat(r.Drop, r.Match) {
			for _, re := range rule.patterns() {
				if _, err := regexp.Compile(re); err != nil {
					bad("%s rule %d: %v", at, i, err)
				}
			}
			if _, ok := receivers[rule.Receiver]; rule.Receiver != "" && !ok {
				bad("%s rule %d: receiver %q is not defined", at, i, rule.Receiver)
			}
		}
		for i, sub := range r.Routes {
			walk(sub, fmt.Sprintf("%s.routes[%d]", at, i))
		}
	}
	walk(cfg.Route, "route")
	for _, r := range cfg.Receivers {
		if r.Webhook == nil {
			continue
		}
		if err := d.reachesRemediator(r.Webhook.Endpoint, "/webhooks/kubernetes"); err != nil {
			bad("receiver %s: %v", r.Name, err)
		}
		switch h := r.Webhook.Headers["Authorization"]; {
		case h == "Bearer "+d.webhookToken:
		case strings.TrimSpace(h) == "Bearer "+d.webhookToken:
			// remediator trims its token file; the exporter's environment keeps the newline,
			// and Go's HTTP client refuses a header value with one.
			bad("receiver %s: the token in the Authorization header has white space around it: write the webhook-token file without a trailing newline", r.Name)
		default:
			bad("receiver %s: the Authorization header is not \"Bearer \" and serve's webhook token: remediator would answer 401", r.Name)
		}
	}
	return errs
}

func (r exporterRule) patterns() []string {
	out := []string{r.Message, r.APIVersion, r.Kind, r.Namespace, r.Reason, r.Type, r.Component, r.Host}
	for _, m := range []map[string]string{r.Labels, r.Annotations} {
		for _, v := range m {
			out = append(out, v)
		}
	}
	return out
}

// reachesRemediator checks that a webhook URL names remediator's Service in the build, on a
// port it serves, at the given path.
func (d *deployment) reachesRemediator(raw, wantPath string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Path != wantPath {
		return fmt.Errorf("%s: the path must be %s", raw, wantPath)
	}
	parts := strings.Split(u.Hostname(), ".")
	if len(parts) < 3 || parts[2] != "svc" {
		return fmt.Errorf("%s: not a Service address (<service>.<namespace>.svc)", raw)
	}
	o, ok := d.find("Service", parts[1], parts[0])
	if !ok {
		return fmt.Errorf("%s: Service %s/%s is not in the build", raw, parts[1], parts[0])
	}
	port, _ := strconv.Atoi(u.Port())
	if !slices.ContainsFunc(o.value.(*corev1.Service).Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port }) {
		return fmt.Errorf("%s: Service %s/%s has no port %d", raw, parts[1], parts[0], port)
	}
	return nil
}
