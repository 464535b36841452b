// Package config loads remediator's configuration: defaults first, then the YAML file, then
// validation whose messages name the key that is wrong.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"

	"github.com/remediator/remediator"
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
	// runs in its own process when Agent.Node is set.
	Agent Agent `yaml:"agent"`
}

// Agent configures the node agent.
type Agent struct {
	// Node names this node; `remediator agent --node` overrides it.
	Node string `yaml:"node"`
	// Cluster is the cluster whose etcd member runs here (the only cluster if empty).
	Cluster string `yaml:"cluster"`
	// Runtime is staticpod (kubeadm) or service (systemd, monit and the like).
	Runtime           string `yaml:"runtime"`
	ManifestsDir      string `yaml:"manifests_dir"`
	StoppedDir        string `yaml:"stopped_dir"`
	EtcdManifest      string `yaml:"etcd_manifest"`
	APIServerManifest string `yaml:"apiserver_manifest"`
	// BackupDir holds manifest backups and data dir copies; never inside ManifestsDir.
	BackupDir string `yaml:"backup_dir"`
	// EtcdDataDir is etcd's data dir on this node, where it differs from --data-dir.
	EtcdDataDir        string       `yaml:"etcd_data_dir"`
	EtcdHealthURL      string       `yaml:"etcd_health_url"`
	APIServerHealthURL string       `yaml:"apiserver_health_url"`
	Etcdutl            string       `yaml:"etcdutl"`
	Service            AgentService `yaml:"service"`
	// ServiceKeys are the public nkeys of remediator serve (its nats.nkey_file): the agent
	// carries out only actions signed by one of them. Several, while a key is rotated.
	ServiceKeys []string `yaml:"service_keys"`
}

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

// AgentService is how the service runtime stops and starts etcd, and where its flags are.
type AgentService struct {
	StopCommand  []string `yaml:"stop_command"`
	StartCommand []string `yaml:"start_command"`
	FlagsFile    string   `yaml:"flags_file"`
	// FlagsFormat is env (ETCD_NAME=...) or args (--name=...).
	FlagsFormat string `yaml:"flags_format"`
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
	// BearerToken, Operators and MetricsToken are read from the files by Validate.
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
	BotTokenFile      string `yaml:"bot_token_file"`
	SigningSecretFile string `yaml:"signing_secret_file"`
	// Channel is the channel ID (or name) incidents are reported in.
	Channel string `yaml:"channel"`
	// APIURL is Slack's Web API (tests point it at a local server).
	APIURL string `yaml:"api_url"`
	// BotToken and SigningSecret are read from their files by Validate.
	BotToken      string `yaml:"-"`
	SigningSecret string `yaml:"-"`
}

// Enabled says whether Slack is configured.
func (s Slack) Enabled() bool {
	return s.BotTokenFile != "" || s.SigningSecretFile != "" || s.Channel != ""
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
	// Agents maps "<cluster>/<node>" to an agent's public nkey, read from AgentsFile.
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
	// BearerToken is read from BearerTokenFile by Load.
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
		Agent: Agent{
			Runtime:      "staticpod",
			ManifestsDir: "/etc/kubernetes/manifests",
			StoppedDir:   "/etc/kubernetes/remediator-stopped",
			BackupDir:    "/var/lib/remediator/backups",
			Service:      AgentService{FlagsFormat: "env"},
		},
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
// relative paths against the file's folder, reads the secrets and validates the result.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg, err := Read(path, getenv)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
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

// clusterName is what a cluster name may be: it becomes part of queue keys and file paths.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// nodeName is what a node may be called: often its FQDN, as Kubernetes names cloud nodes.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$`)

// Validate checks every key and reads the secrets; each error names its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not a host:port address", c.Listen)
	} else if !loopback(c.Listen) && c.Webhook.BearerTokenFile == "" && !c.Webhook.Insecure {
		bad("webhook.bearer_token_file", "must be set when listen (%s) is reachable from other hosts: anyone there could post alerts (say webhook.insecure: true to take them anyway)", c.Listen)
	}
	if t := c.TLS; t.Enabled() {
		if t.CertFile == "" || t.KeyFile == "" {
			bad("tls", "cert_file and key_file must be set together")
		}
		checkTLS(bad, "tls", TLS{CertFile: t.CertFile, KeyFile: t.KeyFile})
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	c.validateNATS(bad)
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas", "must be between 1 and 5, not %d", c.NATS.Replicas)
	} else if c.NATS.URL == "" && c.NATS.Replicas != 1 {
		bad("nats.replicas", "must be 1 with the embedded server (nats.url is empty)")
	}
	if time.Duration(c.NATS.AckWait) < time.Second {
		bad("nats.ack_wait", "must be at least 1s, not %s", time.Duration(c.NATS.AckWait))
	}
	if c.NATS.SyncInterval < 0 {
		bad("nats.sync_interval", "must not be negative")
	}
	if c.NATS.MaxDeliver < 2 {
		bad("nats.max_deliver", "must be at least 2, not %d", c.NATS.MaxDeliver)
	}
	if c.NATS.MaxWaiting < 100 {
		bad("nats.max_waiting", "must be at least 100, not %d", c.NATS.MaxWaiting)
	}
	if time.Duration(c.Retention) < time.Hour {
		bad("retention", "must be at least 1h, not %s", time.Duration(c.Retention))
	}
	if len(c.Clusters) == 0 {
		bad("clusters", "must not be empty")
	}
	names := map[string]bool{}
	for i, cl := range c.Clusters {
		key := fmt.Sprintf("clusters[%d]", i)
		switch {
		case !clusterName.MatchString(cl.Name):
			bad(key+".name", "%q must be 1 to 63 letters, digits, '-' or '_', starting with a letter or digit", cl.Name)
		case names[cl.Name]:
			bad(key+".name", "%q is used by an earlier cluster", cl.Name)
		}
		names[cl.Name] = true
		if len(cl.Etcd.Endpoints) == 0 {
			bad(key+".etcd.endpoints", "must not be empty")
		}
		for j, e := range cl.Etcd.Endpoints {
			if err := checkEndpoint(e); err != nil {
				bad(fmt.Sprintf("%s.etcd.endpoints[%d]", key, j), "%v", err)
			}
		}
		for member, node := range cl.Nodes {
			if !nodeName.MatchString(node) || len(node) > 253 {
				bad(key+".nodes."+member, "%q must be a node name: letters, digits, '-' or '_', in parts joined by dots", node)
			}
		}
		for j, k := range cl.GuardedKeys {
			if strings.TrimSpace(k) == "" {
				bad(fmt.Sprintf("%s.guarded_keys[%d]", key, j), "must not be empty")
			}
		}
		checkTLS(bad, key+".etcd.tls", cl.Etcd.TLS)
	}
	if f := c.Webhook.BearerTokenFile; f != "" {
		tok, err := readSecret(f)
		if err != nil {
			bad("webhook.bearer_token_file", "%v", err)
		}
		c.Webhook.BearerToken = tok
	}
	if f := c.API.BearerTokenFile; f != "" {
		tok, err := readSecret(f)
		if err != nil {
			bad("api.bearer_token_file", "%v", err)
		}
		c.API.BearerToken = tok
	}
	if f := c.API.OperatorsFile; f != "" {
		ops, err := readOperators(f)
		if err != nil {
			bad("api.operators_file", "%v", err)
		}
		c.API.Operators = ops
	}
	if f := c.API.MetricsTokenFile; f != "" {
		tok, err := readSecret(f)
		if err != nil {
			bad("api.metrics_token_file", "%v", err)
		}
		c.API.MetricsToken = tok
	}
	for i, o := range c.Kubernetes.TrustedObjects {
		if o.Namespace == "" || o.Kind == "" {
			bad(fmt.Sprintf("kubernetes.trusted_objects[%d]", i), "namespace and kind must be set (name_prefix may be empty: every object of the kind there)")
		}
	}
	checkKeys(bad, "agent.service_keys", c.Agent.ServiceKeys, ": `remediator nats key --public --config serve.yaml` prints serve's")
	if c.ExternalURL != "" {
		if u, err := url.Parse(c.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("external_url", "%q is not an http(s) URL such as https://remediator.example.com", c.ExternalURL)
		}
	}
	if s := &c.Slack; s.Enabled() {
		for _, f := range []struct {
			key, path string
			into      *string
		}{
			{"slack.bot_token_file", s.BotTokenFile, &s.BotToken},
			{"slack.signing_secret_file", s.SigningSecretFile, &s.SigningSecret},
		} {
			if f.path == "" {
				bad(f.key, "must be set when Slack is configured")
				continue
			}
			secret, err := readSecret(f.path)
			if err != nil {
				bad(f.key, "%v", err)
			}
			*f.into = secret
		}
		if s.Channel == "" {
			bad("slack.channel", "must be set when Slack is configured")
		}
		if u, err := url.Parse(s.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("slack.api_url", "%q is not an http(s) URL", s.APIURL)
		}
	}
	if c.PoliciesDir != "" {
		if fi, err := os.Stat(c.PoliciesDir); err != nil {
			bad("policies_dir", "%v", err)
		} else if !fi.IsDir() {
			bad("policies_dir", "%s is not a directory", c.PoliciesDir)
		}
	}
	return errors.Join(errs...)
}

// validateNATS checks the nats section. The embedded server listens only with TLS and nkeys;
// an external NATS is used with credentials and TLS unless the operator says nats.insecure.
func (c *Config) validateNATS(bad func(key, format string, args ...any)) {
	n := &c.NATS
	for _, u := range splitNonEmpty(n.URL) {
		if p, err := url.Parse(u); err != nil || p.Host == "" {
			bad("nats.url", "%q is not a URL such as tls://nats.example:4222", remediator.RedactURL(u))
		}
	}
	if n.Listen != "" {
		if n.URL != "" {
			bad("nats.listen", "only applies to the embedded server (nats.url is set)")
		} else if _, _, err := net.SplitHostPort(n.Listen); err != nil {
			bad("nats.listen", "%q is not a host:port address", n.Listen)
		}
	}
	if n.CredsFile != "" && n.URL == "" {
		bad("nats.creds_file", "only applies with nats.url")
	}
	if n.CredsFile != "" && n.NkeyFile != "" {
		bad("nats.creds_file", "set nats.creds_file or nats.nkey_file, not both")
	}
	if n.TLS.Enabled() && n.URL == "" && n.Listen == "" {
		bad("nats.tls", "only applies with nats.url or nats.listen")
	}
	checkTLS(bad, "nats.tls", n.TLS)
	switch {
	case n.Listen != "":
		if n.Insecure {
			bad("nats.insecure", "only applies to nats.url: the embedded server never listens without TLS and nkeys")
		}
		var missing []string
		for _, k := range []struct{ key, value string }{{"nats.nkey_file", n.NkeyFile}, {"nats.agents_file", n.AgentsFile},
			{"nats.tls.cert_file", n.TLS.CertFile}, {"nats.tls.key_file", n.TLS.KeyFile}, {"nats.tls.ca_file", n.TLS.CAFile}} {
			if k.value == "" {
				missing = append(missing, k.key)
			}
		}
		if len(missing) > 0 {
			bad("nats.listen", "the embedded server listens only with nkeys for every client and TLS (client certificates checked against nats.tls.ca_file): set %s", strings.Join(missing, ", "))
		}
	case n.URL != "" && !n.Insecure:
		var missing []string
		if n.IdentityFile() == "" {
			missing = append(missing, "credentials (nats.nkey_file, or nats.creds_file)")
		}
		if n.TLS.CAFile == "" && !allTLS(n.URL) {
			missing = append(missing, "TLS (nats.tls.ca_file, or tls:// URLs)")
		}
		if len(missing) > 0 {
			bad("nats.url", "connecting without %s would let anyone on the network read and command remediator's queue: set them, or say nats.insecure: true", strings.Join(missing, " and "))
		}
	case n.Insecure && n.URL == "":
		bad("nats.insecure", "only applies with nats.url")
	}
	if n.CredsFile != "" {
		if err := readable(n.CredsFile); err != nil {
			bad("nats.creds_file", "%v", err)
		}
	}
	var own string
	if n.NkeyFile != "" {
		kp, err := ReadSeed(n.NkeyFile)
		if err != nil {
			bad("nats.nkey_file", "%v", err)
		} else {
			own, _ = kp.PublicKey()
		}
	}
	checkKeys(bad, "nats.previous_keys", n.PreviousKeys, "")
	if n.AgentsFile != "" {
		agents, err := ReadAgents(n.AgentsFile, c.ClusterNames())
		if err != nil {
			bad("nats.agents_file", "%v", err)
		}
		for _, id := range slices.Sorted(maps.Keys(agents)) {
			if own != "" && agents[id] == own {
				// An agent with serve's key could sign as serve: no agent would tell them apart.
				bad("nats.agents_file", "%s: %s has serve's own key (nats.nkey_file): every agent needs a key of its own", n.AgentsFile, id)
			}
		}
		n.Agents = agents
	}
}

// checkTLS reports, under section, a certificate without its key (or the other way round) and
// each file that cannot be read.
func checkTLS(bad func(key, format string, args ...any), section string, t TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad(section, "cert_file and key_file must be set together")
	}
	for _, f := range []struct{ key, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			bad(section+"."+f.key, "%v", err)
		}
	}
}

// checkKeys reports, under key, each entry of keys that is no public user nkey; hint says
// where to find the right one.
func checkKeys(bad func(key, format string, args ...any), key string, keys []string, hint string) {
	for i, k := range keys {
		if !nkeys.IsValidPublicUserKey(k) {
			bad(fmt.Sprintf("%s[%d]", key, i), "%q is not a public user nkey (U...)%s", k, hint)
		}
	}
}

// allTLS says whether every URL of a comma-separated list asks for TLS by its scheme.
func allTLS(urls string) bool {
	list := splitNonEmpty(urls)
	for _, u := range list {
		if !strings.HasPrefix(u, "tls://") {
			return false
		}
	}
	return len(list) > 0
}

// loopback says whether a host:port address is reachable from this host only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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

func checkEndpoint(e string) error {
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q is not a URL such as https://10.0.0.1:2379", e)
		}
		if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
			return fmt.Errorf("%q: scheme must be http, https, unix or unixs", e)
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(e); err != nil {
		return fmt.Errorf("%q is not host:port or a URL", e)
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
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

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
