package deploy

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	yamlv3 "gopkg.in/yaml.v3"

	"github.com/remediator/remediator/internal/tlstest"
	"github.com/remediator/remediator/queue"
)

// natsAccount is the NATS account remediator's users are in (`remediator nats server-config`'s
// default --account).
const natsAccount = "REMEDIATOR"

// natsRelease is the Helm release of the NATS chart (deploy/README.md: helm upgrade --install
// nats ...): the chart names its StatefulSet and Services after it.
const natsRelease = "nats"

// natsValues are deploy/nats's values files, in the order helm takes them (-f, -f).
var natsValues = []string{"nats/values.yaml", "nats/accounts.values.yaml"}

// natsChartDefaults is the NATS chart's values.yaml, comments removed.
const natsChartDefaults = "testdata/nats-chart/values.yaml"

// readYAMLMap reads a YAML file holding a map (an empty file is an empty map).
func readYAMLMap(file string) (map[string]any, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := yamlv3.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// coalesce takes src over dst as helm takes a values file over the values before it: maps are
// merged key by key, anything else (lists included) is replaced, and null deletes the key.
func coalesce(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range src {
		sv, srcMap := v.(map[string]any)
		dv, dstMap := out[k].(map[string]any)
		switch {
		case v == nil:
			delete(out, k)
		case srcMap && dstMap:
			out[k] = coalesce(dv, sv)
		default:
			out[k] = v
		}
	}
	return out
}

// at returns the value at a dotted path of a values tree, or nil.
func at(v map[string]any, keys ...string) any {
	var cur any = v
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func atMap(v map[string]any, keys ...string) map[string]any {
	m, _ := at(v, keys...).(map[string]any)
	return m
}

func atBool(v map[string]any, keys ...string) bool {
	b, _ := at(v, keys...).(bool)
	return b
}

func atString(v map[string]any, keys ...string) string {
	switch s := at(v, keys...).(type) {
	case string:
		return s
	case nil:
		return ""
	default:
		return fmt.Sprint(s)
	}
}

// checkChartKeys refuses values the chart does not have: where the chart's default is a map
// with keys, every key given must be one of them; a default of {} or [] takes anything (merge,
// patch, resources, env, ...); a single value is no map.
func checkChartKeys(key string, got, def any) []error {
	defMap, defIsMap := def.(map[string]any)
	gotMap, gotIsMap := got.(map[string]any)
	switch {
	case def == nil && gotIsMap:
		return []error{fmt.Errorf("%s: the NATS chart takes a single value here, not a map", key)}
	case !defIsMap || len(defMap) == 0:
		return nil
	case !gotIsMap:
		return []error{fmt.Errorf("%s: the NATS chart takes a map here (%s)", key, strings.Join(slices.Sorted(maps.Keys(defMap)), ", "))}
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(gotMap)) {
		sub := strings.TrimPrefix(key+"."+k, ".")
		d, ok := defMap[k]
		if !ok {
			hint := ""
			if strings.HasPrefix(sub, "config.") {
				hint = "; nats-server's own options go under merge"
			}
			errs = append(errs, fmt.Errorf("%s: the NATS chart has no such value (%s takes %s)%s", sub, cmp.Or(key, "the chart"), strings.Join(slices.Sorted(maps.Keys(defMap)), ", "), hint))
			continue
		}
		errs = append(errs, checkChartKeys(sub, gotMap[k], d)...)
	}
	return errs
}

// unrendered are the chart's values that change the server configuration in a way the lint
// does not render, each with what to do instead: one set otherwise than the chart's default is
// refused, as a listener the lint does not render is.
var unrendered = []struct{ key, instead string }{
	{"tlsCA.enabled", "give each TLS block its CA as merge.ca_file, in its Secret's dir"},
	{"nameOverride", "keep the release's names (nats): the certificates and the NetworkPolicies name them"},
	{"fullnameOverride", "keep the release's names (nats): the certificates and the NetworkPolicies name them"},
	{"statefulSet.name", "keep the release's names (nats): the certificates and the NetworkPolicies name them"},
	{"headlessService.name", "keep the release's names (nats): the routes' certificate names *.nats-headless"},
	{"config.cluster.routeURLs.useFQDN", "leave it off: the routes' certificate names *.nats-headless"},
	{"config.cluster.routeURLs.user", "the routes authenticate with their certificates (config.cluster.tls)"},
	{"config.cluster.routeURLs.password", "the routes authenticate with their certificates (config.cluster.tls)"},
	{"config.monitor.tls.enabled", "leave monitoring on plain HTTP, which the chart's probes ask"},
	{"config.jetstream.memoryStore.enabled", "remediator's streams and buckets are on file (config.jetstream.fileStore)"},
}

// lintNATSValues checks the NATS chart's values files (over the chart's defaults, as helm takes
// them) as the NATS servers will see them: the keys are the chart's, nats-box is off, JetStream
// is on persistent volumes, nothing is set that the lint does not render, and the server
// configuration rendered from them as the chart's templates do parses with nats-server's own
// parser into a server that takes clients with TLS, a verified client certificate and a known
// nkey only, runs three servers over verified TLS routes with JetStream, and gives serve's key
// (serveKey) every subject of remediator's account and each agent of agents its own subject
// and one answer per request, as the embedded server does.
func lintNATSValues(t *testing.T, serveKey string, agents map[string]string, files ...string) error {
	defaults, err := readYAMLMap(natsChartDefaults)
	if err != nil {
		return err
	}
	values := defaults
	var errs []error
	for _, f := range files {
		v, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		errs = append(errs, checkChartKeys("", v, defaults)...)
		values = coalesce(values, v)
	}
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if atBool(values, "natsBox", "enabled") {
		bad("natsBox.enabled: nats-box is on: it logs in with credentials of its own, and with every client needing a certificate and an nkey it would need remediator's: turn it off")
	}
	if !atBool(values, "config", "jetstream", "fileStore", "enabled") || !atBool(values, "config", "jetstream", "fileStore", "pvc", "enabled") {
		bad("config.jetstream.fileStore: JetStream must store on a PersistentVolumeClaim (fileStore.enabled, fileStore.pvc.enabled): a server that restarts would come back without its streams")
	}
	for _, l := range []string{"leafnodes", "websocket", "mqtt", "gateway", "profiling", "resolver"} {
		if atBool(values, "config", l, "enabled") {
			bad("config.%s.enabled: the lint renders the client port, the routes, JetStream and monitoring only, and a listener it does not render is one it does not check", l)
		}
	}
	for _, u := range unrendered {
		if v := at(values, strings.Split(u.key, ".")...); v != nil && v != false && v != "" {
			bad("%s: %v: the lint does not render it, and a server configuration it does not render is one it does not check: %s", u.key, v, u.instead)
		}
	}
	if p := patches("config", atMap(values, "config")); len(p) > 0 {
		bad("%s: JSON patches are not rendered by the lint: use merge", strings.Join(p, ", "))
	}
	if inc := includes("config", atMap(values, "config")); len(inc) > 0 {
		bad("%s: the chart turns it into an include directive, and the lint has no file to include: write what the file holds under merge itself", strings.Join(inc, ", "))
	}
	switch js := at(values, "config", "merge", "accounts", natsAccount, "jetstream"); js {
	case "enabled", "enable", true:
	default:
		if _, limits := js.(map[string]any); !limits {
			bad("config.merge.accounts.%s.jetstream: %v: remediator's account needs JetStream enabled for its streams and buckets", natsAccount, js)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	opts, err := parseNATSConf(t, values)
	if err != nil {
		return err
	}
	return errors.Join(checkNATSOptions(opts, serveKey, agents)...)
}

// patches lists the non-empty patch values under a values tree.
func patches(key string, v map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(v)) {
		switch sub := v[k].(type) {
		case []any:
			if k == "patch" && len(sub) > 0 {
				out = append(out, key+".patch")
			}
		case map[string]any:
			if k != "merge" {
				out = append(out, patches(key+"."+k, sub)...)
			}
		}
	}
	return out
}

// includes lists the keys under a values tree that end in $include, which the chart's
// nats.formatConfig turns into include directives.
func includes(key string, v map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(v)) {
		if strings.HasSuffix(k, "$include") {
			out = append(out, key+"."+k)
		}
		if sub, ok := v[k].(map[string]any); ok {
			out = append(out, includes(key+"."+k, sub)...)
		}
	}
	return out
}

// renderNATSConf is the server configuration the chart's files/config/*.yaml render from the
// values, for the values the lint renders (the others are refused above): the client port and
// its TLS, the cluster and its routes, monitoring and JetStream, then config.merge over it.
// The names are the release's (natsRelease); server_name is the first pod's, which the chart's
// $SERVER_NAME holds.
func renderNATSConf(v map[string]any) map[string]any {
	config := atMap(v, "config")
	tlsBlock := func(t map[string]any) map[string]any {
		b := map[string]any{}
		if s := atString(t, "secretName"); s != "" {
			dir := strings.TrimSuffix(atString(t, "dir"), "/")
			b["cert_file"] = dir + "/" + cmp.Or(atString(t, "cert"), "tls.crt")
			b["key_file"] = dir + "/" + cmp.Or(atString(t, "key"), "tls.key")
		}
		return coalesce(b, atMap(t, "merge"))
	}
	doc := map[string]any{
		"server_name":            natsRelease + "-0",
		"lame_duck_grace_period": "10s",
		"lame_duck_duration":     "30s",
		"pid_file":               "/var/run/nats/nats.pid",
		"port":                   at(config, "nats", "port"),
	}
	if t := atMap(config, "nats", "tls"); atBool(t, "enabled") {
		doc["tls"] = tlsBlock(t)
	}
	if c := atMap(config, "cluster"); atBool(c, "enabled") {
		scheme := "nats"
		if atBool(c, "tls", "enabled") {
			scheme = "tls"
		}
		replicas, _ := at(c, "replicas").(int)
		var routes []any
		for i := range replicas {
			routes = append(routes, fmt.Sprintf("%s://%s-%d.%s-headless:%v", scheme, natsRelease, i, natsRelease, at(c, "port")))
		}
		block := map[string]any{"name": natsRelease, "port": at(c, "port"), "no_advertise": at(c, "noAdvertise"), "routes": routes}
		if t := atMap(c, "tls"); atBool(t, "enabled") {
			block["tls"] = tlsBlock(t)
		}
		doc["cluster"] = coalesce(block, atMap(c, "merge"))
	}
	if m := atMap(config, "monitor"); atBool(m, "enabled") {
		doc["http_port"] = at(m, "port")
	}
	if js := atMap(config, "jetstream"); atBool(js, "enabled") {
		block := map[string]any{}
		if len(atMap(js, "memoryStore")) > 0 {
			block["max_memory_store"] = 0
		}
		if fs := atMap(js, "fileStore"); len(fs) > 0 {
			switch {
			case !atBool(fs, "enabled"):
				block["max_file_store"] = 0
			case atString(fs, "maxSize") != "":
				block["store_dir"], block["max_file_store"] = at(fs, "dir"), "<< "+atString(fs, "maxSize")+" >>"
			case atBool(fs, "pvc", "enabled"):
				block["store_dir"], block["max_file_store"] = at(fs, "dir"), "<< "+atString(fs, "pvc", "size")+" >>"
			default:
				block["store_dir"] = at(fs, "dir")
			}
		}
		doc["jetstream"] = coalesce(block, atMap(js, "merge"))
	}
	return coalesce(doc, atMap(config, "merge"))
}

// formatNATSConf writes the configuration as the chart's nats.formatConfig does: JSON, with
// "<< x >>" strings unquoted (includes are refused above).
func formatNATSConf(doc map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return regexp.MustCompile(`"<<\s+(.*?)\s+>>"`).ReplaceAll(b.Bytes(), []byte("${1}")), nil
}

// parseNATSConf renders the server configuration, writes it with the files of the TLS Secrets
// the chart mounts (each at its dir: tls.crt, tls.key and ca.crt, test certificates) under a
// temporary root, its absolute *_file and *_dir paths pointed there, and parses it with
// server.ProcessConfigFile. Messages name the paths as the pod has them.
func parseNATSConf(t *testing.T, values map[string]any) (*server.Options, error) {
	root := t.TempDir()
	config := atMap(values, "config")
	for _, proto := range []string{"nats", "cluster"} {
		block := atMap(config, proto, "tls")
		if (proto == "nats" || atBool(config, proto, "enabled")) && atBool(block, "enabled") && atString(block, "secretName") != "" {
			if err := writeTLSSecret(t, filepath.Join(root, atString(block, "dir"))); err != nil {
				return nil, err
			}
		}
	}
	doc := renderNATSConf(values)
	reroot(doc, root)
	conf, err := formatNATSConf(doc)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(root, "etc/nats-config/nats.conf")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, conf, 0o600); err != nil {
		return nil, err
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		// Without the root, and without the generated file's line numbers, which the operator
		// never sees (and which move with every user added).
		msg := regexp.MustCompile(`/etc/nats-config/nats\.conf:\d+:\d+: `).ReplaceAllString(strings.ReplaceAll(err.Error(), root, ""), "")
		return nil, fmt.Errorf("nats.conf: %s", strings.TrimSpace(msg))
	}
	return opts, nil
}

// writeTLSSecret writes a TLS Secret's files into dir as deploy/README.md makes them: tls.crt
// (a certificate for the servers and their routes, signed by a CA of its own), tls.key and
// ca.crt.
func writeTLSSecret(t *testing.T, dir string) error {
	ca := tlstest.New(t)
	pair := ca.Issue(t, natsRelease, natsRelease, "*."+natsRelease+"-headless")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, src := range map[string]string{"ca.crt": ca.File, "tls.crt": pair.CertFile, "tls.key": pair.KeyFile} {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// checkNATSOptions checks the parsed server configuration against what remediator relies on.
func checkNATSOptions(o *server.Options, serveKey string, agents map[string]string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("nats.conf: "+format, args...)) }
	switch {
	case o.TLSConfig == nil:
		bad("the client port takes plain connections: set config.nats.tls (enabled, secretName)")
	case o.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert:
		bad("the client port takes clients without a certificate: set config.nats.tls.merge.verify: true")
	case o.TLSConfig.ClientCAs == nil:
		bad("the client port checks client certificates against the system's CAs: set config.nats.tls.merge.ca_file to the NATS CA in the Secret's dir")
	}
	switch {
	case len(o.Routes) < 3:
		bad("%d routes: run a cluster of 3 servers (config.cluster.enabled, replicas: 3), so that streams with nats.replicas: 3 survive losing one", len(o.Routes))
	case o.Cluster.TLSConfig == nil:
		bad("the routes between the servers take plain connections: set config.cluster.tls (enabled, secretName)")
	case o.Cluster.TLSConfig.ClientCAs == nil:
		bad("the routes check each other's certificates against the system's CAs: set config.cluster.tls.merge.ca_file to the routes' CA in the Secret's dir")
	}
	if !o.JetStream || o.StoreDir == "" {
		bad("JetStream is off or stores nowhere: set config.jetstream.enabled and its fileStore")
	}
	if o.NoAuthUser != "" {
		bad("no_auth_user %s: a client without credentials would be let in as that user", o.NoAuthUser)
	}
	if o.Username != "" || o.Authorization != "" || len(o.Users) > 0 {
		bad("users with passwords or a token: remediator's users are nkeys, and no other client belongs in its NATS")
	}
	if !slices.ContainsFunc(o.Accounts, func(a *server.Account) bool { return a.Name == natsAccount }) {
		bad("no account %s: regenerate accounts.values.yaml (remediator nats server-config -o helm)", natsAccount)
		return errs
	}
	users := map[string]*server.NkeyUser{}
	for _, u := range o.Nkeys {
		if u.Account != nil && u.Account.Name == natsAccount {
			users[u.Nkey] = u
		}
	}
	want := map[string]string{}
	if serveKey != "" {
		want[serveKey] = "serve"
		switch u, ok := users[serveKey]; {
		case !ok:
			bad("account %s has no user for serve's key %s (nats.nkey_file): serve could not log in", natsAccount, serveKey)
		case u.Permissions != nil:
			bad("serve's user %s has permissions %s: serve needs every subject of its account (streams, buckets, the agents' subjects)", serveKey, permString(u.Permissions))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(agents)) {
		key := agents[id]
		want[key] = "agent " + id
		cluster, node, _ := strings.Cut(id, "/")
		subject, err := queue.AgentSubject(cluster, node)
		if err != nil {
			bad("agent %s: %v", id, err)
			continue
		}
		perms := queue.AgentPermissions(subject)
		switch u, ok := users[key]; {
		case !ok:
			bad("account %s has no user for agent %s (%s, serve's agents file): its agent could not log in", natsAccount, id, key)
		case !samePermissions(u.Permissions, perms):
			bad("agent %s's user %s has permissions %s, want %s: an agent takes only its own node's requests and answers each once", id, key, permString(u.Permissions), permString(perms))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(users)) {
		if want[k] == "" {
			bad("account %s has a user %s that is neither serve's key nor an agent's of serve's agents file: regenerate accounts.values.yaml", natsAccount, k)
		}
	}
	return errs
}

// samePermissions compares two users' permissions by what they allow (a nil list and an empty
// one are the same).
func samePermissions(a, b *server.Permissions) bool {
	if a == nil || b == nil {
		return a == b
	}
	subjects := func(x, y *server.SubjectPermission) bool {
		if x == nil || y == nil {
			return x == y
		}
		return slices.Equal(x.Allow, y.Allow) && slices.Equal(x.Deny, y.Deny)
	}
	responses := a.Response == nil && b.Response == nil ||
		a.Response != nil && b.Response != nil && *a.Response == *b.Response
	return subjects(a.Publish, b.Publish) && subjects(a.Subscribe, b.Subscribe) && responses
}

// permString is a user's permissions in a line.
func permString(p *server.Permissions) string {
	if p == nil {
		return "(none: every subject)"
	}
	part := func(s *server.SubjectPermission) string {
		if s == nil {
			return "any"
		}
		return fmt.Sprintf("allow %v deny %v", s.Allow, s.Deny)
	}
	r := "none"
	if p.Response != nil {
		r = fmt.Sprintf("%d within %v", p.Response.MaxMsgs, p.Response.Expires)
	}
	return fmt.Sprintf("{publish %s; subscribe %s; responses %s}", part(p.Publish), part(p.Subscribe), r)
}

// TestNATSValues lints deploy/nats's values for the NATS chart against the build's serve key
// and agents.
func TestNATSValues(t *testing.T) {
	d := build(t)
	if d.serveKey == "" || len(d.serve.NATS.Agents) == 0 {
		t.Fatalf("the build has no serve key (%q) or no agents (%v) to check the NATS accounts against", d.serveKey, d.serve.NATS.Agents)
	}
	if err := lintNATSValues(t, d.serveKey, d.serve.NATS.Agents, natsValues...); err != nil {
		t.Errorf("deploy/nats:\n%v", err)
	}
}

// natsFixtureAccounts is the account for the keys of testdata/kustomize/cluster.
const natsFixtureAccounts = "testdata/nats-fixture/accounts.values.yaml"

// TestBrokenNATSValues checks that each file of testdata/nats, taken over deploy/nats's
// values.yaml and the fixture's accounts as a third -f, fails with the error its leading
// comment names; with the fixture's accounts alone, the values pass.
func TestBrokenNATSValues(t *testing.T) {
	d, err := fixture()
	if err != nil {
		t.Fatal("testdata/kustomize/cluster does not pass the lint: see TestFixtureCluster")
	}
	base := []string{natsValues[0], natsFixtureAccounts}
	if err := lintNATSValues(t, d.serveKey, d.serve.NATS.Agents, base...); err != nil {
		t.Fatalf("%s over the fixture's accounts:\n%v", natsValues[0], err)
	}
	files, err := filepath.Glob("testdata/nats/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/nats/*.yaml: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			err := lintNATSValues(t, d.serveKey, d.serve.NATS.Agents, append(slices.Clone(base), f)...)
			wantError(t, f, "NATS chart values the lint must refuse", err)
		})
	}
}
