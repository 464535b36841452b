// Package config loads remediator's configuration: defaults first, then the YAML file, then
// validation whose messages name the key that is wrong.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator/internal/yamlstrict"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the HTTP address.
	Listen string `yaml:"listen"`
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
	// ExternalURL is how humans reach this service, for links in chat (http://<listen> if
	// empty).
	ExternalURL string `yaml:"external_url"`
	API         API    `yaml:"api"`
	Slack       Slack  `yaml:"slack"`
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
	// OperatorsFile holds one token per operator (YAML, name: token): the token says who
	// answers, so each counts as one person.
	OperatorsFile string `yaml:"operators_file"`
	// BearerToken and Operators are read from the files by Validate.
	BearerToken string            `yaml:"-"`
	Operators   map[string]string `yaml:"-"`
}

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

// NATS says where the queue is.
type NATS struct {
	// URL of an existing NATS cluster with JetStream; empty starts an embedded server.
	URL string `yaml:"url"`
	// CredsFile is a NATS credentials file for URL.
	CredsFile string `yaml:"creds_file"`
	// Replicas of remediator's streams and buckets on a NATS cluster.
	Replicas int `yaml:"replicas"`
	// AckWait is how long a worker may stay silent before its work goes to another worker.
	AckWait Duration `yaml:"ack_wait"`
	// Listen is where the embedded server takes connections from node agents (none if
	// empty: it then serves this process only).
	Listen string `yaml:"listen"`
}

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

// TLS holds the files of an etcd client certificate.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled says whether any TLS file is set.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Webhook configures the intake endpoints.
type Webhook struct {
	// BearerTokenFile holds the token senders must present; empty means no auth.
	BearerTokenFile string `yaml:"bearer_token_file"`
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
		NATS:    NATS{Replicas: 1, AckWait: Duration(30 * time.Second)},
		Slack:   Slack{APIURL: DefaultSlackAPIURL},
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
	cfg := Defaults(getenv)
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := yamlstrict.Decode(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
		cfg.resolvePaths(filepath.Dir(path))
	}
	if err := cfg.Validate(); err != nil {
		if path == "" {
			return Config{}, fmt.Errorf("config (defaults): %w", err)
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
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
	}
	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}
	for _, u := range splitNonEmpty(c.NATS.URL) {
		if p, err := url.Parse(u); err != nil || p.Host == "" {
			bad("nats.url", "%q is not a URL such as nats://127.0.0.1:4222", u)
		}
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas", "must be between 1 and 5, not %d", c.NATS.Replicas)
	} else if c.NATS.URL == "" && c.NATS.Replicas != 1 {
		bad("nats.replicas", "must be 1 with the embedded server (nats.url is empty)")
	}
	if c.NATS.CredsFile != "" {
		if c.NATS.URL == "" {
			bad("nats.creds_file", "only applies with nats.url")
		} else if err := readable(c.NATS.CredsFile); err != nil {
			bad("nats.creds_file", "%v", err)
		}
	}
	if c.NATS.Listen != "" {
		if c.NATS.URL != "" {
			bad("nats.listen", "only applies to the embedded server (nats.url is set)")
		} else if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
			bad("nats.listen", "%q is not a host:port address", c.NATS.Listen)
		}
	}
	if time.Duration(c.NATS.AckWait) < time.Second {
		bad("nats.ack_wait", "must be at least 1s, not %s", time.Duration(c.NATS.AckWait))
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
		t := cl.Etcd.TLS
		if (t.CertFile == "") != (t.KeyFile == "") {
			bad(key+".etcd.tls", "cert_file and key_file must be set together")
		}
		for _, f := range []struct{ key, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.path == "" {
				continue
			}
			if err := readable(f.path); err != nil {
				bad(key+".etcd.tls."+f.key, "%v", err)
			}
		}
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

// readOperators reads "name: token" lines; every token must be distinct.
func readOperators(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ops := map[string]string{}
	if err := yamlstrict.Decode(b, &ops); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]string{}
	for name, tok := range ops {
		switch {
		case strings.TrimSpace(tok) == "":
			return nil, fmt.Errorf("%s: operator %q has no token", path, name)
		case seen[tok] != "":
			return nil, fmt.Errorf("%s: operators %q and %q share a token", path, seen[tok], name)
		}
		seen[tok] = name
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
