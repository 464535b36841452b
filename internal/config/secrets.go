package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/yamlstrict"
)

// LoadSecrets reads what the files the configuration names hold, section by section: the
// tokens, the operators and the Slack secrets into their fields, the agents' public keys into
// NATS.Agents; and it checks serve's nkey seed against them. Each error names the key of its
// file, and none holds a secret.
func (c *Config) LoadSecrets() error {
	err := errors.Join(c.NATS.loadSecrets(c.ClusterNames()), c.Webhook.loadSecrets(), c.API.loadSecrets(), c.Slack.loadSecrets())
	c.secretsLoaded = err == nil
	return err
}

// loadSecrets checks the seed in nats.nkey_file and reads the agents file, whose agents must
// belong to clusters and hold keys other than serve's own.
func (n *NATS) loadSecrets(clusters []string) error {
	var p problems
	var own string
	if n.NkeyFile != "" {
		kp, err := ReadSeed(n.NkeyFile)
		if err != nil {
			p.add("nats.nkey_file", "%v", err)
		} else {
			own, _ = kp.PublicKey()
		}
	}
	if n.AgentsFile != "" {
		agents, err := ReadAgents(n.AgentsFile, clusters)
		if err != nil {
			p.add("nats.agents_file", "%v", err)
		}
		for _, id := range slices.Sorted(maps.Keys(agents)) {
			if own != "" && agents[id] == own {
				// An agent with serve's key could sign as serve: no agent would tell them apart.
				p.add("nats.agents_file", "%s: %s has serve's own key (nats.nkey_file): every agent needs a key of its own", n.AgentsFile, id)
			}
		}
		n.Agents = agents
	}
	return p.err()
}

// loadSecrets reads the token webhook senders present.
func (w *Webhook) loadSecrets() error {
	var p problems
	p.secret("webhook.bearer_token_file", w.BearerTokenFile, &w.BearerToken)
	return p.err()
}

// loadSecrets reads the operators' tokens and the metrics token.
func (a *API) loadSecrets() error {
	var p problems
	p.secret("api.bearer_token_file", a.BearerTokenFile, &a.BearerToken)
	p.secret("api.metrics_token_file", a.MetricsTokenFile, &a.MetricsToken)
	if f := a.OperatorsFile; f != "" {
		ops, err := readOperators(f)
		if err != nil {
			p.add("api.operators_file", "%v", err)
		}
		a.Operators = ops
	}
	return p.err()
}

// loadSecrets reads the Slack app's bot token, signing secret and app-level token.
func (s *Slack) loadSecrets() error {
	var p problems
	p.secret("slack.bot_token_file", s.BotTokenFile, &s.BotToken)
	p.secret("slack.signing_secret_file", s.SigningSecretFile, &s.SigningSecret)
	p.secret("slack.app_token_file", s.AppTokenFile, &s.AppToken)
	if s.AppToken != "" && !strings.HasPrefix(s.AppToken, "xapp-") {
		p.add("slack.app_token_file", "%s holds no app-level token (xapp-...): Socket Mode needs one, made under Basic Information, App-Level Tokens, with connections:write", s.AppTokenFile)
	}
	return p.err()
}

// secret reads the secret in the file at path into *into, when path is set (Validate says
// whether it must be), and records a failure under the file's key.
func (p *problems) secret(key, path string, into *string) {
	if path == "" {
		return
	}
	secret, err := readSecret(path)
	if err != nil {
		p.add(key, "%v", err)
	}
	*into = secret
}

// ReadSeed reads an nkey user seed (SU...) from a file, as nk -gen user or `remediator nats
// key` writes it, or from a NATS credentials file.
func ReadSeed(path string) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s holds no nkey seed: %w", path, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%s holds no user seed (SU...)", path)
	}
	return kp, nil
}

// ReadAgents reads an agents file: "<cluster>/<node>: <public user nkey>" lines. Every
// cluster must be configured, and no two agents may share a key. A file not made yet holds no
// agent, as `remediator agent credentials` has made none.
func ReadAgents(path string, clusters []string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	agents := map[string]string{}
	if err := yamlstrict.Decode(data, &agents); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	owner := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(agents)) {
		key := agents[id]
		cluster, node, ok := strings.Cut(id, "/")
		switch {
		case !ok || !slices.Contains(clusters, cluster):
			return nil, fmt.Errorf("%s: %q must be <cluster>/<node> with a configured cluster (%s)", path, id, strings.Join(clusters, ", "))
		case !nodeName.MatchString(node) || len(node) > 253:
			return nil, fmt.Errorf("%s: %q: %q is not a node name", path, id, node)
		case !nkeys.IsValidPublicUserKey(key):
			return nil, fmt.Errorf("%s: %q: %q is not a public user nkey (U...)", path, id, key)
		case owner[key] != "":
			return nil, fmt.Errorf("%s: %s and %s share a key: every agent needs its own", path, owner[key], id)
		}
		owner[key] = id
	}
	return agents, nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// readOperators reads the operators file; every token and Slack user ID must be distinct.
func readOperators(path string) (map[string]Operator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// An operator is {token, slack_id}, or, as files before Slack IDs were, the token alone.
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		m := doc.Content[0]
		for i := 1; i < len(m.Content); i += 2 {
			if v := m.Content[i]; v.Kind == yaml.ScalarNode {
				key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "token", Line: v.Line, Column: v.Column}
				m.Content[i] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column, Content: []*yaml.Node{key, v}}
			}
		}
	}
	ops := map[string]Operator{}
	if len(doc.Content) > 0 {
		if err := yamlstrict.DecodeNode(&doc, &ops); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	tokens, slackIDs := map[string]string{}, map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(ops)) {
		o := ops[name]
		switch {
		case strings.TrimSpace(o.Token) == "":
			return nil, fmt.Errorf("%s: operator %q has no token", path, name)
		case tokens[o.Token] != "":
			return nil, fmt.Errorf("%s: operators %q and %q share a token", path, tokens[o.Token], name)
		case o.SlackID != "" && !remediator.LooksLikeSlackID(o.SlackID):
			return nil, fmt.Errorf("%s: operator %q: slack_id %q is not a Slack user ID such as U01ABCDEF", path, name, o.SlackID)
		case o.SlackID != "" && slackIDs[o.SlackID] != "":
			return nil, fmt.Errorf("%s: operators %q and %q share the Slack user ID %s", path, slackIDs[o.SlackID], name, o.SlackID)
		case remediator.LooksLikeSlackID(name):
			return nil, fmt.Errorf("%s: operator %q is named like a Slack user ID: name them, and give the ID as slack_id", path, name)
		}
		tokens[o.Token] = name
		if o.SlackID != "" {
			slackIDs[o.SlackID] = name
		}
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("%s names no operators", path)
	}
	return ops, nil
}
