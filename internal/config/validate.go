package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/remediator/remediator"
)

// clusterName is what a cluster name may be: it becomes part of queue keys and file paths.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// nodeName is what a node may be called: often its FQDN, as Kubernetes names cloud nodes.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)*$`)

// problems collects what is wrong with a section, each problem naming its key.
type problems []error

// add records a problem with key.
func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// err is every problem, one a line, or nil.
func (p problems) err() error { return errors.Join(p...) }

// Validate checks every key, section by section, in the order of the file's sections; each
// error names its key. It reads no secret: LoadSecrets does, after it.
func (c *Config) Validate() error {
	var p problems
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		p.add("listen", "%q is not a host:port address", c.Listen)
	} else {
		p = append(p, c.Webhook.validate(c.Listen))
	}
	p = append(p, c.TLS.validate())
	if c.DataDir == "" {
		p.add("data_dir", "must not be empty")
	}
	p = append(p, c.NATS.validate())
	if time.Duration(c.Retention) < time.Hour {
		p.add("retention", "must be at least 1h, not %s", time.Duration(c.Retention))
	}
	if len(c.Clusters) == 0 {
		p.add("clusters", "must not be empty")
	}
	earlier := map[string]bool{}
	for i, cl := range c.Clusters {
		p = append(p, cl.validate(fmt.Sprintf("clusters[%d]", i), earlier))
		earlier[cl.Name] = true
	}
	p = append(p, c.Kubernetes.validate(), c.Agent.Validate())
	if c.ExternalURL != "" {
		if u, err := url.Parse(c.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("external_url", "%q is not an http(s) URL such as https://remediator.example.com", c.ExternalURL)
		}
	}
	p = append(p, c.Slack.validate())
	if c.PoliciesDir != "" {
		if fi, err := os.Stat(c.PoliciesDir); err != nil {
			p.add("policies_dir", "%v", err)
		} else if !fi.IsDir() {
			p.add("policies_dir", "%s is not a directory", c.PoliciesDir)
		}
	}
	return p.err()
}

// validate checks that webhooks need a token where listen is reachable from other hosts.
func (w Webhook) validate(listen string) error {
	var p problems
	if !loopback(listen) && w.BearerTokenFile == "" && !w.Insecure {
		p.add("webhook.bearer_token_file", "must be set when listen (%s) is reachable from other hosts: anyone there could post alerts (say webhook.insecure: true to take them anyway)", listen)
	}
	return p.err()
}

// validate checks serve's certificate, when HTTPS is configured.
func (t ServeTLS) validate() error {
	if !t.Enabled() {
		return nil
	}
	return TLS{CertFile: t.CertFile, KeyFile: t.KeyFile}.validate("tls")
}

// validate reports, under key, a certificate without its key (or the other way round) and
// each file that cannot be read.
func (t TLS) validate(key string) error {
	var p problems
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add(key, "cert_file and key_file must be set together")
	}
	for _, f := range []struct{ key, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			p.add(key+"."+f.key, "%v", err)
		}
	}
	return p.err()
}

// validate checks the nats section: how it is reached, then how its streams are kept.
func (n NATS) validate() error {
	p := n.access()
	if n.Replicas < 1 || n.Replicas > 5 {
		p.add("nats.replicas", "must be between 1 and 5, not %d", n.Replicas)
	} else if n.URL == "" && n.Replicas != 1 {
		p.add("nats.replicas", "must be 1 with the embedded server (nats.url is empty)")
	}
	if time.Duration(n.AckWait) < time.Second {
		p.add("nats.ack_wait", "must be at least 1s, not %s", time.Duration(n.AckWait))
	}
	if n.SyncInterval < 0 {
		p.add("nats.sync_interval", "must not be negative")
	}
	if n.MaxDeliver < 2 {
		p.add("nats.max_deliver", "must be at least 2, not %d", n.MaxDeliver)
	}
	if n.MaxWaiting < 100 {
		p.add("nats.max_waiting", "must be at least 100, not %d", n.MaxWaiting)
	}
	return p.err()
}

// access checks how NATS is reached. The embedded server listens only with TLS and nkeys; an
// external NATS is used with credentials and TLS unless the operator says nats.insecure.
func (n NATS) access() problems {
	var p problems
	for _, u := range splitNonEmpty(n.URL) {
		if parsed, err := url.Parse(u); err != nil || parsed.Host == "" {
			p.add("nats.url", "%q is not a URL such as tls://nats.example:4222", remediator.RedactURL(u))
		}
	}
	if n.Listen != "" {
		if n.URL != "" {
			p.add("nats.listen", "only applies to the embedded server (nats.url is set)")
		} else if _, _, err := net.SplitHostPort(n.Listen); err != nil {
			p.add("nats.listen", "%q is not a host:port address", n.Listen)
		}
	}
	if n.CredsFile != "" && n.URL == "" {
		p.add("nats.creds_file", "only applies with nats.url")
	}
	if n.CredsFile != "" && n.NkeyFile != "" {
		p.add("nats.creds_file", "set nats.creds_file or nats.nkey_file, not both")
	}
	if n.TLS.Enabled() && n.URL == "" && n.Listen == "" {
		p.add("nats.tls", "only applies with nats.url or nats.listen")
	}
	p = append(p, n.TLS.validate("nats.tls"))
	switch {
	case n.Listen != "":
		if n.Insecure {
			p.add("nats.insecure", "only applies to nats.url: the embedded server never listens without TLS and nkeys")
		}
		var missing []string
		for _, k := range []struct{ key, value string }{{"nats.nkey_file", n.NkeyFile}, {"nats.agents_file", n.AgentsFile},
			{"nats.tls.cert_file", n.TLS.CertFile}, {"nats.tls.key_file", n.TLS.KeyFile}, {"nats.tls.ca_file", n.TLS.CAFile}} {
			if k.value == "" {
				missing = append(missing, k.key)
			}
		}
		if len(missing) > 0 {
			p.add("nats.listen", "the embedded server listens only with nkeys for every client and TLS (client certificates checked against nats.tls.ca_file): set %s", strings.Join(missing, ", "))
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
			p.add("nats.url", "connecting without %s would let anyone on the network read and command remediator's queue: set them, or say nats.insecure: true", strings.Join(missing, " and "))
		}
	case n.Insecure && n.URL == "":
		p.add("nats.insecure", "only applies with nats.url")
	}
	if n.CredsFile != "" {
		if err := readable(n.CredsFile); err != nil {
			p.add("nats.creds_file", "%v", err)
		}
	}
	for i, k := range n.PreviousKeys {
		if !nkeys.IsValidPublicUserKey(k) {
			p.add(fmt.Sprintf("nats.previous_keys[%d]", i), "%q is not a public user nkey (U...)", k)
		}
	}
	return p
}

// validate checks the cluster under key (clusters[i]); earlier holds the names of the
// clusters before it.
func (cl Cluster) validate(key string, earlier map[string]bool) error {
	var p problems
	switch {
	case !clusterName.MatchString(cl.Name):
		p.add(key+".name", "%q must be 1 to 63 letters, digits, '-' or '_', starting with a letter or digit", cl.Name)
	case earlier[cl.Name]:
		p.add(key+".name", "%q is used by an earlier cluster", cl.Name)
	}
	if len(cl.Etcd.Endpoints) == 0 {
		p.add(key+".etcd.endpoints", "must not be empty")
	}
	for j, e := range cl.Etcd.Endpoints {
		if err := checkEndpoint(e); err != nil {
			p.add(fmt.Sprintf("%s.etcd.endpoints[%d]", key, j), "%v", err)
		}
	}
	for _, member := range slices.Sorted(maps.Keys(cl.Nodes)) {
		if node := cl.Nodes[member]; !nodeName.MatchString(node) || len(node) > 253 {
			p.add(key+".nodes."+member, "%q must be a node name: letters, digits, '-' or '_', in parts joined by dots", node)
		}
	}
	for j, k := range cl.GuardedKeys {
		if strings.TrimSpace(k) == "" {
			p.add(fmt.Sprintf("%s.guarded_keys[%d]", key, j), "must not be empty")
		}
	}
	p = append(p, cl.Etcd.TLS.validate(key+".etcd.tls"))
	return p.err()
}

// validate checks that each trusted object names its namespace and kind.
func (k Kubernetes) validate() error {
	var p problems
	for i, o := range k.TrustedObjects {
		if o.Namespace == "" || o.Kind == "" {
			p.add(fmt.Sprintf("kubernetes.trusted_objects[%d]", i), "namespace and kind must be set (name_prefix may be empty: every object of the kind there)")
		}
	}
	return p.err()
}

// validate checks that a Slack app, once any of it is configured, is configured whole.
func (s Slack) validate() error {
	if !s.Enabled() {
		return nil
	}
	var p problems
	if s.BotTokenFile == "" {
		p.add("slack.bot_token_file", "must be set when Slack is configured")
	}
	if s.SigningSecretFile == "" && s.AppTokenFile == "" {
		p.add("slack.signing_secret_file", "must be set when Slack is configured, unless slack.app_token_file turns on Socket Mode: Slack's answers reach remediator one way or the other")
	}
	if s.Channel == "" {
		p.add("slack.channel", "must be set when Slack is configured")
	}
	if u, err := url.Parse(s.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("slack.api_url", "%q is not an http(s) URL", s.APIURL)
	}
	return p.err()
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

// readable checks that a file the configuration names opens; what it holds is for its user.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
