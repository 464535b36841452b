package queue

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

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
		subject, err := AgentSubject(cluster, node)
		if err != nil {
			return nil, err
		}
		p := AgentPermissions(subject)
		acc.Users = append(acc.Users, natsUser{Nkey: agents[id], Permissions: &natsPermissions{
			Publish:        map[string][]string{"deny": p.Publish.Deny},
			Subscribe:      map[string][]string{"allow": p.Subscribe.Allow},
			AllowResponses: map[string]any{"max": p.Response.MaxMsgs, "expires": p.Response.Expires.String()},
		}})
	}
	return map[string]natsAccount{name: acc}, nil
}

// WriteServerConfig writes, for an external NATS, the account that holds serve's user (key
// service: every subject of the account, JetStream on) and one user per agent (agents maps
// "<cluster>/<node>" to its public key) with the embedded server's permissions: format conf is
// nats-server configuration to include, helm values for the NATS Helm chart's config.merge.
func WriteServerConfig(w io.Writer, format, account, service string, agents map[string]string) error {
	accounts, err := serverAccounts(account, service, agents)
	if err != nil {
		return err
	}
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
	return fmt.Errorf("-o %q: neither conf nor helm", format)
}
