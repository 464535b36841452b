package deploy

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// natsPodLabels are the labels the NATS Helm chart gives its server pods: the release's name is
// the instance (and, for a release whose name holds "nats", the client Service's name).
func natsPodLabels(release string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": release, "app.kubernetes.io/component": "nats"}
}

// The NATS servers' ports, as the chart names them.
var (
	natsClientPort  = netPort{4222, "nats", "clients"}
	natsRoutePort   = netPort{6222, "cluster", "routes"}
	natsMonitorPort = netPort{8222, "monitor", "monitoring"}
)

// monitoringNamespace is where Prometheus and Alertmanager run (kube-prometheus-stack's usual
// namespace; deploy/README.md assumes it).
const monitoringNamespace = "monitoring"

// netPort is a port a pod takes connections on.
type netPort struct {
	number int32
	name   string
	// what it is for, in messages.
	what string
}

func (p netPort) String() string {
	if p.what == "" {
		return fmt.Sprint(p.number)
	}
	return fmt.Sprintf("%d (%s)", p.number, p.what)
}

// peer is what a connection comes from: a pod (its namespace and labels) or, for a node and its
// host-network pods, an address.
type peer struct {
	name      string
	namespace string
	labels    map[string]string
	ip        net.IP
}

// Peers that no policy of this deployment should let in anywhere.
var (
	tenantPod = peer{name: "a pod of another namespace", namespace: "tenant", labels: map[string]string{"app": "tenant"}}
	// 203.0.113.7 is TEST-NET-3 (RFC 5737): an address outside any cluster.
	outsideAddress = peer{name: "an address outside the cluster (203.0.113.7)", ip: net.ParseIP("203.0.113.7")}
)

// nsLabels are a namespace's labels as the API server has them: its own, and
// kubernetes.io/metadata.name, which the API server sets on every namespace.
func (d *deployment) nsLabels(ns string) labels.Set {
	set := labels.Set{corev1.LabelMetadataName: ns}
	if o, ok := d.find("Namespace", "", ns); ok {
		maps.Copy(set, o.value.(*corev1.Namespace).Labels)
		set[corev1.LabelMetadataName] = ns
	}
	return set
}

// policies returns the NetworkPolicies of a namespace that isolate a pod's ingress.
func (d *deployment) policies(namespace string, pod map[string]string) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, o := range d.objects {
		np, ok := o.value.(*networkingv1.NetworkPolicy)
		if !ok || o.namespace != namespace || !ingressPolicy(np) {
			continue
		}
		if sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err == nil && sel.Matches(labels.Set(pod)) {
			out = append(out, np)
		}
	}
	return out
}

// ingressPolicy says whether a policy restricts ingress: policyTypes names Ingress, or is empty
// (then the API server takes Ingress).
func ingressPolicy(np *networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// admits says whether a connection from a peer to a pod's port gets through the NetworkPolicies
// of the pod's namespace, as the API documents them: a pod no policy selects takes everything;
// otherwise some rule of a policy that selects it must match both the port and the peer.
func (d *deployment) admits(namespace string, pod map[string]string, port netPort, from peer) bool {
	nps := d.policies(namespace, pod)
	if len(nps) == 0 {
		return true
	}
	for _, np := range nps {
		for _, r := range np.Spec.Ingress {
			if portsMatch(r.Ports, port) && d.peersMatch(r.From, namespace, from) {
				return true
			}
		}
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, p netPort) bool {
	if len(ports) == 0 {
		return true
	}
	return slices.ContainsFunc(ports, func(np networkingv1.NetworkPolicyPort) bool {
		switch {
		case np.Protocol != nil && *np.Protocol != corev1.ProtocolTCP:
			return false
		case np.Port == nil:
			return true
		case np.Port.Type == intstr.String:
			return np.Port.StrVal == p.name
		case np.EndPort != nil:
			return np.Port.IntVal <= p.number && p.number <= *np.EndPort
		}
		return np.Port.IntVal == p.number
	})
}

func (d *deployment) peersMatch(peers []networkingv1.NetworkPolicyPeer, namespace string, from peer) bool {
	if len(peers) == 0 {
		return true
	}
	return slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool { return d.peerMatches(p, namespace, from) })
}

func (d *deployment) peerMatches(p networkingv1.NetworkPolicyPeer, namespace string, from peer) bool {
	if p.IPBlock != nil {
		return from.ip != nil && inBlock(*p.IPBlock, from.ip)
	}
	if from.ip != nil {
		return false
	}
	nsOK := from.namespace == namespace
	if p.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		nsOK = err == nil && sel.Matches(d.nsLabels(from.namespace))
	}
	podOK := true
	if p.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		podOK = err == nil && sel.Matches(labels.Set(from.labels))
	}
	return nsOK && podOK
}

func inBlock(b networkingv1.IPBlock, ip net.IP) bool {
	_, cidr, err := net.ParseCIDR(b.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	return !slices.ContainsFunc(b.Except, func(e string) bool {
		_, ex, err := net.ParseCIDR(e)
		return err == nil && ex.Contains(ip)
	})
}

// natsService is the NATS Service serve's nats.url names in the cluster (<service>.<namespace>.svc),
// or ok false.
func natsService(urls string) (service, namespace string, ok bool) {
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		parts := strings.Split(u.Hostname(), ".")
		if len(parts) >= 3 && parts[2] == "svc" {
			return parts[0], parts[1], true
		}
	}
	return "", "", false
}

// podPeer is a workload's pods as a peer.
func podPeer(w workload) peer {
	return peer{name: w.String(), namespace: w.namespace, labels: w.pod.Labels}
}

// checkNetworkPolicies checks the NetworkPolicies of the build: each selects pods there are;
// none counts on matching host-network pods by their labels; and, where the build holds them,
// that they let in what remediator needs and keep out the rest. In the NATS namespace (the one
// serve's nats.url names, or the agents' without serve's, when the build creates it): the
// client port only from serve and the agents' nodes, routes only between the NATS servers,
// monitoring only from the monitoring namespace. In serve's namespace: serve's port from
// Alertmanager, Prometheus and the exporter, and no pod's from other namespaces or outside.
func (d *deployment) checkNetworkPolicies() []error {
	var errs []error
	// serve's nats.url, or, where serve's configuration does not load (loadConfigs says why),
	// the agents', which must be the same.
	var natsURL string
	for _, a := range d.agents {
		if a.cfg != nil {
			natsURL = a.cfg.NATS.URL
		}
	}
	if d.serve != nil {
		natsURL = d.serve.NATS.URL
	}
	natsSvc, natsNS, natsHere := natsService(natsURL)
	if natsHere {
		_, natsHere = d.find("Namespace", "", natsNS)
	}
	natsPods := natsPodLabels(natsSvc)
	for _, o := range d.objects {
		np, ok := o.value.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			errs = append(errs, fmt.Errorf("%v: podSelector: %w", o, err))
			continue
		}
		selects := slices.ContainsFunc(d.workloads(), func(w workload) bool {
			return w.namespace == o.namespace && sel.Matches(labels.Set(w.pod.Labels))
		}) || natsHere && o.namespace == natsNS && sel.Matches(labels.Set(natsPods))
		if !selects {
			errs = append(errs, fmt.Errorf("%v: podSelector selects no pod of the build (nor the NATS chart's servers)", o))
		}
		// A peer that picks pods by their labels does not pick host-network pods on most CNIs.
		for i, r := range np.Spec.Ingress {
			for j, p := range r.From {
				if p.IPBlock != nil || p.PodSelector == nil || len(p.PodSelector.MatchLabels)+len(p.PodSelector.MatchExpressions) == 0 {
					continue
				}
				var hostPods []string
				for _, w := range d.workloads() {
					if w.pod.Spec.HostNetwork && d.peerMatches(p, o.namespace, podPeer(w)) {
						hostPods = append(hostPods, w.String())
					}
				}
				if len(hostPods) > 0 {
					errs = append(errs, fmt.Errorf("%v: ingress[%d].from[%d] selects the pods of %s by their labels, and they run on the host network: most CNIs see their connections as their node's address and match no label: allow their nodes with an ipBlock",
						o, i, j, strings.Join(hostPods, ", ")))
				}
			}
		}
	}
	if natsHere {
		errs = append(errs, d.checkNATSPolicies(natsNS, natsPods)...)
	}
	errs = append(errs, d.checkServePolicies()...)
	return errs
}

// checkNATSPolicies checks who reaches the NATS servers' ports.
func (d *deployment) checkNATSPolicies(ns string, natsPods map[string]string) []error {
	var errs []error
	var serves, others []peer
	hostNetworkAgents := false
	for _, w := range d.workloads() {
		switch {
		case slices.ContainsFunc(w.pod.Spec.Containers, func(c corev1.Container) bool { return remediatorCommand(c) == "serve" }):
			serves = append(serves, podPeer(w))
		case w.pod.Spec.HostNetwork:
			hostNetworkAgents = hostNetworkAgents || slices.ContainsFunc(w.pod.Spec.Containers, func(c corev1.Container) bool { return remediatorCommand(c) == "agent" })
		default:
			others = append(others, podPeer(w))
		}
	}
	natsServer := peer{name: "a NATS server", namespace: ns, labels: natsPods}
	natsOther := peer{name: "a pod of namespace " + ns + " that is no NATS server", namespace: ns, labels: map[string]string{"app": "other"}}
	monitoring := peer{name: "Prometheus (namespace " + monitoringNamespace + ")", namespace: monitoringNamespace,
		labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
	strangers := append(slices.Clone(others), natsOther, tenantPod, outsideAddress)
	for _, c := range []struct {
		port    netPort
		must    []peer
		loss    string
		mustNot []peer
		who     string
	}{
		{natsClientPort, serves, "remediator would have no queue", append(slices.Clone(strangers), monitoring), "only remediator serve and the node agents may"},
		{natsRoutePort, []peer{natsServer}, "they would form no cluster", slices.Concat(serves, strangers, []peer{monitoring}), "only the NATS servers themselves may"},
		{natsMonitorPort, nil, "", slices.Concat(serves, strangers), "only the monitoring namespace may"},
	} {
		for _, p := range c.must {
			if !d.admits(ns, natsPods, c.port, p) {
				errs = append(errs, fmt.Errorf("NetworkPolicies of namespace %s: %s cannot reach the NATS servers' port %v: %s", ns, p.name, c.port, c.loss))
			}
		}
		var in []string
		for _, p := range c.mustNot {
			if d.admits(ns, natsPods, c.port, p) {
				in = append(in, p.name)
			}
		}
		if len(in) > 0 {
			errs = append(errs, fmt.Errorf("NetworkPolicies of namespace %s let %s reach the NATS servers' port %v: %s", ns, strings.Join(in, ", "), c.port, c.who))
		}
	}
	// The agents connect from their nodes' addresses: some rule must let an ipBlock in.
	if hostNetworkAgents && !d.admitsSomeBlock(ns, natsPods, natsClientPort) {
		errs = append(errs, fmt.Errorf("NetworkPolicies of namespace %s: no ipBlock may reach the NATS servers' port %v, and the node agents, on the host network, connect from their nodes' addresses: allow the control-plane nodes with an ipBlock", ns, natsClientPort))
	}
	return errs
}

// admitsSomeBlock says whether a rule of the policies selecting a pod lets some ipBlock reach a
// port (or the pod is not isolated at all).
func (d *deployment) admitsSomeBlock(namespace string, pod map[string]string, port netPort) bool {
	nps := d.policies(namespace, pod)
	if len(nps) == 0 {
		return true
	}
	return slices.ContainsFunc(nps, func(np *networkingv1.NetworkPolicy) bool {
		return slices.ContainsFunc(np.Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool {
			return portsMatch(r.Ports, port) && (len(r.From) == 0 || slices.ContainsFunc(r.From, func(p networkingv1.NetworkPolicyPeer) bool { return p.IPBlock != nil }))
		})
	})
}

// checkServePolicies checks, where serve's namespace has NetworkPolicies, that serve's port
// takes what is sent to it, and that no pod of the namespace takes connections from other
// namespaces or from outside.
func (d *deployment) checkServePolicies() []error {
	var errs []error
	for _, w := range d.workloads() {
		if !slices.ContainsFunc(d.objects, func(o object) bool { return o.kind == "NetworkPolicy" && o.namespace == w.namespace }) {
			continue
		}
		for _, c := range w.pod.Spec.Containers {
			for _, cp := range c.Ports {
				port := netPort{number: cp.ContainerPort, name: cp.Name}
				if remediatorCommand(c) == "serve" {
					for _, p := range d.servesSenders(w.namespace) {
						if !d.admits(w.namespace, w.pod.Labels, port, p.peer) {
							errs = append(errs, fmt.Errorf("NetworkPolicies of namespace %s: %s cannot reach %v's port %d: %s", w.namespace, p.name, w, cp.ContainerPort, p.loss))
						}
					}
				}
				var in []string
				for _, p := range []peer{tenantPod, outsideAddress} {
					if d.admits(w.namespace, w.pod.Labels, port, p) {
						in = append(in, p.name)
					}
				}
				if len(in) > 0 {
					errs = append(errs, fmt.Errorf("NetworkPolicies of namespace %s let %s reach %v's port %d", w.namespace, strings.Join(in, ", "), w, cp.ContainerPort))
				}
			}
		}
	}
	return errs
}

// sender is what posts to serve, and what is lost when it cannot.
type sender struct {
	peer
	loss string
}

// servesSenders are the pods that connect to serve: the exporter of the build, Alertmanager,
// and Prometheus where a ServiceMonitor scrapes serve.
func (d *deployment) servesSenders(namespace string) []sender {
	var out []sender
	for _, w := range d.workloads() {
		if slices.ContainsFunc(w.pod.Spec.Containers, func(c corev1.Container) bool { return strings.Contains(c.Image, "kubernetes-event-exporter") }) {
			out = append(out, sender{podPeer(w), "its events would be lost"})
		}
	}
	out = append(out, sender{peer{name: "Alertmanager (pods labelled app.kubernetes.io/name=alertmanager in namespace " + monitoringNamespace + ")",
		namespace: monitoringNamespace, labels: map[string]string{"app.kubernetes.io/name": "alertmanager"}}, "its alerts would be lost"})
	if slices.ContainsFunc(d.objects, func(o object) bool { return o.kind == "ServiceMonitor" && o.namespace == namespace }) {
		out = append(out, sender{peer{name: "Prometheus (pods labelled app.kubernetes.io/name=prometheus in namespace " + monitoringNamespace + ")",
			namespace: monitoringNamespace, labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}, "its scrapes would fail"})
	}
	return out
}
