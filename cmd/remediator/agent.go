package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/queue"
)

// agentConfig turns the agent section of the configuration into the agent's own.
func agentConfig(cfg config.Config, node string, log *slog.Logger) (agent.Config, error) {
	cluster, err := cfg.AgentCluster()
	if err != nil {
		return agent.Config{}, err
	}
	if node == "" {
		node = cfg.Agent.Node
	}
	if node == "" {
		return agent.Config{}, fmt.Errorf("agent: name the node with --node or agent.node")
	}
	a := cfg.Agent
	return agent.Config{
		Node: node, Cluster: cluster, Runtime: a.Runtime,
		ManifestsDir: a.ManifestsDir, StoppedDir: a.StoppedDir,
		EtcdManifest: a.EtcdManifest, APIServerManifest: a.APIServerManifest,
		BackupDir: a.BackupDir, EtcdDataDir: a.EtcdDataDir,
		EtcdHealthURL: a.EtcdHealthURL, APIServerHealthURL: a.APIServerHealthURL,
		Etcdutl: a.Etcdutl,
		Service: agent.Service{Stop: a.Service.StopCommand, Start: a.Service.StartCommand,
			FlagsFile: a.Service.FlagsFile, FlagsFormat: manifest.Format(a.Service.FlagsFormat)},
		Log: log.With("node", node, "cluster", cluster),
	}, nil
}

// runAgent serves a node's actions on conn until ctx ends, obeying the service keys (those of
// the service it runs in, when empty).
func runAgent(ctx context.Context, conn *queue.AgentConn, cfg agent.Config, serviceKeys []string) error {
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return conn.Serve(ctx, queue.Serving{Cluster: cfg.Cluster, Node: cfg.Node, ServiceKeys: serviceKeys, Log: cfg.Log}, a.Do)
}
