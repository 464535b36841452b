package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/queue"
)

// agentConfig is the agent section of the configuration, with what is the caller's: the node
// (--node, else agent.node), the cluster it resolves to, and the logger.
func agentConfig(cfg config.Config, node string, log *slog.Logger) (agent.Config, error) {
	cluster, err := cfg.AgentCluster()
	if err != nil {
		return agent.Config{}, err
	}
	a := cfg.Agent
	a.Node, a.Cluster = cmp.Or(node, a.Node), cluster
	if a.Node == "" {
		return agent.Config{}, fmt.Errorf("agent: name the node with --node or agent.node")
	}
	a.Log = log.With("node", a.Node, "cluster", cluster)
	return a, nil
}

// runAgent serves a node's actions on conn until ctx ends, obeying cfg.ServiceKeys (those of
// the service it runs in, when empty).
func runAgent(ctx context.Context, conn *queue.AgentConn, cfg agent.Config) error {
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return conn.Serve(ctx, queue.Serving{Cluster: cfg.Cluster, Node: cfg.Node, ServiceKeys: cfg.ServiceKeys, Log: cfg.Log}, a.Do)
}
