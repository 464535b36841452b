package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

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
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case public:
				cfg, err := config.Load(configPath, os.Getenv)
				if err != nil {
					return err
				}
				pub, err := servePublicKey(cfg, configPath)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), pub)
				return nil
			case out != "":
				kp, err := writeNewKey(out)
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
	var configPath, format, account string
	cmd := &cobra.Command{
		Use:   "server-config --config FILE [--format conf|helm]",
		Short: "Print the NATS server accounts that let serve and its agents in, each with its permissions",
		Long: `Prints, for an external NATS cluster, an account holding serve's user (every subject of
the account, JetStream on) and one user per node agent of nats.agents_file, which may only
take the requests of its own subject, remediator.agent.<cluster>.<node>, and answer each once.
--format conf writes nats-server configuration to include; --format helm writes values for the
official NATS Helm chart (config.merge). Run it again after ` + "`remediator agent credentials`" + ` adds
an agent, and reload NATS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			pub, err := servePublicKey(cfg, configPath)
			if err != nil {
				return err
			}
			accounts, err := serverAccounts(account, pub, cfg.NATS.Agents)
			if err != nil {
				return err
			}
			return writeServerConfig(cmd.OutOrStdout(), format, accounts)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "serve's configuration (nats.nkey_file and nats.agents_file)")
	cmd.Flags().StringVar(&format, "format", "conf", "conf (nats-server configuration) or helm (values for the NATS Helm chart)")
	cmd.Flags().StringVar(&account, "account", "REMEDIATOR", "the NATS account remediator gets")
	return cmd
}

// servePublicKey is the public key of serve's NATS identity in its configuration.
func servePublicKey(cfg config.Config, configPath string) (string, error) {
	path := cmp.Or(cfg.NATS.NkeyFile, cfg.NATS.CredsFile)
	if path == "" {
		return "", fmt.Errorf("--config %s has no nats.nkey_file: serve needs its own key (`remediator nats key --out FILE`)", configPath)
	}
	kp, err := config.ReadSeed(path)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// natsUser is a user of nats-server's accounts block.
type natsUser struct {
	Nkey        string           `yaml:"nkey" json:"nkey"`
	Permissions *natsPermissions `yaml:"permissions,omitempty" json:"permissions,omitempty"`
}

type natsPermissions struct {
	Publish        map[string][]string `yaml:"publish" json:"publish"`
	Subscribe      map[string][]string `yaml:"subscribe" json:"subscribe"`
	AllowResponses map[string]any      `yaml:"allow_responses" json:"allow_responses"`
}

type natsAccount struct {
	JetStream string     `yaml:"jetstream" json:"jetstream"`
	Users     []natsUser `yaml:"users" json:"users"`
}

// serverAccounts is the account for serve (key service) and the agents: the same users and
// permissions as the embedded server gives them.
func serverAccounts(name, service string, agents map[string]string) (map[string]natsAccount, error) {
	acc := natsAccount{JetStream: "enabled", Users: []natsUser{{Nkey: service}}}
	for _, id := range slices.Sorted(maps.Keys(agents)) {
		cluster, node, _ := strings.Cut(id, "/")
		subject, err := queue.AgentSubject(cluster, node)
		if err != nil {
			return nil, err
		}
		p := queue.AgentPermissions(subject)
		acc.Users = append(acc.Users, natsUser{Nkey: agents[id], Permissions: &natsPermissions{
			Publish:        map[string][]string{"deny": p.Publish.Deny},
			Subscribe:      map[string][]string{"allow": p.Subscribe.Allow},
			AllowResponses: map[string]any{"max": p.Response.MaxMsgs, "expires": p.Response.Expires.String()},
		}})
	}
	return map[string]natsAccount{name: acc}, nil
}

func writeServerConfig(w io.Writer, format string, accounts map[string]natsAccount) error {
	switch format {
	case "conf":
		// nats-server's configuration syntax takes JSON as it is.
		fmt.Fprintln(w, "# remediator's account on NATS: include this file in nats-server.conf.")
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // nats-server's parser knows no \u escapes
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"accounts": accounts})
	case "helm":
		fmt.Fprintln(w, "# remediator's account, for the NATS Helm chart: helm upgrade ... -f this-file.")
		return yaml.NewEncoder(w).Encode(map[string]any{"config": map[string]any{"merge": map[string]any{"accounts": accounts}}})
	}
	return fmt.Errorf("--format: %q is neither conf nor helm", format)
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
		Args: cobra.NoArgs,
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
			kp, err := writeNewKey(out)
			if err != nil {
				return err
			}
			pub, _ := kp.PublicKey()
			if err := enterAgent(cfg.NATS.AgentsFile, id, pub, cfg.ClusterNames()); err != nil {
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

// enterAgent sets an agent's key in the agents file, keeping its other lines, and checks the
// result as serve will read it.
func enterAgent(path, id string, pub string, clusters []string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	entry := fmt.Sprintf("%s: %s", id, pub)
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), id+":") })
	if i >= 0 {
		lines[i] = entry
	} else {
		if len(lines) == 0 {
			lines = append(lines, "# The node agents' public NATS keys: <cluster>/<node>: <key>. Made by remediator agent credentials.")
		}
		lines = append(lines, entry)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if _, err := config.ReadAgents(tmp, clusters); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
