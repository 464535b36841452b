package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/remediator/remediator/policies"
	"github.com/remediator/remediator/remediations"
)

// chart is remediator's Helm chart, and its release as the README installs it.
const (
	chart            = "helm/remediator"
	release          = "remediator"
	releaseNamespace = "remediator"
)

// Values files of the chart that make lint-deploy renders.
const (
	productionValues = "helm/values-production.yaml"
	kustomizeValues  = "helm/remediator/ci/kustomize-values.yaml"
)

// helm is the Helm client the lint renders the chart with (tools/helm).
var helm = builtTool{env: "REMEDIATOR_HELM_BIN", bin: "helm"}

// builtTool is a binary of tools/ that `make lint-deploy` builds into bin/ and names in env. A
// lint that skipped without it would pass without checking anything: a missing one fails and
// says how to build it.
type builtTool struct{ env, bin string }

func (b builtTool) path() (string, error) {
	p := os.Getenv(b.env)
	if p == "" {
		// go test ./deploy/ without make: the repository's bin/.
		p = filepath.Join("..", "bin", b.bin)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is needed to lint deploy/ and is missing (%v): run `make bin/%s` (from tools/%s), or make lint-deploy", b.bin, err, b.bin, strings.TrimSuffix(b.bin, "-check"))
	}
	return p, nil
}

// helmRun runs bin/helm and returns its standard output; an error holds what helm said.
func helmRun(args ...string) ([]byte, error) {
	bin, err := helm.path()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No kubeconfig, cache or repositories of the machine's: the lint renders offline.
	home, err := os.MkdirTemp("", "lint-deploy-helm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG="+filepath.Join(home, "kubeconfig"),
		"HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return nil, errors.New(strings.TrimSpace(stderr.String() + stdout.String()))
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders the chart (helm template) as the README installs it, with extra flags
// (-f, --set), and returns each object as YAML.
func helmTemplate(flags ...string) ([][]byte, error) {
	out, err := helmRun(append([]string{"template", release, chart, "--namespace", releaseNamespace}, flags...)...)
	if err != nil {
		return nil, templateError(err)
	}
	return splitYAML(out)
}

// templateError is helm's error for a chart that does not render, less where in the templates
// the failing call is (it moves with every edit), so that tests can hold it to its message.
var helmCallSite = regexp.MustCompile(`execution error at \([^)]*\): `)

func templateError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "Error: ")
	msg, _, _ = strings.Cut(msg, "\n\nUse --debug flag")
	return errors.New(helmCallSite.ReplaceAllString(msg, ""))
}

// splitYAML returns the documents of a YAML stream that hold something.
func splitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var v map[string]any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		if len(v) > 0 {
			docs = append(docs, doc)
		}
	}
}

// inCluster are the objects a release of the chart counts on and does not make, as the README
// has the operator make them first: the remediator namespace (helm --create-namespace, labelled
// privileged for the agents), the nats namespace and its NetworkPolicies (kubectl apply -k
// deploy/kubernetes/nats), and the Secrets of deploy/kubernetes's secretGenerator under their
// names without kustomize's hash (the chart's existingSecret defaults), as placeholders.
var inCluster = sync.OnceValues(func() ([][]byte, error) {
	ns := corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
	ns.Name, ns.Labels = releaseNamespace, map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}
	nsYAML, err := yaml.Marshal(ns)
	if err != nil {
		return nil, err
	}
	out := [][]byte{nsYAML}
	natsDocs, err := kustomize("kubernetes/nats")
	if err != nil {
		return nil, err
	}
	out = append(out, natsDocs...)
	docs, err := kustomize("kubernetes")
	if err != nil {
		return nil, err
	}
	for _, doc := range docs {
		o, err := decode(doc)
		if err != nil || o.kind != "Secret" {
			continue // TestKubernetesManifests reports it
		}
		s := o.value.(*corev1.Secret)
		s.Name = unhashed(s.Name)
		data, err := yaml.Marshal(s)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
})

// lintChart renders the chart with the flags given and lints what it makes, with the objects it
// counts on in the cluster, through the same checks as the kustomize build.
func lintChart(flags ...string) (*deployment, error) {
	docs, err := helmTemplate(flags...)
	if err != nil {
		return nil, err
	}
	return lintRendered(docs)
}

func lintRendered(docs [][]byte) (*deployment, error) {
	cluster, err := inCluster()
	if err != nil {
		return nil, err
	}
	return lintObjects(slices.Concat(docs, cluster))
}

// setSecretFiles are the --set-file flags that make the chart create every Secret (secrets.create)
// from the placeholder files of deploy/kubernetes, as an operator would from their own.
func setSecretFiles() []string {
	dir := "kubernetes/remediator/secrets/"
	flags := []string{"--set", "secrets.create=true"}
	for value, file := range map[string]string{
		"secrets.serve.webhookToken": "webhook-token", "secrets.serve.operators": "operators.yaml",
		"secrets.serve.slackBotToken": "slack-bot-token", "secrets.serve.slackSigningSecret": "slack-signing-secret",
		"secrets.metricsToken.token": "metrics-token",
		"secrets.etcdClient.ca":      "etcd-ca.crt", "secrets.etcdClient.cert": "etcd-client.crt", "secrets.etcdClient.key": "etcd-client.key",
		"secrets.nats.nkey": "nats-serve.nk", "secrets.nats.tlsCert": "nats-serve.crt", "secrets.nats.tlsKey": "nats-serve.key", "secrets.nats.ca": "nats-ca.crt",
	} {
		flags = append(flags, "--set-file", value+"="+dir+file)
	}
	for i, node := range []string{"cp-1", "cp-2", "cp-3"} {
		at := fmt.Sprintf("agent.nodes[%d].", i)
		flags = append(flags, "--set", at+"name="+node,
			"--set-file", at+"nkey="+dir+"nats-agent-"+node+".nk",
			"--set-file", at+"tlsCert="+dir+"nats-agent-"+node+".crt",
			"--set-file", at+"tlsKey="+dir+"nats-agent-"+node+".key")
	}
	return flags
}

// chartCases are the renders of the chart that make lint-deploy lints, and what each must hold.
var chartCases = []struct {
	name  string
	flags []string
	// kinds are the counts of objects of these kinds the render must make.
	kinds map[string]int
}{
	{"default values", nil, map[string]int{"Deployment": 6, "Service": 2, "ScaledObject": 0, "Secret": 0, "ConfigMap": 4}},
	{"values-production.yaml", []string{"-f", productionValues}, map[string]int{"Deployment": 6, "ScaledObject": 1, "PodDisruptionBudget": 1}},
	{"ci/kustomize-values.yaml", []string{"-f", kustomizeValues}, map[string]int{"Deployment": 6, "ScaledObject": 0}},
	{"role all", []string{"--set", "serve.role=all"}, map[string]int{"Deployment": 5, "Service": 1}},
	{"secrets created from values", setSecretFiles(), map[string]int{"Secret": 4 + 3}},
	{"policies from files", []string{"--set-file", `policies.default\.yaml=../policies/default.yaml`}, map[string]int{"ConfigMap": 5}},
	{"Slack in Socket Mode", append(setSecretFiles(), "--set", "serve.slackSocketMode=true", "--set-file", "secrets.serve.slackAppToken=testdata/slack-app-token"),
		map[string]int{"Secret": 4 + 3}},
}

// TestHelmLint runs helm lint --strict on the chart with each values file it ships.
func TestHelmLint(t *testing.T) {
	for _, flags := range [][]string{nil, {"-f", productionValues}, {"-f", kustomizeValues}} {
		if out, err := helmRun(append([]string{"lint", "--strict", chart, "--namespace", releaseNamespace}, flags...)...); err != nil {
			t.Errorf("helm lint --strict %s %s:\n%v", chart, strings.Join(flags, " "), err)
		} else if !bytes.Contains(out, []byte("0 chart(s) failed")) {
			t.Errorf("helm lint %s %s:\n%s", chart, strings.Join(flags, " "), out)
		}
	}
}

// TestHelmChart renders the chart (default values, the production example, the kustomize
// mirror, role all, Secrets from values, policies) and lints each render with the checks of the
// kustomize build: strict types, references, containers, selectors, RBAC, remediator's
// configurations loaded as its pods see them, agents and their identities, NetworkPolicies
// (with deploy/kubernetes/nats's), the metrics scrape, and the ScaledObject through KEDA's code.
func TestHelmChart(t *testing.T) {
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			docs, err := helmTemplate(tc.flags...)
			if err != nil {
				t.Fatalf("helm template %s %s:\n%v", chart, strings.Join(tc.flags, " "), err)
			}
			d, err := lintRendered(docs)
			if err != nil {
				t.Fatalf("helm template %s %s, linted:\n%v", chart, strings.Join(tc.flags, " "), err)
			}
			if d.serve == nil || len(d.agents) != 3 || d.exporter == nil {
				t.Fatalf("the serve, agent and event-exporter configurations must all be in the render (serve %v, agents %d, exporter %v)",
					d.serve != nil, len(d.agents), d.exporter != nil)
			}
			// What the render holds, without the cluster's objects the lint adds.
			kinds := map[string]int{}
			for _, doc := range docs {
				if o, err := decode(doc); err == nil {
					kinds[o.kind]++
				}
			}
			// Slack reaches serve one way: Socket Mode, with the app-level token and no signing
			// secret, or HTTP, signed.
			socket := slices.Contains(tc.flags, "serve.slackSocketMode=true")
			if sl := d.serve.Slack; (sl.AppTokenFile != "") != socket || (sl.SigningSecretFile != "") == socket {
				t.Errorf("slack.app_token_file %q, slack.signing_secret_file %q; want only the %s one",
					sl.AppTokenFile, sl.SigningSecretFile, map[bool]string{true: "app token", false: "signing secret"}[socket])
			}
			for k, n := range tc.kinds {
				if kinds[k] != n {
					t.Errorf("%d %s objects, want %d", kinds[k], k, n)
				}
			}
		})
	}
}

// TestHelmBrokenValues checks that the chart refuses each values file under testdata/helm, or
// the lint its render, with the exact message its leading comment names (helm's, less the
// template's line).
func TestHelmBrokenValues(t *testing.T) {
	for _, tc := range []struct{ name, why string }{
		{"intake-zero", "an intake scaled to zero loses Alertmanager's alerts, whose webhook waits 10 s"},
		{"worker-grace-short", "a worker killed before its step's 20 s grace cuts the step"},
		{"keda-role-all", "role all's one Deployment is the intake too, which must not scale to zero"},
		{"keda-guarded-keys", "no worker, no key guard"},
		{"keda-unknown-consumer", "a lag threshold for a consumer there is not is a misspelt one"},
		{"config-owned-key", "a key the chart sets would be silently replaced"},
		{"agent-unknown-node", "an agent serve has no key for is never trusted"},
		{"secrets-create-empty", "a Secret made from empty values opens doors with an empty token"},
		{"bad-role", "serve takes intake, worker or all"},
		{"writable-root", "the image is FROM scratch and runs with nothing writable but its volumes"},
		{"exporter-other-cluster", "serve refuses events of a cluster it does not know"},
		{"bad-policy", "serve refuses to start on a policy that does not load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := "testdata/helm/" + tc.name + ".yaml"
			_, err := lintChart("-f", file)
			wantError(t, file, tc.why, err)
		})
	}
}

// TestBrokenScaledObjects checks that the lint refuses the chart's production render with its
// ScaledObject replaced by each of testdata/keda, with the exact error its leading comment
// names: KEDA's own parsing (through bin/keda-check) and the lint's checks.
func TestBrokenScaledObjects(t *testing.T) {
	docs, err := helmTemplate("-f", productionValues)
	if err != nil {
		t.Fatal(err)
	}
	var rest [][]byte
	for _, doc := range docs {
		if o, err := decode(doc); err != nil || o.kind != "ScaledObject" {
			rest = append(rest, doc)
		}
	}
	if len(rest) != len(docs)-1 {
		t.Fatalf("values-production.yaml renders %d ScaledObjects, want 1", len(docs)-len(rest))
	}
	for _, tc := range []struct{ name, why string }{
		{"misspelt-key", "KEDA ignores a key no scaler reads, and the default lag threshold applies"},
		{"missing-stream", "KEDA refuses a trigger without its stream"},
		{"number-metadata", "the CRD takes string metadata only"},
		{"unknown-field", "a misspelt field is dropped, silently"},
		{"missing-consumer", "a consumer without a trigger waits for a worker that never comes"},
		{"scales-intake", "the intake must never scale to zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := "testdata/keda/" + tc.name + ".yaml"
			so, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = lintRendered(append(slices.Clone(rest), so))
			wantError(t, file, tc.why, err)
		})
	}
}

// TestChartPrometheusRules checks that the chart's copy of the rule file is the rule file.
func TestChartPrometheusRules(t *testing.T) {
	want, err := os.ReadFile(promRules)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chart + "/files/etcd-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s/files/etcd-rules.yaml differs from %s: cp %s %s/files/", chart, promRules, promRules, chart)
	}
}

// TestChartScaledObjectAccount checks that the production example's triggers read the NATS
// account remediator's users are in (deploy/nats/accounts.values.yaml).
func TestChartScaledObjectAccount(t *testing.T) {
	v, err := readYAMLMap("nats/accounts.values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	accounts := slices.Sorted(maps.Keys(atMap(v, "config", "merge", "accounts")))
	if len(accounts) != 1 {
		t.Fatalf("nats/accounts.values.yaml: accounts %v, want remediator's alone", accounts)
	}
	d, err := lintChart("-f", productionValues)
	if err != nil {
		t.Fatalf("values-production.yaml does not pass the lint: see TestHelmChart")
	}
	for _, o := range d.objects {
		so, ok := o.value.(*scaledObject)
		if !ok {
			continue
		}
		for i, tr := range so.Spec.Triggers {
			if got := tr.Metadata["account"]; got != accounts[0] {
				t.Errorf("%v: triggers[%d]: account %q, but remediator's NATS users are in %s: KEDA would find no stream", o, i, got, accounts[0])
			}
		}
	}
}

// TestChartReadmeValues checks that the chart's README lists every value of values.yaml, each
// with its default.
func TestChartReadmeValues(t *testing.T) {
	readme, err := os.ReadFile(chart + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var values yamlv3.Node
	data, err := os.ReadFile(chart + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yamlv3.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // value: its default, as the README's table has them
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\| (.*?) \\|").FindAllSubmatch(readme, -1) {
		rows[string(m[1])] = string(m[2])
	}
	for _, key := range valueKeys("", values.Content[0]) {
		if _, ok := rows[key]; !ok {
			t.Errorf("%s/README.md: no row for value %s (| `%s` | <default> | <meaning> |)", chart, key, key)
		}
	}
}

// valueKeys lists the values a user may set: the leaves of values.yaml, with lists, the maps
// that are data (serve.config, ...) and the Kubernetes objects (resources, securityContexts) as
// leaves.
func valueKeys(prefix string, n *yamlv3.Node) []string {
	dataMaps := map[string]bool{"serve.config": true, "nats.agents": true, "policies": true, "eventExporter.config": true,
		"worker.autoscaling.keda.lagThreshold": true}
	last := prefix[strings.LastIndex(prefix, ".")+1:]
	object := last == "resources" || last == "podSecurityContext" || last == "securityContext"
	if n.Kind != yamlv3.MappingNode || dataMaps[prefix] || object || len(n.Content) == 0 {
		return []string{prefix}
	}
	var keys []string
	for i := 0; i < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if prefix != "" {
			key = prefix + "." + key
		}
		keys = append(keys, valueKeys(key, n.Content[i+1])...)
	}
	return keys
}

// kustomizeToHelm are the names the chart gives what deploy/kubernetes names otherwise (its
// objects and those of its generators, without their hash); any other keeps its name.
var kustomizeToHelm = map[string]string{
	"event-exporter":        release + "-event-exporter",
	"event-exporter-config": release + "-event-exporter-config",
	"default-deny-ingress":  release + "-default-deny-ingress",
}

func helmName(kustomizeName string) string {
	if n, ok := kustomizeToHelm[unhashed(kustomizeName)]; ok {
		return n
	}
	return unhashed(kustomizeName)
}

// TestHelmMatchesKustomize renders the chart with ci/kustomize-values.yaml, which mirrors
// deploy/kubernetes, and compares it object by object with kustomize's build, so that the two
// never drift apart: pod specs (containers, args, env, mounts, probes, resources,
// securityContexts, volumes, tolerations, node selectors), Services' ports, RBAC rules,
// NetworkPolicies, the monitoring objects and every ConfigMap's content (remediator's
// configurations as data). Not compared: what legitimately differs, namely the generators'
// hashes, the labels Helm adds (and so the selectors), annotations, and, with role split, the
// intake's and worker's --role and replicas, each compared with kustomize's one serve
// Deployment (role all is compared as it is).
func TestHelmMatchesKustomize(t *testing.T) {
	kdocs, err := kustomize("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]object{} // kind/name in the chart's naming: kustomize's object
	for _, doc := range kdocs {
		o, err := decode(doc)
		if err != nil {
			t.Fatal(err) // TestKubernetesManifests says more
		}
		// The namespaces and the nats namespace's policies are not the chart's (the README has
		// them made first), nor are the Secrets (existingSecret, or secrets.create).
		if o.kind == "Namespace" || o.kind == "Secret" || o.namespace == "nats" {
			continue
		}
		want[o.kind+"/"+helmName(o.name)] = o
	}
	for _, role := range []string{"split", "all"} {
		t.Run("role "+role, func(t *testing.T) {
			hdocs, err := helmTemplate("-f", kustomizeValues, "--set", "serve.role="+role)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]object{}
			for _, doc := range hdocs {
				o, err := decode(doc)
				if err != nil {
					t.Fatal(err) // TestHelmChart says more
				}
				got[o.kind+"/"+o.name] = o
			}
			serve := "Deployment/" + release
			pairs := map[string][]string{} // kustomize's kind/name: the chart's it matches
			for key := range want {
				pairs[key] = []string{key}
			}
			if role == "split" {
				pairs[serve] = []string{serve + "-intake", serve + "-worker"}
				// The workers' headless Service (their /metrics) has no kustomize twin.
				delete(got, "Service/"+release+"-worker")
			}
			matched := map[string]bool{}
			for _, key := range slices.Sorted(maps.Keys(pairs)) {
				for _, hkey := range pairs[key] {
					h, ok := got[hkey]
					if !ok {
						t.Errorf("%v of deploy/kubernetes has no twin in the chart (%s)", want[key], hkey)
						continue
					}
					matched[hkey] = true
					split := role == "split" && key == serve
					if diff := diffYAML(comparable(want[key], split), comparable(h, split)); diff != "" {
						t.Errorf("%v differs from deploy/kubernetes's %v (- kustomize, + helm):\n%s", h, want[key], diff)
					}
				}
			}
			for _, hkey := range slices.Sorted(maps.Keys(got)) {
				if !matched[hkey] {
					t.Errorf("%v of the chart has no twin in deploy/kubernetes", got[hkey])
				}
			}
		})
	}
}

// comparable is what of an object must be the same in both builds, with kustomize's names
// turned into the chart's; split drops serve's --role and replicas.
func comparable(o object, split bool) any {
	switch v := o.value.(type) {
	case *appsv1.Deployment:
		s := v.Spec.DeepCopy()
		if split {
			s.Replicas = nil
		}
		s.Selector = nil
		s.Template.ObjectMeta = metav1.ObjectMeta{}
		normalizePod(&s.Template.Spec)
		return s
	case *corev1.Service:
		s := v.Spec.DeepCopy()
		s.Selector = nil
		return s
	case *policyv1.PodDisruptionBudget:
		s := v.Spec.DeepCopy()
		s.Selector = nil
		return s
	case *corev1.ServiceAccount:
		return v.AutomountServiceAccountToken
	case *corev1.ConfigMap:
		// Each key's content as data: the chart's YAML is laid out by toYaml, kustomize's as written.
		out := map[string]any{}
		for k, s := range v.Data {
			var data any
			if err := yaml.Unmarshal([]byte(s), &data); err != nil {
				data = s
			}
			out[k] = data
		}
		return out
	case *rbacv1.ClusterRole:
		return v.Rules
	case *rbacv1.Role:
		return v.Rules
	case *rbacv1.ClusterRoleBinding:
		return binding(v.RoleRef, v.Subjects)
	case *rbacv1.RoleBinding:
		return binding(v.RoleRef, v.Subjects)
	case *schedulingv1.PriorityClass:
		return map[string]any{"value": v.Value, "globalDefault": v.GlobalDefault, "description": v.Description, "preemptionPolicy": v.PreemptionPolicy}
	case *networkingv1.NetworkPolicy:
		s := v.Spec.DeepCopy()
		withoutInstance(&s.PodSelector)
		for i := range s.Ingress {
			for j := range s.Ingress[i].From {
				withoutInstance(s.Ingress[i].From[j].PodSelector)
			}
		}
		return s
	case *monitoringv1.ServiceMonitor:
		s := v.Spec.DeepCopy()
		s.Selector = metav1.LabelSelector{}
		for i := range s.Endpoints {
			if a := s.Endpoints[i].Authorization; a != nil && a.Credentials != nil {
				a.Credentials.Name = helmName(a.Credentials.Name)
			}
		}
		return s
	case *monitoringv1.PrometheusRule:
		return v.Spec
	}
	return o.value
}

// normalizePod turns kustomize's names in a pod spec into the chart's, drops what Helm's labels
// change (the spread's selector), drops serve's --role, applies the API server's default pull
// policy for a tagged image, which the chart writes out, and sorts the volumes by name (a
// kustomize patch moves the one it patches first).
func normalizePod(s *corev1.PodSpec) {
	s.ServiceAccountName = helmName(s.ServiceAccountName)
	slices.SortFunc(s.Volumes, func(a, b corev1.Volume) int { return strings.Compare(a.Name, b.Name) })
	for i := range s.Volumes {
		if c := s.Volumes[i].ConfigMap; c != nil {
			c.Name = helmName(c.Name)
		}
		if sec := s.Volumes[i].Secret; sec != nil {
			sec.SecretName = helmName(sec.SecretName)
		}
	}
	for i := range s.TopologySpreadConstraints {
		s.TopologySpreadConstraints[i].LabelSelector = nil
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
		if i := slices.Index(c.Args, "--role"); i >= 0 && i+1 < len(c.Args) {
			c.Args = slices.Delete(slices.Clone(c.Args), i, i+2)
		}
		for j := range c.Env {
			if r := c.Env[j].ValueFrom; r != nil && r.SecretKeyRef != nil {
				r.SecretKeyRef.Name = helmName(r.SecretKeyRef.Name)
			}
		}
	}
}

func binding(ref rbacv1.RoleRef, subjects []rbacv1.Subject) any {
	ref.Name = helmName(ref.Name)
	subjects = slices.Clone(subjects)
	for i := range subjects {
		subjects[i].Name = helmName(subjects[i].Name)
	}
	return map[string]any{"roleRef": ref, "subjects": subjects}
}

// withoutInstance drops the release label Helm's selectors carry and kustomize's do not.
func withoutInstance(ls *metav1.LabelSelector) {
	if ls != nil {
		delete(ls.MatchLabels, "app.kubernetes.io/instance")
		if len(ls.MatchLabels) == 0 {
			ls.MatchLabels = nil
		}
	}
}

// diffYAML returns the lines that differ between two values as YAML, or "" when they are equal.
func diffYAML(a, b any) string {
	ya, errA := yaml.Marshal(a)
	yb, errB := yaml.Marshal(b)
	if err := errors.Join(errA, errB); err != nil {
		return err.Error()
	}
	if bytes.Equal(ya, yb) {
		return ""
	}
	return lineDiff(strings.Split(string(ya), "\n"), strings.Split(string(yb), "\n"))
}

// lineDiff is a line diff of a and b (a longest common subsequence), with the lines around
// each change.
func lineDiff(a, b []string) string {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			lines = append(lines, line{'+', b[j]})
			j++
		default:
			lines = append(lines, line{'-', a[i]})
			i++
		}
	}
	var out strings.Builder
	for k, l := range lines {
		near := false
		for d := max(0, k-2); d <= min(len(lines)-1, k+2); d++ {
			near = near || lines[d].op != ' '
		}
		if near {
			fmt.Fprintf(&out, "%c %s\n", l.op, l.text)
		}
	}
	return out.String()
}

// checkPolicies loads serve's policy files as its pod sees them at policies_dir, with
// remediator's own loader: serve refuses to start when one does not load.
func (d *deployment) checkPolicies() []error {
	if d.serve == nil || d.serve.PoliciesDir == "" {
		return nil
	}
	var errs []error
	for _, w := range d.workloads() {
		for _, c := range w.pod.Spec.Containers {
			if remediatorCommand(c) != "serve" {
				continue
			}
			if err := d.loadPolicies(w, c); err != nil {
				errs = append(errs, fmt.Errorf("%v: container %q: policies_dir %s: %w", w, c.Name, d.serve.PoliciesDir, err))
			}
		}
	}
	return errs
}

func (d *deployment) loadPolicies(w workload, c corev1.Container) error {
	view, err := os.MkdirTemp("", "lint-deploy-policies-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(view)
	if err := d.writeFiles(view, w, c); err != nil {
		return err
	}
	if _, err := policies.LoadDir(filepath.Join(view, d.serve.PoliciesDir), remediations.New(remediations.Deps{})); err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), view, ""))
	}
	return nil
}
