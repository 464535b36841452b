// Command remediator heals etcd and the Kubernetes control plane from the alerts about them.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
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
	os.Exit(runCLI(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// runCLI runs the command line args and returns the process's exit code.
func runCLI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		err = remediator.Errorf(remediator.EINVALID, "%v; see 'remediator --help'", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	fmt.Fprintln(stderr, "remediator:", err)
	return exitCode(err)
}

// Exit codes, for scripts to tell outcomes apart (documented in the README and --help).
const (
	exitOK          = 0
	exitFailed      = 1 // it failed, or the incident watched ended without recovery
	exitUsage       = 2 // the command line or the request is wrong: see --help
	exitNotFound    = 3 // no such incident or cluster
	exitRefused     = 4 // the token, the approver or the incident's state refused it
	exitUnreachable = 5 // the service (or what it needs) cannot be reached
)

// exitHelp is what --help says of the exit codes.
const exitHelp = `Exit codes: 0 done; 1 failed (or the incident watched ended without recovery); 2 usage
(the command line or the request is wrong); 3 not found (no such incident or cluster);
4 refused (the token, the approver or the incident's state refused it); 5 unreachable (the
service, or what it needs, cannot be reached).`

// exitCode maps an error's code to the exit code; this is the only place that does.
func exitCode(err error) int {
	switch remediator.ErrorCode(err) {
	case remediator.EINVALID, remediator.ETOOLARGE:
		return exitUsage
	case remediator.ENOTFOUND:
		return exitNotFound
	case remediator.EUNAUTHORIZED, remediator.EFORBIDDEN, remediator.EREFUSED, remediator.ECONFLICT:
		return exitRefused
	case remediator.EUNAVAILABLE:
		return exitUnreachable
	}
	return exitFailed
}

// usageErrorf is a mistake on the command line, with the pointer to the command's help.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return remediator.Errorf(remediator.EINVALID, "%s; see '%s --help'", fmt.Sprintf(format, args...), cmd.CommandPath())
}

// noArgs and exactArgs check a command's arguments, saying what is wrong in usage terms.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf(cmd, "%s takes no arguments, and got %q", cmd.CommandPath(), args)
	}
	return nil
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usageErrorf(cmd, "%s needs %s", cmd.CommandPath(), names)
		case len(args) > n:
			return usageErrorf(cmd, "%s takes only %s, and got %q", cmd.CommandPath(), names, args)
		}
		return nil
	}
}

// logLevels are the levels --log-level takes.
var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func rootCmd() *cobra.Command {
	var logLevel, logFormat string
	root := &cobra.Command{
		Use:           "remediator",
		Short:         "Heals etcd and the Kubernetes control plane, asking a human first where a step is risky",
		Long:          "Heals etcd and the Kubernetes control plane, asking a human first where a step is risky.\n\n" + exitHelp,
		Version:       buildVersion().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageErrorf(cmd, "%v", err) })
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "text or json")
	newLogger := func() (*slog.Logger, error) {
		level, ok := logLevels[strings.ToLower(logLevel)]
		if !ok {
			return nil, remediator.Errorf(remediator.EINVALID, "--log-level %q: not a level (levels: debug, info, warn, error); see 'remediator --help'", logLevel)
		}
		opts := &slog.HandlerOptions{Level: level}
		switch logFormat {
		case "text":
			return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
		}
		return nil, remediator.Errorf(remediator.EINVALID, "--log-format %q: not a format (formats: text, json); see 'remediator --help'", logFormat)
	}
	root.AddCommand(serveCmd(newLogger), agentCmd(newLogger), natsCmd(), answerCmd(true), answerCmd(false), closeCmd(),
		cancelCmd(), retryCmd(), pauseCmd(true), pauseCmd(false), listCmd(), showCmd(), watchCmd(), clustersCmd(),
		reportCmd(), policyCmd(), simulateCmd(), remediationsCmd(), versionCmd())
	return root
}

func serveCmd(newLogger func() (*slog.Logger, error)) *cobra.Command {
	var configPath, role string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the service: webhooks in, remediations out",
		Long: `Run the service. With no --config it listens on 127.0.0.1:9095, keeps its data in ./data,
runs an embedded NATS server with JetStream there, and acts on the etcd at $ETCDCTL_ENDPOINTS
(or 127.0.0.1:2379).

--role splits the service across processes that share one NATS (nats.url): intake is the HTTP
surface (webhooks, Slack, the API and pages) and holds no consumer; worker holds the consumers
and serves /healthz, /readyz and /metrics alone. Run one or more of each; workers may scale to
zero while the queue is empty, and one that gets SIGTERM hands its running step back to the
queue within 20s, for another worker to resume. all (the default) is both in one process.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger()
			if err != nil {
				return err
			}
			log.Info("remediator starting", "version", buildVersion().Version, "commit", buildVersion().Commit)
			m, err := NewMain(configPath, os.Getenv, log)
			if err != nil {
				return err
			}
			m.Role = role
			if err := m.Run(cmd.Context()); err != nil {
				return err
			}
			<-cmd.Context().Done()
			log.Info("shutting down")
			return m.Close()
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML); defaults apply without it")
	cmd.Flags().StringVar(&role, "role", RoleAll, "what this process does: all, intake (HTTP only) or worker (consumers only); intake and worker need nats.url")
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
		Args: noArgs,
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
