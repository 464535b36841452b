package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/queue"
)

// natsCmd is `remediator nats`: the identities remediator and its agents have on NATS.
func natsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "Identities on NATS: serve's key, and the NATS server configuration that lets it and the agents in"}
	cmd.AddCommand(natsKeyCmd(), natsServerConfigCmd())
	return cmd
}

func natsKeyCmd() *cobra.Command {
	var out, configPath string
	var public bool
	cmd := &cobra.Command{
		Use:   "key --out FILE | --public --config FILE",
		Short: "Make serve's NATS key (an nkey user seed), or print the public key of a configuration's",
		Long: `With --out, writes a new nkey user seed to FILE (readable by its owner only; an existing
file is never replaced) and prints its public key: give the file to serve as nats.nkey_file,
and the public key to every agent as agent.service_keys. With --public, prints the public key
of --config's nats.nkey_file (or nats.creds_file).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case public:
				_, pub, err := loadServe(configPath)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), pub)
				return nil
			case out != "":
				kp, err := config.WriteSeed(out)
				if err != nil {
					return err
				}
				pub, _ := kp.PublicKey()
				fmt.Fprintf(cmd.OutOrStdout(), "wrote a new nkey seed to %s; its public key, for agent.service_keys:\n%s\n", out, pub)
				return nil
			}
			return fmt.Errorf("give --out FILE, or --public --config FILE")
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write a new seed to this file")
	cmd.Flags().BoolVar(&public, "public", false, "print the public key of --config's NATS identity")
	cmd.Flags().StringVar(&configPath, "config", "", "serve's configuration")
	return cmd
}

func natsServerConfigCmd() *cobra.Command {
	var configPath, format, legacyFormat, account string
	cmd := &cobra.Command{
		Use:   "server-config --config FILE [-o conf|helm]",
		Short: "Print the NATS server accounts that let serve and its agents in, each with its permissions",
		Long: `Prints, for an external NATS cluster, an account holding serve's user (every subject of
the account, JetStream on) and one user per node agent of nats.agents_file, which may only
take the requests of its own subject, remediator.agent.<cluster>.<node>, and answer each once.
-o conf writes nats-server configuration to include; -o helm writes values for the
official NATS Helm chart (config.merge). Run it again after ` + "`remediator agent credentials`" + ` adds
an agent, and reload NATS.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, pub, err := loadServe(configPath)
			if err != nil {
				return err
			}
			if legacyFormat != "" {
				format = legacyFormat
			}
			return queue.WriteServerConfig(cmd.OutOrStdout(), format, account, pub, cfg.NATS.Agents)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "serve's configuration (nats.nkey_file and nats.agents_file)")
	outputFlag(cmd, &format, "conf", "conf", "helm")
	cmd.Flags().StringVar(&legacyFormat, "format", "", "the output format (use -o)")
	_ = cmd.Flags().MarkDeprecated("format", "use -o conf|helm")
	cmd.Flags().StringVar(&account, "account", "REMEDIATOR", "the NATS account remediator gets")
	return cmd
}

// loadServe loads serve's configuration and the public key of its NATS identity.
func loadServe(configPath string) (config.Config, string, error) {
	cfg, err := config.Load(configPath, os.Getenv)
	if err != nil {
		return cfg, "", err
	}
	pub, err := servePublicKey(cfg, configPath)
	return cfg, pub, err
}

// servePublicKey is the public key of serve's NATS identity in its configuration.
func servePublicKey(cfg config.Config, configPath string) (string, error) {
	path := cfg.NATS.IdentityFile()
	if path == "" {
		return "", fmt.Errorf("--config %s has no nats.nkey_file: serve needs its own key (`remediator nats key --out FILE`)", configPath)
	}
	kp, err := config.ReadSeed(path)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// agentCredentialsCmd is `remediator agent credentials`: a node agent's own NATS identity.
func agentCredentialsCmd() *cobra.Command {
	var configPath, node, cluster, out string
	var replace bool
	cmd := &cobra.Command{
		Use:   "credentials --node NAME --config serve.yaml --out FILE",
		Short: "Make a node agent's NATS key and enter it in serve's nats.agents_file",
		Long: `Writes a new nkey user seed for the agent of a node to --out (readable by its owner only),
and enters its public key in the nats.agents_file of serve's --config, as <cluster>/<node>. The
embedded NATS server lets the agent in with it after serve restarts; for an external NATS,
run ` + "`remediator nats server-config`" + ` again. The agent takes the seed as its nats.nkey_file.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			if cfg.NATS.AgentsFile == "" {
				return fmt.Errorf("--config %s has no nats.agents_file to enter the agent in", configPath)
			}
			if node == "" || out == "" {
				return fmt.Errorf("--node and --out are needed")
			}
			if cluster == "" {
				if cluster, err = cfg.AgentCluster(); err != nil {
					return fmt.Errorf("--cluster: %w", err)
				}
			}
			if _, err := queue.AgentSubject(cluster, node); err != nil {
				return err
			}
			id := cluster + "/" + node
			if _, ok := cfg.NATS.Agents[id]; ok && !replace {
				return fmt.Errorf("%s has a key in %s already: --replace gives it a new one (the old one stops working)", id, cfg.NATS.AgentsFile)
			}
			kp, err := config.WriteSeed(out)
			if err != nil {
				return err
			}
			pub, _ := kp.PublicKey()
			if err := config.EnterAgent(cfg.NATS.AgentsFile, id, pub, cfg.ClusterNames()); err != nil {
				os.Remove(out)
				return err
			}
			service, err := servePublicKey(cfg, configPath)
			if err != nil {
				service = "(" + err.Error() + ")"
			}
			fmt.Fprintf(cmd.OutOrStdout(), `wrote the key of agent %s to %s (public key %s) and entered it in %s.
The agent's configuration:
  nats:
    nkey_file: %s
  agent:
    service_keys: [%s]
Then restart serve (embedded NATS), or run remediator nats server-config and reload NATS.
`, id, out, pub, cfg.NATS.AgentsFile, out, service)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "serve's configuration, whose nats.agents_file gets the agent")
	cmd.Flags().StringVar(&node, "node", "", "the node's name")
	cmd.Flags().StringVar(&cluster, "cluster", "", "the node's cluster (the only one configured, if empty)")
	cmd.Flags().StringVar(&out, "out", "", "write the agent's seed to this file")
	cmd.Flags().BoolVar(&replace, "replace", false, "give a node that has a key a new one")
	return cmd
}
