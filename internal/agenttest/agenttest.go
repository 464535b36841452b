// Package agenttest runs a node agent for every node of a test cluster of etcd static pods,
// each serving its actions over a real NATS connection.
package agenttest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/queue"
)

// Start starts an agent per node of c for the named cluster, serving on q, and waits until
// each answers. Configure changes an agent's configuration before it starts (may be nil).
func Start(t testing.TB, q *queue.Queue, cluster string, c *etcdtest.StaticCluster, configure func(*agent.Config)) *queue.Agents {
	t.Helper()
	agents := q.Agents()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(c.Nodes))
	t.Cleanup(func() {
		cancel()
		for range c.Nodes {
			<-done
		}
	})
	for _, n := range c.Nodes {
		cfg := Config(cluster, n)
		if configure != nil {
			configure(&cfg)
		}
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer func() { done <- struct{}{} }()
			if err := q.AgentConn().Serve(ctx, queue.Serving{Cluster: cluster, Node: n.Name, Log: slog.New(slog.DiscardHandler)}, a.Do); err != nil {
				t.Error(err)
			}
		}()
		for i := 0; ; i++ {
			_, err := agents.Ask(context.Background(), cluster, n.Name, remediator.NodeAction{Kind: remediator.ActionInspect, Component: remediator.ComponentEtcd, Incident: "agenttest"})
			if remediator.ErrorCode(err) != remediator.EUNAVAILABLE {
				break
			}
			if i == 100 {
				t.Fatalf("agent of %s does not answer: %v", n.Name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return agents
}

// Config is the agent configuration of a test node.
func Config(cluster string, n *etcdtest.Node) agent.Config {
	return agent.Config{Node: n.Name, Cluster: cluster, ManifestsDir: n.ManifestsDir, StoppedDir: n.StoppedDir, BackupDir: n.BackupDir}
}
