package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/remediator/remediator/internal/config"
)

// object is one resource of a build, decoded into its API type.
type object struct {
	apiVersion, kind, namespace, name string
	// value points at the typed resource (*appsv1.Deployment, ...).
	value any
}

func (o object) String() string {
	if o.namespace == "" {
		return o.kind + " " + o.name
	}
	return o.kind + " " + o.namespace + "/" + o.name
}

// schemas are the kinds deploy/ may hold, each with the type it decodes into strictly. A kind
// that is not here fails the lint rather than being applied unchecked: add its type here.
var schemas = map[string]func() any{
	"v1/Namespace":                                    func() any { return new(corev1.Namespace) },
	"v1/ServiceAccount":                               func() any { return new(corev1.ServiceAccount) },
	"v1/Service":                                      func() any { return new(corev1.Service) },
	"v1/ConfigMap":                                    func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                                       func() any { return new(corev1.Secret) },
	"apps/v1/Deployment":                              func() any { return new(appsv1.Deployment) },
	"apps/v1/DaemonSet":                               func() any { return new(appsv1.DaemonSet) },
	"policy/v1/PodDisruptionBudget":                   func() any { return new(policyv1.PodDisruptionBudget) },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return new(rbacv1.Role) },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return new(rbacv1.RoleBinding) },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return new(rbacv1.ClusterRole) },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return new(rbacv1.ClusterRoleBinding) },
	"monitoring.coreos.com/v1/ServiceMonitor":         func() any { return new(monitoringv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule":         func() any { return new(monitoringv1.PrometheusRule) },
	"scheduling.k8s.io/v1/PriorityClass":              func() any { return new(schedulingv1.PriorityClass) },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return new(networkingv1.NetworkPolicy) },
}

// checkedByTool are the kinds whose types live in modules remediator does not import (they
// would bring their whole dependency trees into its go.mod): each is decoded loosely here, into
// what the lint's own checks read, and strictly, with its project's own code, by a tool of
// tools/ (checkScaledObjects runs bin/keda-check).
var checkedByTool = map[string]func(data []byte) (any, error){
	"keda.sh/v1alpha1/ScaledObject": decodeScaledObject,
}

// clusterScoped are the kinds above that live outside namespaces.
var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "PriorityClass": true}

// deployment is a linted build: its objects, and remediator's configurations as the pods that
// run it see them.
type deployment struct {
	objects []object
	// serve is the configuration of the serve container, loaded with internal/config from the
	// files the container is given (nil where there is none).
	serve *config.Config
	// serveKey is the public key of serve's NATS identity (nats.nkey_file or creds_file), as
	// its pod sees the file; empty without one.
	serveKey string
	// agents are the node agents' pods, each with its configuration as its pod sees it.
	agents []agentPod
	// webhookToken is the content of serve's webhook.bearer_token_file.
	webhookToken string
	// exporter is kubernetes-event-exporter's configuration, its environment expanded.
	exporter *exporterConfig
}

// lint builds the kustomization in dir and lints what it makes (lintObjects).
func lint(dir string) (*deployment, error) {
	resources, err := kustomize(dir)
	if err != nil {
		return nil, err
	}
	return lintObjects(resources)
}

// lintObjects decodes every object of a build, kustomize's or Helm's (one YAML document each),
// and checks them and the configurations they carry. Every problem is reported, each naming
// its object.
func lintObjects(resources [][]byte) (*deployment, error) {
	d := &deployment{}
	var errs []error
	for _, data := range resources {
		o, err := decode(data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.objects = append(d.objects, o)
	}
	errs = append(errs, d.checkNamespaces()...)
	errs = append(errs, d.checkReferences()...)
	errs = append(errs, d.checkContainers()...)
	errs = append(errs, d.checkSelectors()...)
	errs = append(errs, d.checkRBAC()...)
	errs = append(errs, d.loadConfigs()...)
	errs = append(errs, d.checkAgents()...)
	errs = append(errs, d.checkAgentIdentities()...)
	errs = append(errs, d.checkNetworkPolicies()...)
	errs = append(errs, d.checkMetricsScrape()...)
	errs = append(errs, d.checkScaledObjects()...)
	errs = append(errs, d.checkPolicies()...)
	return d, errors.Join(errs...)
}

// kustomize runs `kustomize build dir` and returns each resource as YAML.
func kustomize(dir string) ([][]byte, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out [][]byte
	for _, r := range m.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		out = append(out, data)
	}
	return out, nil
}

// decode decodes one resource into the type of its kind, refusing unknown fields.
func decode(data []byte) (object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return object{}, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	o := object{apiVersion: meta.APIVersion, kind: meta.Kind, namespace: meta.Metadata.Namespace, name: meta.Metadata.Name}
	if decodeLoosely, ok := checkedByTool[meta.APIVersion+"/"+meta.Kind]; ok {
		v, err := decodeLoosely(data)
		if err != nil {
			return o, fmt.Errorf("%v: %w", o, err)
		}
		o.value = v
		return o, nil
	}
	newValue, ok := schemas[meta.APIVersion+"/"+meta.Kind]
	if !ok {
		return o, fmt.Errorf("%v: unknown kind %s %s: give it a type in deploy/kubernetes_test.go (schemas) to apply it", o, meta.APIVersion, meta.Kind)
	}
	o.value = newValue()
	if err := yaml.UnmarshalStrict(data, o.value); err != nil {
		return o, fmt.Errorf("%v: %w", o, err)
	}
	return o, nil
}

// workload is an object that runs pods.
type workload struct {
	object
	pod *corev1.PodTemplateSpec
}

func (d *deployment) workloads() []workload {
	var ws []workload
	for _, o := range d.objects {
		switch v := o.value.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o, &v.Spec.Template})
		case *appsv1.DaemonSet:
			ws = append(ws, workload{o, &v.Spec.Template})
		}
	}
	return ws
}

func (d *deployment) find(kind, namespace, name string) (object, bool) {
	for _, o := range d.objects {
		if o.kind == kind && o.namespace == namespace && o.name == name {
			return o, true
		}
	}
	return object{}, false
}

// keys returns the keys of a ConfigMap or Secret, or ok false if the build has no such object.
func (d *deployment) keys(kind, namespace, name string) (keys []string, ok bool) {
	o, ok := d.find(kind, namespace, name)
	if !ok {
		return nil, false
	}
	for k := range d.data(o) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, true
}

// data returns the content of a ConfigMap or Secret by key.
func (d *deployment) data(o object) map[string][]byte {
	out := map[string][]byte{}
	switch v := o.value.(type) {
	case *corev1.ConfigMap:
		for k, s := range v.Data {
			out[k] = []byte(s)
		}
		for k, b := range v.BinaryData {
			out[k] = b
		}
	case *corev1.Secret:
		for k, b := range v.Data {
			out[k] = b
		}
		for k, s := range v.StringData {
			out[k] = []byte(s)
		}
	}
	return out
}

func (d *deployment) checkNamespaces() []error {
	var errs []error
	for _, o := range d.objects {
		switch {
		case clusterScoped[o.kind] && o.namespace != "":
			errs = append(errs, fmt.Errorf("%v: a %s has no namespace", o, o.kind))
		case !clusterScoped[o.kind] && o.namespace == "":
			// Applied as it is, it would land in whatever namespace kubectl's context names.
			errs = append(errs, fmt.Errorf("%v: no namespace", o))
		case !clusterScoped[o.kind] && o.namespace != "kube-system" && o.namespace != "default":
			if _, ok := d.find("Namespace", "", o.namespace); !ok {
				errs = append(errs, fmt.Errorf("%v: namespace %s is not created by the build", o, o.namespace))
			}
		}
	}
	return errs
}

// checkReferences checks that every ConfigMap, Secret (and key) and ServiceAccount a pod uses
// is in the build: a pod that names a missing one never starts.
func (d *deployment) checkReferences() []error {
	var errs []error
	for _, w := range d.workloads() {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%v: %s", w, fmt.Sprintf(format, args...)))
		}
		ref := func(what, kind, name string, wantKeys []string, optional bool) {
			keys, ok := d.keys(kind, w.namespace, name)
			switch {
			case !ok && !optional:
				bad("%s: %s %s/%s is not in the build", what, kind, w.namespace, name)
			case ok:
				for _, k := range wantKeys {
					if !slices.Contains(keys, k) {
						bad("%s: %s %s/%s has no key %q (it has %s)", what, kind, w.namespace, name, k, strings.Join(keys, ", "))
					}
				}
			}
		}
		spec := w.pod.Spec
		if spec.ServiceAccountName == "" {
			bad("runs as its namespace's default ServiceAccount: give it one of its own")
		} else if _, ok := d.find("ServiceAccount", w.namespace, spec.ServiceAccountName); !ok {
			bad("ServiceAccount %s/%s is not in the build", w.namespace, spec.ServiceAccountName)
		}
		for _, v := range spec.Volumes {
			what := fmt.Sprintf("volume %q", v.Name)
			switch {
			case v.ConfigMap != nil:
				ref(what, "ConfigMap", v.ConfigMap.Name, itemKeys(v.ConfigMap.Items), optional(v.ConfigMap.Optional))
			case v.Secret != nil:
				ref(what, "Secret", v.Secret.SecretName, itemKeys(v.Secret.Items), optional(v.Secret.Optional))
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.ConfigMap != nil {
						ref(what, "ConfigMap", s.ConfigMap.Name, itemKeys(s.ConfigMap.Items), optional(s.ConfigMap.Optional))
					}
					if s.Secret != nil {
						ref(what, "Secret", s.Secret.Name, itemKeys(s.Secret.Items), optional(s.Secret.Optional))
					}
				}
			}
		}
		for _, c := range containers(spec) {
			for _, e := range c.Env {
				what := fmt.Sprintf("container %q: env %s", c.Name, e.Name)
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					ref(what, "Secret", r.Name, []string{r.Key}, optional(r.Optional))
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					ref(what, "ConfigMap", r.Name, []string{r.Key}, optional(r.Optional))
				}
			}
			for _, e := range c.EnvFrom {
				what := fmt.Sprintf("container %q: envFrom", c.Name)
				if e.SecretRef != nil {
					ref(what, "Secret", e.SecretRef.Name, nil, optional(e.SecretRef.Optional))
				}
				if e.ConfigMapRef != nil {
					ref(what, "ConfigMap", e.ConfigMapRef.Name, nil, optional(e.ConfigMapRef.Optional))
				}
			}
			for _, m := range c.VolumeMounts {
				v, ok := volume(spec, m.Name)
				if !ok {
					bad("container %q: mounts volume %q, which the pod does not have", c.Name, m.Name)
					continue
				}
				// A subPath of a ConfigMap or Secret volume is one of its keys.
				if m.SubPath != "" && v.ConfigMap != nil && len(v.ConfigMap.Items) == 0 {
					ref(fmt.Sprintf("container %q: mount %s", c.Name, m.MountPath), "ConfigMap", v.ConfigMap.Name, []string{m.SubPath}, false)
				}
				if m.SubPath != "" && v.Secret != nil && len(v.Secret.Items) == 0 {
					ref(fmt.Sprintf("container %q: mount %s", c.Name, m.MountPath), "Secret", v.Secret.SecretName, []string{m.SubPath}, false)
				}
			}
		}
	}
	return errs
}

func itemKeys(items []corev1.KeyToPath) []string {
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	return keys
}

func optional(b *bool) bool { return b != nil && *b }

func containers(spec corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func volume(spec corev1.PodSpec, name string) (corev1.Volume, bool) {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// checkContainers checks what every container needs to run safely and be looked after:
// resources, probes where it serves, and a locked-down securityContext.
func (d *deployment) checkContainers() []error {
	var errs []error
	for _, w := range d.workloads() {
		spec := w.pod.Spec
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%v: %s", w, fmt.Sprintf(format, args...)))
		}
		hostPath := slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil })
		if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			bad("hostNetwork without dnsPolicy ClusterFirstWithHostNet: Service names (nats.url) would not resolve")
		}
		if !d.bound(w.namespace, spec.ServiceAccountName) && !tokenOff(d, w) {
			bad("its ServiceAccount has no RBAC binding, yet its pods get an API token: set automountServiceAccountToken: false")
		}
		for _, c := range containers(spec) {
			r := c.Resources
			if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() {
				bad("container %q: requests no cpu or no memory: the scheduler cannot place it", c.Name)
			}
			if r.Limits.Memory().IsZero() {
				bad("container %q: no memory limit", c.Name)
			}
			if len(c.Ports) > 0 && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
				bad("container %q: serves ports but lacks a liveness or readiness probe", c.Name)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" &&
					!slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.HTTPGet.Port.StrVal }) {
					bad("container %q: a probe names port %q, which the container does not declare", c.Name, p.HTTPGet.Port.StrVal)
				}
			}
			sc := c.SecurityContext
			switch {
			case sc == nil:
				bad("container %q: no securityContext", c.Name)
				continue
			case sc.Privileged != nil && *sc.Privileged:
				bad("container %q: privileged", c.Name)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				bad("container %q: allowPrivilegeEscalation must be false", c.Name)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				bad("container %q: readOnlyRootFilesystem must be true", c.Name)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
				bad("container %q: must drop ALL capabilities (and add back only what it needs)", c.Name)
			}
			// Root only where the pod works on the host's files.
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil && spec.SecurityContext != nil {
				nonRoot = spec.SecurityContext.RunAsNonRoot
			}
			if !hostPath && (nonRoot == nil || !*nonRoot) {
				bad("container %q: may run as root without a hostPath to need it: set runAsNonRoot", c.Name)
			}
		}
	}
	return errs
}

// bound says whether any RoleBinding or ClusterRoleBinding names the ServiceAccount.
func (d *deployment) bound(namespace, serviceAccount string) bool {
	names := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Name == serviceAccount && s.Namespace == namespace
		})
	}
	for _, o := range d.objects {
		switch v := o.value.(type) {
		case *rbacv1.RoleBinding:
			if names(v.Subjects) {
				return true
			}
		case *rbacv1.ClusterRoleBinding:
			if names(v.Subjects) {
				return true
			}
		}
	}
	return false
}

func tokenOff(d *deployment, w workload) bool {
	if a := w.pod.Spec.AutomountServiceAccountToken; a != nil {
		return !*a
	}
	if o, ok := d.find("ServiceAccount", w.namespace, w.pod.Spec.ServiceAccountName); ok {
		if a := o.value.(*corev1.ServiceAccount).AutomountServiceAccountToken; a != nil {
			return !*a
		}
	}
	return false
}

// checkSelectors checks that Services, PodDisruptionBudgets and ServiceMonitors select what
// they are meant to, and that the ports they name exist.
func (d *deployment) checkSelectors() []error {
	var errs []error
	pods := func(namespace string, sel labels.Selector) []workload {
		var out []workload
		for _, w := range d.workloads() {
			if w.namespace == namespace && sel.Matches(labels.Set(w.pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	for _, o := range d.objects {
		switch v := o.value.(type) {
		case *corev1.Service:
			selected := pods(o.namespace, labels.SelectorFromSet(v.Spec.Selector))
			if len(v.Spec.Selector) == 0 || len(selected) == 0 {
				errs = append(errs, fmt.Errorf("%v: selects no pod of the build", o))
				continue
			}
			for _, p := range v.Spec.Ports {
				name := p.TargetPort.StrVal
				if name == "" {
					continue
				}
				if !slices.ContainsFunc(selected, func(w workload) bool { return declaresPort(w.pod.Spec, name) }) {
					errs = append(errs, fmt.Errorf("%v: port %s targets %q, which no selected container declares", o, p.Name, name))
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := selector(v.Spec.Selector)
			if err != nil || len(pods(o.namespace, sel)) == 0 {
				errs = append(errs, fmt.Errorf("%v: selects no pod of the build", o))
			}
		case *monitoringv1.ServiceMonitor:
			sel, err := selector(&v.Spec.Selector)
			var svcs []*corev1.Service
			for _, s := range d.objects {
				if svc, ok := s.value.(*corev1.Service); ok && err == nil && s.namespace == o.namespace && sel.Matches(labels.Set(svc.Labels)) {
					svcs = append(svcs, svc)
				}
			}
			if len(svcs) == 0 {
				errs = append(errs, fmt.Errorf("%v: selects no Service of the build", o))
				continue
			}
			for _, e := range v.Spec.Endpoints {
				if !slices.ContainsFunc(svcs, func(s *corev1.Service) bool {
					return slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port })
				}) {
					errs = append(errs, fmt.Errorf("%v: endpoint port %q is not a port of the Services it selects", o, e.Port))
				}
			}
		}
	}
	return errs
}

func selector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

func declaresPort(spec corev1.PodSpec, name string) bool {
	return slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool {
		return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
	})
}

// checkRBAC checks that every binding's role and ServiceAccounts are in the build.
func (d *deployment) checkRBAC() []error {
	var errs []error
	check := func(o object, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		ns := o.namespace
		if ref.Kind == "ClusterRole" {
			ns = ""
		}
		if _, ok := d.find(ref.Kind, ns, ref.Name); !ok {
			errs = append(errs, fmt.Errorf("%v: binds %s %s, which is not in the build", o, ref.Kind, ref.Name))
		}
		for _, s := range subjects {
			if s.Kind != rbacv1.ServiceAccountKind {
				continue
			}
			if _, ok := d.find("ServiceAccount", s.Namespace, s.Name); !ok {
				errs = append(errs, fmt.Errorf("%v: binds ServiceAccount %s/%s, which is not in the build", o, s.Namespace, s.Name))
			}
		}
	}
	for _, o := range d.objects {
		switch v := o.value.(type) {
		case *rbacv1.RoleBinding:
			check(o, v.RoleRef, v.Subjects)
		case *rbacv1.ClusterRoleBinding:
			check(o, v.RoleRef, v.Subjects)
		}
	}
	return errs
}

// TestKubernetesManifests builds deploy/kubernetes and lints it: strict types, references,
// containers, selectors, RBAC, and remediator's configurations loaded as its pods see them.
func TestKubernetesManifests(t *testing.T) {
	d, err := shipped()
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	kinds := map[string]int{}
	for _, o := range d.objects {
		kinds[o.kind]++
	}
	if d.serve == nil || len(d.agents) == 0 || d.exporter == nil {
		t.Fatalf("the serve, agent and event-exporter configurations must all be in the build (serve %v, agents %d, exporter %v)",
			d.serve != nil, len(d.agents), d.exporter != nil)
	}
	// The build holds what the README promises; a resource lost from a kustomization would
	// otherwise pass every check above by its absence.
	// A Deployment and a Secret per node of serve's agents file (three example nodes as
	// shipped); checkAgentIdentities holds each agent of the build to a node of that file.
	nodes := len(d.serve.NATS.Agents)
	want := map[string]int{"Namespace": 2, "ServiceAccount": 3, "Deployment": 2 + nodes, "DaemonSet": 0, "Service": 1,
		"PodDisruptionBudget": 1, "ConfigMap": 4, "Secret": 4 + nodes, "Role": 1, "RoleBinding": 1, "ClusterRole": 1,
		"ClusterRoleBinding": 1, "ServiceMonitor": 1, "PrometheusRule": 1, "PriorityClass": 1, "NetworkPolicy": 4}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s objects, want %d", kinds[k], k, n)
		}
	}
}

// TestFixtureCluster checks that the deployment the broken twins overlay passes the lint, so
// that each twin fails for its own fault alone.
func TestFixtureCluster(t *testing.T) {
	d, err := fixture()
	if err != nil {
		t.Fatalf("testdata/kustomize/cluster:\n%v", err)
	}
	if d.serve == nil {
		t.Fatal("testdata/kustomize/cluster: no serve configuration")
	}
	if d.serveKey == "" || len(d.agents) != 2 || len(d.serve.NATS.Agents) != 2 {
		t.Fatalf("testdata/kustomize/cluster: serve's key %q, %d agents, agents file %v", d.serveKey, len(d.agents), d.serve.NATS.Agents)
	}
}

// TestBrokenKustomizations checks that the lint refuses each broken kustomization under
// testdata/kustomize with the exact error its kustomization.yaml names.
func TestBrokenKustomizations(t *testing.T) {
	for _, tc := range []struct{ name, why string }{
		{"unknown-field", "a misspelt field is dropped by the API server's defaulting, silently"},
		{"unknown-kind", "a kind without a schema would be applied unchecked"},
		{"bad-kustomization", "kustomize itself refuses a misspelt kustomization key"},
		{"missing-secret", "a pod naming a missing Secret never starts"},
		{"agent-not-on-control-plane", "an agent that does not tolerate the control-plane taint runs nowhere useful, and one evicted from a sick node leaves it without"},
		{"no-probes", "a server without probes takes traffic before it is ready"},
		{"bad-config", "remediator serve refuses its configuration at start"},
		{"agent-daemonset", "a DaemonSet's pods all get the same Secrets: every node would hold the same key"},
		{"agent-other-node-secret", "a node holding another node's key can answer in its place"},
		{"agent-etcd-secret", "an agent's pod holds its own node's identity only, not serve's etcd certificate"},
		{"agent-wrong-key", "NATS and serve know the agent by the key in serve's agents file, not the one in its Secret"},
		{"agent-same-node", "two agents on one node, and a node without one"},
		{"agent-unpinned", "an agent's Deployment is one pod, pinned to its node, never two at once"},
		{"agent-no-config", "an agent without its configuration has no NATS, no key and no service key"},
		{"agent-config-unread", "an agent whose configuration does not load is still a workload to check"},
		{"agent-wrong-service-key", "the agents obey only the keys in agent.service_keys, and serve signs with another"},
		{"agents-file-serve-key", "internal/config refuses an agent with serve's key, which could sign requests the other agents obey"},
		{"serve-without-agents-file", "serve takes no answer an agent's key did not sign, and knows none"},
		{"serve-without-operators", "serve's port is open to the ingress, and an API without operator tokens answers every read"},
		{"nats-insecure", "nats.insecure drops the TLS and credentials this deployment relies on"},
		{"agent-nats-insecure", "an agent's nats.insecure drops them as serve's does"},
		{"nats-open", "a NATS client port open to every pod of the cluster"},
		{"nats-agents-by-label", "host-network agents are not matched by podSelector on most CNIs"},
		{"nats-routes-closed", "NATS servers that cannot reach each other's routes form no cluster"},
		{"networkpolicy-unknown-field", "a misspelt NetworkPolicy field is dropped by the API server, silently"},
		{"networkpolicy-selects-nothing", "a policy whose podSelector matches no pod guards nothing"},
		{"serve-closed-to-exporter", "a policy that keeps the exporter from serve loses every event"},
		{"servicemonitor-no-token", "serve asks for a token on /metrics: a scrape without one gets 401"},
		{"servicemonitor-wrong-token", "a scrape with another token than serve's gets 401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := "testdata/kustomize/" + tc.name
			_, err := lint(dir)
			wantError(t, dir+"/kustomization.yaml", tc.why, err)
		})
	}
}
