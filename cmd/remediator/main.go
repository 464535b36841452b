// Command remediator heals etcd and the Kubernetes control plane from the alerts about them.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // maintenance windows name time zones; do not depend on the host's database

	"github.com/spf13/cobra"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/queue"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "remediator:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	var logLevel, logFormat string
	root := &cobra.Command{
		Use:           "remediator",
		Short:         "Heals etcd and the Kubernetes control plane, asking a human first where a step is risky",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "text or json")
	newLogger := func() (*slog.Logger, error) {
		var level slog.Level
		if err := level.UnmarshalText([]byte(logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
		opts := &slog.HandlerOptions{Level: level}
		switch logFormat {
		case "text":
			return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
		}
		return nil, fmt.Errorf("--log-format: %q is not text or json", logFormat)
	}
	root.AddCommand(serveCmd(newLogger), agentCmd(newLogger), natsCmd(), answerCmd(true), answerCmd(false), closeCmd(), reportCmd(), policyCmd(), simulateCmd(), remediationsCmd())
	return root
}

func serveCmd(newLogger func() (*slog.Logger, error)) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the service: webhooks in, remediations out",
		Long: `Run the service. With no --config it listens on 127.0.0.1:9095, keeps its data in ./data,
runs an embedded NATS server with JetStream there, and acts on the etcd at $ETCDCTL_ENDPOINTS
(or 127.0.0.1:2379).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger()
			if err != nil {
				return err
			}
			m, err := NewMain(configPath, os.Getenv, log)
			if err != nil {
				return err
			}
			if err := m.Run(cmd.Context()); err != nil {
				return err
			}
			<-cmd.Context().Done()
			log.Info("shutting down")
			return m.Close()
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML); defaults apply without it")
	return cmd
}

func agentCmd(newLogger func() (*slog.Logger, error)) *cobra.Command {
	var configPath, node string
	cmd := &cobra.Command{
		Use:   "agent --node NAME",
		Short: "Run the node agent on a control-plane node: node-local steps of remediations",
		Long: `Run the node agent. It takes typed actions (stop or start etcd, edit a component's flags,
suspend etcd's liveness probe, move or restore etcd's data dir) from its NATS subject,
remediator.agent.<cluster>.<node>, with paths from the agent section of --config. It needs
nats.url (the NATS server remediator uses: tls://<serve's nats.listen>, for the embedded one),
its own key in nats.nkey_file (remediator agent credentials makes it), the TLS files in
nats.tls, and serve's public key in agent.service_keys: it carries out only what that key
signed, for this node, once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger()
			if err != nil {
				return err
			}
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			switch {
			case cfg.NATS.URL == "":
				return fmt.Errorf("agent: nats.url must name the NATS server remediator uses")
			case cfg.NATS.IdentityFile() == "":
				return fmt.Errorf("agent: nats.nkey_file must hold this agent's own key (`remediator agent credentials` makes it), or nats.creds_file its user JWT and key: it logs the agent in and signs its replies")
			case len(cfg.Agent.ServiceKeys) == 0:
				return fmt.Errorf("agent: agent.service_keys must name serve's public key (`remediator nats key --public --config serve.yaml` prints it): the agent carries out only what that key signed")
			}
			acfg, err := agentConfig(cfg, node, log)
			if err != nil {
				return err
			}
			key, err := config.ReadSeed(cfg.NATS.IdentityFile())
			if err != nil {
				return err
			}
			conn, err := queue.DialAgent(cfg.NATS.URL, key, cfg.NATS.CredsFile, natsTLS(cfg), cfg.NATS.Insecure)
			if err != nil {
				return err
			}
			defer conn.Close()
			log.Info("agent connected", "nats", remediator.RedactURL(cfg.NATS.URL), "agent_key", conn.PublicKey())
			return runAgent(cmd.Context(), conn, acfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML)")
	cmd.Flags().StringVar(&node, "node", "", "this node's name (agent.node)")
	cmd.AddCommand(agentCredentialsCmd())
	return cmd
}
