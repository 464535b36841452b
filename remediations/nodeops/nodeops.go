// Package nodeops sends remediations' node-local actions to the agents of the nodes their
// etcd members run on.
package nodeops

import (
	"context"

	"github.com/remediator/remediator"
)

// Asker sends an action to the agent of a node of a cluster and waits for its result.
type Asker interface {
	Ask(ctx context.Context, cluster, node string, act remediator.NodeAction) (remediator.NodeResult, error)
}

// Nodes finds the node of each etcd member and asks its agent.
type Nodes struct {
	Agents Asker
	// Names maps a cluster's etcd member names to node names, where they differ; kubeadm
	// names each member after its node, so most clusters need none.
	Names map[string]map[string]string
}

// Node is the node the named member of a cluster runs on.
func (n *Nodes) Node(cluster, member string) string {
	if n == nil {
		return member
	}
	if node, ok := n.Names[cluster][member]; ok {
		return node
	}
	return member
}

// Do sends an action to the agent of the node the member runs on.
func (n *Nodes) Do(ctx context.Context, cluster, member string, act remediator.NodeAction) (remediator.NodeResult, error) {
	return n.Ask(ctx, cluster, n.Node(cluster, member), act)
}

// Ask sends an action to the agent of the named node.
func (n *Nodes) Ask(ctx context.Context, cluster, node string, act remediator.NodeAction) (remediator.NodeResult, error) {
	if n == nil || n.Agents == nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION,
			"no node agents are configured: %s of %s on node %s needs `remediator agent` there", act.Kind, act.Component, node)
	}
	return n.Agents.Ask(ctx, cluster, node, act)
}
