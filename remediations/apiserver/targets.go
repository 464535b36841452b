package apiserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
)

// targets are the nodes whose kube-apiserver is raised, and a sentence saying why those.
func (r *run) targets(ctx context.Context, in remediator.StepInput) ([]string, string, error) {
	if named := splitNodes(r.Node); len(named) > 0 {
		return named, "acting on the nodes params.node names: " + strings.Join(named, ", "), nil
	}
	v, err := etcdops.Look(ctx, r.etcd, in.Incident.Cluster, false)
	if err != nil {
		return nil, "", err
	}
	members := v.Members
	return pick(in.Incident.Evidence, members, func(member string) string { return r.nodes.Node(in.Incident.Cluster, member) })
}

// pick takes the nodes the alerts name or, when they name none, every node that runs an etcd
// member: with kubeadm's stacked etcd each kube-apiserver checks the etcd on its own node, and
// a slow etcd fails them all.
func pick(alerts []remediator.Alert, members []etcdops.Member, nodeOf func(member string) string) ([]string, string, error) {
	var nodes, from []string
	for _, a := range alerts {
		node, label, err := alertNode(a, members, nodeOf)
		if err != nil {
			return nil, "", err
		}
		if node != "" && !slices.Contains(nodes, node) {
			nodes = append(nodes, node)
			from = append(from, fmt.Sprintf("%s %s=%s", a.Name(), label, a.Labels[label]))
		}
	}
	if len(nodes) > 0 {
		slices.Sort(nodes)
		return nodes, fmt.Sprintf("acting on the nodes the alerts name (%s): %s", strings.Join(from, ", "), strings.Join(nodes, ", ")), nil
	}
	for _, m := range members {
		if n := nodeOf(m.Name); m.Endpoint != "" && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil, "", remediator.Errorf(remediator.EPRECONDITION, "the alerts name no node, and no etcd member is started to say which nodes run kube-apiserver: set params.node")
	}
	slices.Sort(nodes)
	return nodes, "the alerts name no node: acting on every node that runs an etcd member, one at a time: " + strings.Join(nodes, ", "), nil
}

// alertNode is the node an alert names, and the label that names it: node; pod, for a static
// pod named kube-apiserver-<node>; or instance, a node or member name or the host of an etcd
// member's client URL (kube-apiserver and its etcd share the node's address under kubeadm).
func alertNode(a remediator.Alert, members []etcdops.Member, nodeOf func(string) string) (node, label string, err error) {
	if n := a.Labels["node"]; n != "" {
		return n, "node", nil
	}
	if n, ok := strings.CutPrefix(a.Labels["pod"], "kube-apiserver-"); ok && n != "" {
		return n, "pod", nil
	}
	inst := a.Labels["instance"]
	if inst == "" {
		return "", "", nil
	}
	hostPort := inst
	if u, err := url.Parse(inst); err == nil && u.Host != "" {
		hostPort = u.Host
	}
	host := hostPort
	if h, _, err := net.SplitHostPort(hostPort); err == nil {
		host = h
	}
	for _, m := range members {
		u, _ := url.Parse(m.Endpoint)
		if host == m.Name || host == nodeOf(m.Name) || u != nil && u.Host == hostPort {
			return nodeOf(m.Name), "instance", nil
		}
	}
	var byHost []string
	for _, m := range members {
		if u, err := url.Parse(m.Endpoint); err == nil && u.Hostname() == host && !slices.Contains(byHost, nodeOf(m.Name)) {
			byHost = append(byHost, nodeOf(m.Name))
		}
	}
	switch len(byHost) {
	case 1:
		return byHost[0], "instance", nil
	case 0:
		return "", "", remediator.Errorf(remediator.EPRECONDITION,
			"alert %s names instance %q, which is neither a node of an etcd member nor the host of a member's client URL: set params.node to the node whose kube-apiserver restarts", a.Name(), inst)
	}
	return "", "", remediator.Errorf(remediator.EPRECONDITION,
		"alert %s names instance %q, whose host runs etcd members of several nodes (%s): set params.node to the node whose kube-apiserver restarts", a.Name(), inst, strings.Join(byHost, ", "))
}
