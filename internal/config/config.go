// Package config loads remediator's configuration: defaults first, then the YAML file, then
// validation whose messages name the key that is wrong.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/yamlstrict"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the HTTP address.
	Listen string `yaml:"listen"`
	// TLS serves HTTPS on Listen with this certificate, when set.
	TLS ServeTLS `yaml:"tls"`
	// DataDir holds the embedded NATS server's storage and the etcd snapshots.
	DataDir string `yaml:"data_dir"`
	NATS    NATS   `yaml:"nats"`
	// Clusters are the etcd clusters remediator may act on.
	Clusters []Cluster `yaml:"clusters"`
	Webhook  Webhook   `yaml:"webhook"`
	// PoliciesDir holds the policy files; empty means the built-in default policies.
	PoliciesDir string `yaml:"policies_dir"`
	// DryRun plans every remediation and runs none.
	DryRun bool `yaml:"dry_run"`
	// Retention is how long a closed incident stays in the incidents bucket before it moves to
	// the archive, where its report stays readable.
	Retention Duration `yaml:"retention"`
	// ExternalURL is how humans reach this service, for links in chat (http://<listen> if
	// empty).
	ExternalURL string     `yaml:"external_url"`
	API         API        `yaml:"api"`
	Slack       Slack      `yaml:"slack"`
	Kubernetes  Kubernetes `yaml:"kubernetes"`
	// Agent configures `remediator agent` on a control-plane node, and an agent that serve
	// runs in its own process when Agent.Node is set. The agent owns the section's type, its
	// defaults and its checks.
	Agent agent.Config `yaml:"agent"`

	// secretsLoaded is set by LoadSecrets: until then the tokens and secrets are empty, and an
	// empty token would leave its door open.
	secretsLoaded bool
}

// SecretsLoaded says whether LoadSecrets has read the secret files; serve refuses a
// configuration whose secrets were not read, whose doors an empty token would leave open.
func (c Config) SecretsLoaded() bool { return c.secretsLoaded }

// ServeTLS is the certificate serve's HTTP listener presents.
type ServeTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled says whether HTTPS is configured.
func (t ServeTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Kubernetes says which Kubernetes events may start work.
type Kubernetes struct {
	// TrustedObjects are objects outside kube-system's control-plane pods whose events may
	// open incidents; events of any other object are at most context for incidents open.
	TrustedObjects []KubeObject `yaml:"trusted_objects"`
}

// KubeObject names Kubernetes objects by namespace, kind and a prefix of their name.
type KubeObject struct {
	Namespace  string `yaml:"namespace"`
	Kind       string `yaml:"kind"`
	NamePrefix string `yaml:"name_prefix"`
}

// API configures the operator API (approvals without chat). With neither file, approvals
// over the API are off.
type API struct {
	// BearerTokenFile holds a token shared by operators, who name themselves when they
	// answer: at most one approval given with it counts towards a request.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// OperatorsFile holds one token per operator, and their Slack user ID (YAML, name:
	// {token, slack_id}, or name: token): the token says who answers, and a person counts once
	// whether they answer over the API or in Slack.
	OperatorsFile string `yaml:"operators_file"`
	// MetricsTokenFile, when set, holds the token GET /metrics needs.
	MetricsTokenFile string `yaml:"metrics_token_file"`
	// BearerToken, Operators and MetricsToken are read from the files by LoadSecrets.
	BearerToken  string              `yaml:"-"`
	Operators    map[string]Operator `yaml:"-"`
	MetricsToken string              `yaml:"-"`
}

// Operator is one person who may use the operator API.
type Operator struct {
	Token string `yaml:"token"`
	// SlackID is their Slack user ID, so that a click of theirs in Slack and an answer over
	// the API are the same person's.
	SlackID string `yaml:"slack_id"`
}

// Secured says whether the API asks for operator tokens: then every read does too.
func (a API) Secured() bool { return a.BearerTokenFile != "" || a.OperatorsFile != "" }

// DefaultSlackAPIURL is Slack's Web API.
const DefaultSlackAPIURL = "https://slack.com/api/"

// Slack configures the Slack app that reports incidents and takes approvals.
type Slack struct {
	BotTokenFile string `yaml:"bot_token_file"`
	// SigningSecretFile turns on the HTTP endpoints Slack calls (/slack/interactions,
	// /slack/commands, /slack/events), which need a public URL.
	SigningSecretFile string `yaml:"signing_secret_file"`
	// AppTokenFile holds an app-level token (xapp-...) with connections:write: it turns on
	// Socket Mode, where remediator opens the connection to Slack itself, outbound only, and
	// takes the clicks, commands and App Home events from it.
	AppTokenFile string `yaml:"app_token_file"`
	// Channel is the channel ID (or name) incidents are reported in.
	Channel string `yaml:"channel"`
	// APIURL is Slack's Web API (tests point it at a local server).
	APIURL string `yaml:"api_url"`
	// BotToken and SigningSecret are read from their files by LoadSecrets.
	BotToken      string `yaml:"-"`
	SigningSecret string `yaml:"-"`
	AppToken      string `yaml:"-"`
}

// Enabled says whether Slack is configured.
func (s Slack) Enabled() bool {
	return s.BotTokenFile != "" || s.SigningSecretFile != "" || s.AppTokenFile != "" || s.Channel != ""
}

// NATS says where the queue is, and who this process is on it.
type NATS struct {
	// URL of an existing NATS cluster with JetStream; empty starts an embedded server.
	URL string `yaml:"url"`
	// NkeyFile holds this process's identity: an nkey user seed (SU...), made by `remediator
	// nats key` or nk -gen user. It authenticates the connection and signs what the process
	// publishes and asks (serve), or answers (agent).
	NkeyFile string `yaml:"nkey_file"`
	// CredsFile is a NATS credentials file (a user JWT and its seed, from nsc) for URL, in
	// place of NkeyFile where NATS runs in operator (JWT) mode; its seed signs.
	CredsFile string `yaml:"creds_file"`
	// AgentsFile lists the node agents' public nkeys, one "<cluster>/<node>: U..." line
	// each, as `remediator agent credentials` writes it.
	AgentsFile string `yaml:"agents_file"`
	// TLS: with Listen, the embedded server's certificate and the CA that signed its clients'
	// certificates; with URL, the CA that signed the server's and this client's certificate.
	TLS TLS `yaml:"tls"`
	// Insecure connects to URL without credentials or TLS, as its operator says here.
	Insecure bool `yaml:"insecure"`
	// PreviousKeys are the public keys of serve's earlier nkey_file, while it is rotated:
	// what they signed and is still queued counts as serve's own.
	PreviousKeys []string `yaml:"previous_keys"`
	// Replicas of remediator's streams and buckets on a NATS cluster.
	Replicas int `yaml:"replicas"`
	// AckWait is how long a worker may stay silent before its work goes to another worker.
	AckWait Duration `yaml:"ack_wait"`
	// Listen is where the embedded server takes connections from node agents (none if
	// empty: it then serves this process only), always with TLS and nkeys.
	Listen string `yaml:"listen"`
	// MaxStore bounds the embedded server's file store, leaving the rest of its disk to what
	// shares it (etcd snapshots in data_dir/backups).
	MaxStore Size `yaml:"max_store"`
	// SyncInterval is how often the embedded server syncs its store to disk: 0s (the
	// default) syncs each write before it is acknowledged, so a webhook answered 202
	// survives a power loss; a longer interval is faster and may lose the last writes.
	SyncInterval Duration `yaml:"sync_interval"`
	// MaxDeliver is how many times a message is delivered before it is given up as a dead
	// letter (bucket remediator_dead, metric remediator_dead_letters_total).
	MaxDeliver int `yaml:"max_deliver"`
	// MaxWaiting bounds the waits parked at once (approval deadlines, lock waits, windows).
	MaxWaiting int `yaml:"max_waiting"`
	// Limits bound each stream and bucket, by short name (events, work, waits, notify,
	// incidents, evidence, archive, index, runs, open, alerts, locks, fences, seen, guarded,
	// signals, meta, dead); what is not given keeps its default.
	Limits map[string]Limit `yaml:"limits"`
	// Agents maps "<cluster>/<node>" to an agent's public nkey, read from AgentsFile by
	// LoadSecrets.
	Agents map[string]string `yaml:"-"`
}

// Limit bounds one stream or bucket.
type Limit struct {
	MaxBytes Size     `yaml:"max_bytes"`
	MaxAge   Duration `yaml:"max_age"`
}

// IdentityFile is the file that holds this process's NATS seed: NkeyFile, or CredsFile.
func (n NATS) IdentityFile() string { return cmp.Or(n.NkeyFile, n.CredsFile) }

// Cluster is one etcd cluster.
type Cluster struct {
	Name string `yaml:"name"`
	Etcd Etcd   `yaml:"etcd"`
	// Nodes maps etcd member names to the names of the nodes (and their agents) they run
	// on, where they differ; kubeadm names members after their nodes.
	Nodes map[string]string `yaml:"nodes"`
	// GuardedKeys are etcd keys whose last good values remediator keeps, to restore them if
	// they disappear (etcd-key-restore).
	GuardedKeys []string `yaml:"guarded_keys"`
}

// Etcd is how to reach a cluster's etcd.
type Etcd struct {
	Endpoints []string `yaml:"endpoints"`
	TLS       TLS      `yaml:"tls"`
}

// TLS holds the files of a certificate, its key and a CA.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled says whether any TLS file is set.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Webhook configures the intake endpoints.
type Webhook struct {
	// BearerTokenFile holds the token senders must present; empty means no auth, which only a
	// loopback listen or Insecure allows.
	BearerTokenFile string `yaml:"bearer_token_file"`
	// Insecure takes webhooks without a token on a listen address other hosts can reach.
	Insecure bool `yaml:"insecure"`
	// BearerToken is read from BearerTokenFile by LoadSecrets.
	BearerToken string `yaml:"-"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s or 2m", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Defaults is the configuration with no file: everything on this machine, etcd where etcdctl
// would look for it.
func Defaults(getenv func(string) string) Config {
	endpoints := []string{"127.0.0.1:2379"}
	if e := getenv("ETCDCTL_ENDPOINTS"); e != "" {
		endpoints = strings.Split(e, ",")
	}
	return Config{
		Listen:  "127.0.0.1:9095",
		DataDir: "data",
		NATS: NATS{Replicas: 1, AckWait: Duration(6 * time.Second), MaxStore: 4 << 30,
			MaxDeliver: 30, MaxWaiting: 100_000},
		Retention: Duration(30 * 24 * time.Hour),
		Slack:     Slack{APIURL: DefaultSlackAPIURL},
		Agent:     agent.Defaults(),
		Clusters: []Cluster{{
			Name: "default",
			Etcd: Etcd{
				Endpoints: endpoints,
				TLS:       TLS{CAFile: getenv("ETCDCTL_CACERT"), CertFile: getenv("ETCDCTL_CERT"), KeyFile: getenv("ETCDCTL_KEY")},
			},
		}},
	}
}

// Load reads the file at path over the defaults (an empty path means defaults only), resolves
// relative paths against the file's folder, validates the result and then reads the secrets
// its files hold. It reports every problem of both steps at once.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg, err := Read(path, getenv)
	if err != nil {
		return Config{}, err
	}
	if err := errors.Join(cfg.Validate(), cfg.LoadSecrets()); err != nil {
		if path == "" {
			return Config{}, fmt.Errorf("config (defaults): %w", err)
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Read reads the file at path over the defaults as Load does, but neither reads its secrets
// nor validates it: for a client, such as the CLI, that needs the service's address and
// certificate and need not hold its keys.
func Read(path string, getenv func(string) string) (Config, error) {
	cfg := Defaults(getenv)
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := yamlstrict.Decode(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, nil
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.PoliciesDir)
	abs(&c.Webhook.BearerTokenFile)
	abs(&c.NATS.CredsFile)
	abs(&c.NATS.NkeyFile)
	abs(&c.NATS.AgentsFile)
	abs(&c.NATS.TLS.CAFile)
	abs(&c.NATS.TLS.CertFile)
	abs(&c.NATS.TLS.KeyFile)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.API.MetricsTokenFile)
	abs(&c.API.BearerTokenFile)
	abs(&c.API.OperatorsFile)
	abs(&c.Slack.BotTokenFile)
	abs(&c.Slack.SigningSecretFile)
	abs(&c.Slack.AppTokenFile)
	abs(&c.Agent.ManifestsDir)
	abs(&c.Agent.StoppedDir)
	abs(&c.Agent.BackupDir)
	abs(&c.Agent.EtcdDataDir)
	abs(&c.Agent.Service.FlagsFile)
	for i := range c.Clusters {
		t := &c.Clusters[i].Etcd.TLS
		abs(&t.CAFile)
		abs(&t.CertFile)
		abs(&t.KeyFile)
	}
}

// AgentCluster is the cluster the node agent belongs to: agent.cluster, or the only cluster.
func (c *Config) AgentCluster() (string, error) {
	if c.Agent.Cluster != "" {
		if !slices.Contains(c.ClusterNames(), c.Agent.Cluster) {
			return "", fmt.Errorf("agent.cluster: %q is not a configured cluster (%s)", c.Agent.Cluster, strings.Join(c.ClusterNames(), ", "))
		}
		return c.Agent.Cluster, nil
	}
	if len(c.Clusters) != 1 {
		return "", fmt.Errorf("agent.cluster: must be set when more than one cluster is configured")
	}
	return c.Clusters[0].Name, nil
}

// BaseURL is where humans reach this service: external_url, or the listen address.
func (c *Config) BaseURL() string {
	if c.ExternalURL != "" {
		return strings.TrimSuffix(c.ExternalURL, "/")
	}
	if c.TLS.Enabled() {
		return "https://" + c.Listen
	}
	return "http://" + c.Listen
}

// ClusterNames lists the configured clusters' names.
func (c *Config) ClusterNames() []string {
	names := make([]string, len(c.Clusters))
	for i, cl := range c.Clusters {
		names[i] = cl.Name
	}
	return names
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
