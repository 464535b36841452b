package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/slacktest"
	"github.com/remediator/remediator/internal/tlstest"
)

// node is a control-plane node of a test: one etcd member as a static pod with the seed's old
// kubeadm probe, which kills etcd under NOSPACE, filled into NOSPACE.
func nospaceNode(t *testing.T) *etcdtest.StaticCluster {
	t.Helper()
	c := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: 1, QuotaBytes: 4 << 20,
		Template: filepath.Join("..", "..", "testdata", "manifests", "etcd-kubeadm-1.13.yaml")})
	cl, err := c.Cluster().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := etcdtest.Fill(ctx, cl); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAgent runs `remediator agent` as on the node, until the test ends.
func startAgent(t *testing.T, configPath, node string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		cmd := rootCmd()
		cmd.SetOut(logs)
		cmd.SetErr(logs)
		cmd.SetArgs([]string{"agent", "--node", node, "--config", configPath, "--log-level", "debug"})
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return logs
}

// startNATS runs a NATS server with opts until the test ends.
func startNATS(t *testing.T, opts *natsserver.Options) *natsserver.Server {
	t.Helper()
	opts.NoSigs = true
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return ns
}

// serveConfigFile writes serve's configuration with its key serve.nk and the agents file in
// dir, the given NATS keys, and node n's etcd.
func serveConfigFile(t *testing.T, dir, nats string, n *etcdtest.Node) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, "serve.yaml"), fmt.Sprintf(`listen: 127.0.0.1:0
data_dir: %s
nats:
  %s
  nkey_file: serve.nk
  agents_file: agents
  ack_wait: 3s
clusters:
  - name: default
    etcd: {endpoints: [%s]}
`, filepath.Join(dir, "data"), nats, n.ClientURL))
}

// agentConfigFile writes the configuration of node n's agent: its key agent.nk in dir, its
// client certificate, NATS at natsAddr over TLS, and serve's public key.
func agentConfigFile(t *testing.T, dir, natsAddr, caFile string, client tlstest.Pair, n *etcdtest.Node, serviceKey string) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, "agent.yaml"), fmt.Sprintf(`nats:
  url: tls://%s
  nkey_file: agent.nk
  tls: {ca_file: %s, cert_file: %s, key_file: %s}
clusters:
  - name: default
    etcd: {endpoints: [%s]}
agent:
  service_keys: [%s]
  manifests_dir: %s
  stopped_dir: %s
  backup_dir: %s
`, natsAddr, caFile, client.CertFile, client.KeyFile, n.ClientURL, strings.TrimSpace(serviceKey), n.ManifestsDir, n.StoppedDir, n.BackupDir))
}

// healed waits for the only incident to end, and checks etcd healed with its probe as found.
func healed(t *testing.T, addr string, c *etcdtest.StaticCluster, manifest []byte) {
	t.Helper()
	inc := waitIncident(t, addr, 3*time.Minute, terminal)
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("incident %s: %s", inc.State, inc.Reason)
	}
	for _, s := range inc.Steps {
		if s.Name == "suspend-probes" && !strings.Contains(s.Output, "commented out") {
			t.Errorf("the agent did not suspend the probe: %s", s.Output)
		}
	}
	cl, err := c.Cluster().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if alarms, err := cl.AlarmList(ctx); err != nil || len(alarms.Alarms) != 0 {
		t.Errorf("alarms after the remediation: %v, %v", alarms, err)
	}
	if _, err := cl.Put(ctx, "after", "works"); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
	if got, _ := os.ReadFile(c.Nodes[0].Manifest()); !bytes.Equal(got, manifest) {
		t.Errorf("etcd.yaml is not as found:\n%s", got)
	}
}

// The setup the README gives for remote agents, done with the commands it names: serve's
// embedded NATS listens with TLS, the agent has a key and a client certificate of its own, and
// the seed 004 recovery suspends and restores the probe through it.
func TestAnAgentWithItsOwnKeyHealsOverTLS(t *testing.T) {
	c := nospaceNode(t)
	n := c.Nodes[0]
	manifest, _ := os.ReadFile(n.Manifest())
	dir := t.TempDir()
	ca := tlstest.New(t)
	srv, client := ca.Issue(t, "nats", "127.0.0.1"), ca.Issue(t, "agent-"+n.Name)

	if out, err := run(t, "nats", "key", "--out", filepath.Join(dir, "serve.nk")); err != nil || !strings.Contains(out, "public key") {
		t.Fatalf("nats key: %q, %v", out, err)
	}
	natsAddr := freeAddr(t)
	servePath := serveConfigFile(t, dir, fmt.Sprintf("listen: %s\n  tls: {cert_file: %s, key_file: %s, ca_file: %s}", natsAddr, srv.CertFile, srv.KeyFile, ca.File), n)
	out, err := run(t, "agent", "credentials", "--node", n.Name, "--config", servePath, "--out", filepath.Join(dir, "agent.nk"))
	if err != nil || !strings.Contains(out, "default/"+n.Name) {
		t.Fatalf("agent credentials: %q, %v", out, err)
	}
	serviceKey, err := run(t, "nats", "key", "--public", "--config", servePath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(servePath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	m := startService(t, cfg)

	agentPath := agentConfigFile(t, dir, natsAddr, ca.File, client, n, serviceKey)
	logs := startAgent(t, agentPath, n.Name)

	// Nobody else gets in: not without a key, not with the agent's key and no certificate.
	agentKey, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "agent.nk"))
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]nats.Option{
		"anonymous":                            {nats.RootCAs(ca.File), nats.ClientCert(client.CertFile, client.KeyFile)},
		"the agent's key, with no certificate": {nats.RootCAs(ca.File), agentKey},
	} {
		if nc, err := nats.Connect("tls://"+natsAddr, append(opts, nats.MaxReconnects(0), nats.Timeout(3*time.Second))...); err == nil {
			nc.Close()
			t.Errorf("%s: connected to serve's NATS", name)
		}
	}
	agentAnswers(t, m, n.Name, logs)
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	healed(t, m.Addr, c, manifest)
}

// An external NATS configured as `remediator nats server-config` says: serve and the agent
// connect with their keys over TLS, and the recovery goes through the agent.
func TestServeAndAnAgentOnAnExternalNATSConfiguredByServerConfig(t *testing.T) {
	c := nospaceNode(t)
	n := c.Nodes[0]
	manifest, _ := os.ReadFile(n.Manifest())
	dir := t.TempDir()
	ca := tlstest.New(t)
	srv, client := ca.Issue(t, "nats", "127.0.0.1"), ca.Issue(t, "remediator")
	if _, err := run(t, "nats", "key", "--out", filepath.Join(dir, "serve.nk")); err != nil {
		t.Fatal(err)
	}
	natsAddr := freeAddr(t)
	servePath := serveConfigFile(t, dir, fmt.Sprintf("url: tls://%s\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}", natsAddr, ca.File, client.CertFile, client.KeyFile), n)
	if _, err := run(t, "agent", "credentials", "--node", n.Name, "--config", servePath, "--out", filepath.Join(dir, "agent.nk")); err != nil {
		t.Fatal(err)
	}
	accounts, err := run(t, "nats", "server-config", "--config", servePath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "remediator-accounts.conf"), accounts)
	host, port, _ := net.SplitHostPort(natsAddr)
	conf := writeFile(t, filepath.Join(dir, "nats-server.conf"), fmt.Sprintf(`host: %s
port: %s
server_name: external
jetstream { store_dir: %q }
tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
include ./remediator-accounts.conf
`, host, port, filepath.Join(dir, "js"), srv.CertFile, srv.KeyFile, ca.File))
	opts, err := natsserver.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server does not take the configuration:\n%s\n%v", accounts, err)
	}
	startNATS(t, opts)

	cfg, err := config.Load(servePath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	m := startService(t, cfg)
	serviceKey, _ := run(t, "nats", "key", "--public", "--config", servePath)
	agentPath := agentConfigFile(t, dir, natsAddr, ca.File, client, n, serviceKey)
	agentAnswers(t, m, n.Name, startAgent(t, agentPath, n.Name))

	// The agent's identity can neither approve nor read the queue there either.
	agentKey, _ := nats.NkeyOptionFromSeed(filepath.Join(dir, "agent.nk"))
	errs := make(chan error, 4)
	nc, err := nats.Connect("tls://"+natsAddr, nats.RootCAs(ca.File), nats.ClientCert(client.CertFile, client.KeyFile), agentKey,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.Publish("remediator.work.answer", []byte(`{}`))
	_ = nc.Flush()
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("the agent's publish to the answers: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the agent's identity published to remediator's answers")
	}
	nc.Close()

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	healed(t, m.Addr, c, manifest)
}

// agentAnswers waits until the node's agent answers the service, signed, over its own
// connection.
func agentAnswers(t *testing.T, m *Main, node string, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := m.queue.Agents().Ask(ctx, "default", node, remediator.NodeAction{Kind: remediator.ActionInspect, Component: remediator.ComponentEtcd, Incident: "test"})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent of %s does not answer: %v\n%s", node, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A tenant can write etcd's own error strings into the events of its pods: such an event is
// kept as context, and opens no incident; the same words from etcd's pod would.
func TestATenantsEventStartsNothing(t *testing.T) {
	etcd := etcdtest.New(t, etcdtest.Options{Members: 1})
	m := startService(t, testConfig(t, etcd))
	code, body := postEvent(t, m.Addr, "replicaset-nospace.json") // namespace shop: "database space exceeded"
	if code != http.StatusAccepted || body["context"] != float64(1) {
		t.Fatalf("POST the tenant's event: %d %v, want 202 with it kept as context", code, body)
	}
	waitFor(t, "the correlator keeps the event", func() bool {
		return strings.Contains(metrics(t, m.Addr), `remediator_alerts_correlated_total{outcome="kept"} 1`)
	})
	if all := incidents(t, m.Addr); len(all) != 0 {
		t.Fatalf("the tenant's event opened %d incidents: %+v", len(all), all)
	}
}

func metrics(t *testing.T, addr string) string { return getText(t, "http://"+addr+"/metrics") }

// getText returns the body of a GET, whatever its status.
func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// One person, one vote: alice clicks Approve in Slack, then approves with her operator
// token; the two-person rule still waits for someone else.
func TestAPersonsClickAndTheirTokenAreOneApprover(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	slack := slacktest.New(t, botToken)
	cfg := testConfig(t, etcd)
	withSlack(t, &cfg, slack, "auto", "      users: [U01ALICE, bob]\n      required: 2\n      timeout: 10m\n      from_risk: high")
	dir := t.TempDir()
	cfg.API.OperatorsFile = writeFile(t, filepath.Join(dir, "operators.yaml"), "alice: {token: alices-token, slack_id: U01ALICE}\nbob: bobs-token\n")
	alices := writeFile(t, filepath.Join(dir, "alice"), "alices-token\n")
	m := startService(t, cfg)
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	click(t, m.Addr, "U01ALICE", "approve", inc.ID)
	waitFor(t, "alice's click recorded", func() bool {
		a := incidents(t, m.Addr)[0].Approval
		return a != nil && len(a.Approvals) == 1
	})
	out, err := run(t, "approve", inc.ID, "--server", "http://"+m.Addr, "--token-file", alices)
	if err == nil || !strings.Contains(err.Error(), "alice approved already") {
		t.Fatalf("alice again, with her token: %q, %v; want refused", out, err)
	}
	inc = incidents(t, m.Addr)[0]
	if inc.State != remediator.StateAwaitingApproval || len(inc.Approval.Approvals) != 1 || inc.Approval.Approvals[0].By != "alice" {
		t.Fatalf("%s with approvals %+v, want alice's one and still waiting", inc.State, inc.Approval.Approvals)
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms: %q, want NOSPACE untouched while waiting", a)
	}
}

// serve over HTTPS: the CLI reaches it with the CA that signed its certificate, and reads
// need the operator token; the incident is a NOSPACE alert on a healthy etcd, which the
// preflight finds nothing to do about.
func TestServeOverHTTPSAndTheCLI(t *testing.T) {
	etcd := etcdtest.New(t, etcdtest.Options{Members: 1})
	cfg := testConfig(t, etcd)
	ca := tlstest.New(t)
	cert := ca.Issue(t, "remediator", "127.0.0.1")
	cfg.TLS = config.ServeTLS{CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	dir := t.TempDir()
	cfg.API.BearerTokenFile = writeFile(t, filepath.Join(dir, "token"), "operator-secret\n")
	m := startService(t, cfg)

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.File)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "alertmanager", "nospace-firing.json"))
	resp, err := client.Post("https://"+m.Addr+"/webhooks/alertmanager", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST over HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := http.Post("http://"+m.Addr+"/webhooks/alertmanager", "application/json", bytes.NewReader(body)); err == nil {
		if resp.StatusCode == http.StatusAccepted {
			t.Error("plain HTTP was taken")
		}
		resp.Body.Close()
	}

	var inc remediator.Incident
	waitFor(t, "the incident skipped", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "https://"+m.Addr+"/api/v1/incidents", nil)
		req.Header.Set("Authorization", "Bearer operator-secret")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct{ Incidents []remediator.Incident }
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Incidents) != 1 {
			return false
		}
		inc = list.Incidents[0]
		return inc.State.Terminal()
	})
	if inc.State != remediator.StateSkipped || !strings.Contains(inc.Reason, "nothing to do") {
		t.Errorf("incident %s: %q, want skipped: nothing to do", inc.State, inc.Reason)
	}
	server := "https://" + m.Addr
	tokenFile := filepath.Join(dir, "token")
	if _, err := run(t, "report", inc.ID, "--server", server, "--token-file", tokenFile); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("report without the CA: %v, want a certificate error", err)
	}
	if _, err := run(t, "report", inc.ID, "--server", server, "--ca-file", ca.File); exitCode(err) != exitRefused || !strings.Contains(err.Error(), "reading incidents needs an operator token") {
		t.Errorf("report without a token: %v, want 401", err)
	}
	md, err := run(t, "report", inc.ID, "--server", server, "--ca-file", ca.File, "--token-file", tokenFile)
	if err != nil || !strings.Contains(md, "# Incident "+inc.ID) || !strings.Contains(md, "nothing to do") {
		t.Errorf("report: %v\n%s", err, md)
	}
}

// The issue's attack: on a NATS where anyone may publish (nats.insecure), two publishes on
// remediator.work.answer once passed a two-person rule. Unsigned, they approve nothing, and
// the incident says so.
func TestForgedAnswersOnAnOpenNATSApproveNothing(t *testing.T) {
	etcd := etcdtest.New(t, etcdtest.Options{Members: 1})
	ns := startNATS(t, &natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir()})
	cfg := testConfig(t, etcd)
	cfg.NATS.URL, cfg.NATS.Insecure = ns.ClientURL(), true
	dir := t.TempDir()
	cfg.PoliciesDir = filepath.Join(dir, "policies")
	_ = os.Mkdir(cfg.PoliciesDir, 0o755)
	writeFile(t, filepath.Join(cfg.PoliciesDir, "p.yaml"), `policies:
  - name: two-people
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-nospace-recovery
    mode: approve
    approval: {users: [U01ALICE, U02BOB], required: 2}
`)
	m := startService(t, cfg)
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for _, by := range []string{"U01ALICE", "U02BOB"} {
		answer := fmt.Sprintf(`{"incident":%q,"by":%q,"via":"slack","approve":true}`, inc.ID, by)
		if _, err := js.Publish("remediator.work.answer", []byte(answer)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both forged answers refused in the timeline", func() bool {
		refused := 0
		for _, e := range incidents(t, m.Addr)[0].Timeline {
			if e.Kind == remediator.EventRefused && strings.Contains(e.Message, "without the signature of remediator's intake") {
				refused++
			}
		}
		return refused == 2
	})
	inc = incidents(t, m.Addr)[0]
	if inc.State != remediator.StateAwaitingApproval || len(inc.Approval.Approvals) != 0 {
		t.Fatalf("%s with approvals %+v after two forged answers; want still waiting, none", inc.State, inc.Approval.Approvals)
	}
}

// A configuration validated but whose secret files were never read has empty tokens, and an
// empty token turns its check off: serve refuses it before it opens anything.
func TestServeRefusesAConfigurationWhoseSecretsWereNotRead(t *testing.T) {
	cfg := config.Defaults(func(string) string { return "" })
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Webhook.BearerTokenFile = writeFile(t, filepath.Join(t.TempDir(), "webhook-token"), "senders-secret\n")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: cfg, Log: slog.New(slog.DiscardHandler)}
	err := m.Run(context.Background())
	if err == nil {
		m.Close()
		t.Fatal("serve ran with the webhook token file unread, so with no webhook token")
	}
	if !strings.Contains(err.Error(), "secret files were not read") {
		t.Fatalf("serve refused with %v, want it to say the secrets were not read", err)
	}
	if err := cfg.LoadSecrets(); err != nil || !cfg.SecretsLoaded() || cfg.Webhook.BearerToken != "senders-secret" {
		t.Fatalf("LoadSecrets: %v; loaded %v, token %q", err, cfg.SecretsLoaded(), cfg.Webhook.BearerToken)
	}
}
