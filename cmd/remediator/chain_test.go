package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/report"
)

// The Debian packages' paths: CI installs them with apt-get, as the failure message says.
const (
	prometheusBin   = "/usr/bin/prometheus"
	alertmanagerBin = "/usr/bin/prometheus-alertmanager"
)

const (
	// quotaAlert is the etcd mixin's alert for a database near its quota: the one the
	// etcd-nospace policy answers.
	quotaAlert = "etcdDatabaseQuotaLowSpace"
	// chainCluster is the cluster's name in remediator and the cluster label Prometheus puts
	// on its alerts: not "default", so that an alert without the label would be refused
	// rather than quietly given the only cluster.
	chainCluster = "chain"
	// chainFor replaces every rule's for: the mixin waits minutes to be sure, the test
	// cannot, yet an alert must still go through pending before it fires.
	chainFor = "2s"
)

// rulesFile is the alerting rules deploy/ ships for Prometheus.
var rulesFile = filepath.Join("..", "..", "deploy", "prometheus", "etcd-rules.yaml")

// httpc is for the test's own requests to the servers it runs: none may hang the test.
var httpc = &http.Client{Timeout: 5 * time.Second}

// TestTheWholeChainWithPrometheusAndAlertmanager runs the chain as production does: etcd's
// own /metrics, scraped by Prometheus, whose rules from deploy/ fire etcdDatabaseQuotaLowSpace
// to Alertmanager, whose webhook (with its bearer token) reaches remediator, whose remediation
// heals etcd; the alert then resolves by the same road and closes the incident.
func TestTheWholeChainWithPrometheusAndAlertmanager(t *testing.T) {
	requireBinaries(t, prometheusBin, alertmanagerBin)
	rules := fastRules(t, rulesFile)

	etcd, cl := nospaceCluster(t)
	cfg := testConfig(t, etcd)
	cfg.Clusters[0].Name = chainCluster
	cfg.Webhook.BearerTokenFile = filepath.Join(t.TempDir(), "webhook-token")
	if err := os.WriteFile(cfg.Webhook.BearerTokenFile, []byte("chain-test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startService(t, cfg)
	// With auth on, an incident can only come from an Alertmanager that sent the token.
	if code := postNothing(t, m.Addr); code != http.StatusUnauthorized {
		t.Fatalf("POST without a bearer token: %d, want 401: the webhook must require the token for this test to show Alertmanager sends it", code)
	}

	am := startAlertmanager(t, m.Addr, cfg.Webhook.BearerTokenFile)
	prom := startPrometheus(t, etcd, am.addr, rules)

	pollUntil(t, "Prometheus to fire "+quotaAlert, 60*time.Second, func() (bool, string) {
		// ALERTS keeps the firing series once written, however soon the alert resolves.
		if fired := promQuery(t, prom.addr, `count_over_time(ALERTS{alertname="`+quotaAlert+`",alertstate="firing"}[10m])`); len(fired) > 0 {
			return true, ""
		}
		return false, promDiagnosis(t, prom.addr)
	})
	waitTheIncident(t, m.Addr, "Alertmanager's notification to open an incident", 30*time.Second, func(remediator.Incident) bool { return true })
	inc := waitTheIncident(t, m.Addr, "the incident to finish", 90*time.Second, terminal)

	if inc.State != remediator.StateSucceeded {
		t.Fatalf("incident %s: %s (%s), want succeeded; timeline:\n%s", inc.ID, inc.State, inc.Reason, timeline(inc))
	}
	if inc.Policy != "etcd-nospace" || inc.Remediation != "etcd-liveness-probe-guard" || inc.Cluster != chainCluster {
		t.Errorf("incident: policy %q, remediation %q, cluster %q; want etcd-nospace, etcd-liveness-probe-guard, %s",
			inc.Policy, inc.Remediation, inc.Cluster, chainCluster)
	}
	// Every member was filled over its quota, and Prometheus judges each on its own.
	firing := quotaAlerts(t, inc, remediator.AlertFiring)
	if len(firing) != len(etcd.Members) {
		t.Errorf("%d firing %s in the evidence, want one per member (%d):\n%s", len(firing), quotaAlert, len(etcd.Members), describe([]remediator.Incident{inc}))
	}
	for _, s := range inc.Steps {
		if s.State != remediator.StepSucceeded {
			t.Errorf("step %s: %s after %d attempts (%s)", s.Name, s.State, s.Attempts, s.Error)
		}
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms after the remediation: %s, want none", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}

	// The defragmented database falls under the rule's threshold: Prometheus resolves the
	// alert, Alertmanager sends the resolved notification, the incident closes.
	inc = waitTheIncident(t, m.Addr, "the resolved notification to close the incident", 45*time.Second, func(inc remediator.Incident) bool { return inc.Closed() })
	resolved := quotaAlerts(t, inc, remediator.AlertResolved)
	for fp := range firing {
		if _, ok := resolved[fp]; !ok {
			t.Errorf("alert %s (%s) fired but its resolution is not in the evidence", fp, firing[fp].Labels["instance"])
		}
	}
	if !slices.ContainsFunc(inc.Timeline, func(e remediator.Event) bool { return e.Kind == remediator.EventClosed }) {
		t.Errorf("closed at %s, but the timeline has no %q event:\n%s", inc.ClosedAt, remediator.EventClosed, timeline(inc))
	}
	if inc.ClosedAt.Before(inc.FinishedAt) {
		t.Errorf("closed at %s, before the remediation finished at %s", inc.ClosedAt, inc.FinishedAt)
	}

	var rep report.Report
	getJSON(t, "http://"+m.Addr+"/api/v1/incidents/"+inc.ID+"/report?format=json", &rep)
	if rep.State != remediator.StateSucceeded || rep.RecoveredAt.IsZero() || rep.ResolvedAt.IsZero() || rep.ClosedAt.IsZero() {
		t.Errorf("JSON report: state %s, recovered_at %s, resolved_at %s, closed_at %s; want succeeded and all three set",
			rep.State, rep.RecoveredAt, rep.ResolvedAt, rep.ClosedAt)
	}
	if rep.ClosedAt.Before(rep.ResolvedAt) {
		t.Errorf("JSON report: closed_at %s is before resolved_at %s", rep.ClosedAt, rep.ResolvedAt)
	}
	if len(rep.Members) != len(etcd.Members) {
		t.Errorf("JSON report: %d members, want %d", len(rep.Members), len(etcd.Members))
	}
	for _, mem := range rep.Members {
		if mem.Before == nil || mem.After == nil || mem.After.DBSize >= mem.Before.DBSize {
			t.Errorf("JSON report: member %s db size before %s, after %s: want it smaller after", mem.Name, dbSize(mem.Before), dbSize(mem.After))
		}
	}

	// Prometheus itself saw the recovery: the alert is no longer active there.
	pollUntil(t, "Prometheus to drop "+quotaAlert, 30*time.Second, func() (bool, string) {
		active := promAlerts(t, prom.addr, quotaAlert)
		return len(active) == 0, fmt.Sprintf("active alerts %v", active)
	})
	if got := amNotifications(t, am.addr, "alertmanager_notifications_failed_total"); got != 0 {
		t.Errorf("Alertmanager counts %v failed webhook notifications, want 0 (refused token?)", got)
	}
	if got := amNotifications(t, am.addr, "alertmanager_notifications_total"); got < 2 {
		t.Errorf("Alertmanager sent %v webhook notifications, want at least the firing and the resolved one", got)
	}
	all := incidents(t, m.Addr)
	if len(all) != 1 {
		t.Errorf("%d incidents, want 1:\n%s", len(all), describe(all))
	}
	t.Logf("the incident as the chain left it:\n%s", describe(all))
}

// waitTheIncident polls until the only incident satisfies done. A second incident fails at
// once: every notification Alertmanager sends about these alerts, firing, partly resolved or
// resolved, belongs to the one incident they opened.
func waitTheIncident(t *testing.T, addr, what string, timeout time.Duration, done func(remediator.Incident) bool) remediator.Incident {
	t.Helper()
	var inc remediator.Incident
	pollUntil(t, what, timeout, func() (bool, string) {
		all := incidents(t, addr)
		if len(all) > 1 {
			t.Fatalf("while waiting for %s: %d incidents, want 1:\n%s", what, len(all), describe(all))
		}
		if len(all) == 0 {
			return false, "no incident"
		}
		inc = all[0]
		return done(inc), "\n" + describe(all)
	})
	return inc
}

// describe shows incidents as a human reads them: state, evidence, timeline.
func describe(incs []remediator.Incident) string {
	var b strings.Builder
	for _, inc := range incs {
		state := string(inc.State)
		if inc.Reason != "" {
			state += " (" + inc.Reason + ")"
		}
		fmt.Fprintf(&b, "incident %s: %s, finished %s, closed %s\n", inc.ID, state, clock(inc.FinishedAt), clock(inc.ClosedAt))
		for _, a := range inc.Evidence {
			fmt.Fprintf(&b, "  evidence %s %s %s (%s, fingerprint %s, starts %s, ends %s, received %s)\n", a.Source, a.Name(), a.Status,
				a.Labels["instance"], a.Fingerprint, clock(a.StartsAt), clock(a.EndsAt), clock(a.ReceivedAt))
		}
		b.WriteString(timeline(inc))
	}
	return b.String()
}

// clock is a time of day to the millisecond, enough to order a test's events; "-" if unset.
func clock(at time.Time) string {
	if at.IsZero() {
		return "-"
	}
	return at.Format("15:04:05.000")
}

// requireBinaries fails in CI, where the packages belong to the image, and skips elsewhere.
func requireBinaries(t *testing.T, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%v: apt-get install prometheus prometheus-alertmanager", err)
			}
			t.Skipf("%v: apt-get install prometheus prometheus-alertmanager to run this test", err)
		}
	}
}

// fastRules copies the rule file for the test's Prometheus with every for: shortened to
// chainFor and every group evaluated at the global 1s interval: the same expressions, in
// seconds rather than minutes. It takes plain rule files and PrometheusRule objects
// (spec.groups) alike, and requires quotaAlert among the rules.
func fastRules(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("the alerting rules the chain runs on: %v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	if len(doc.Content) == 0 {
		t.Fatalf("%s is empty", src)
	}
	groups := mappingValue(doc.Content[0], "groups")
	if spec := mappingValue(doc.Content[0], "spec"); groups == nil && spec != nil {
		groups = mappingValue(spec, "groups")
	}
	if groups == nil || groups.Kind != yaml.SequenceNode {
		t.Fatalf("%s has no rule groups (groups: or a PrometheusRule's spec.groups)", src)
	}
	found := false
	for _, g := range groups.Content {
		deleteKey(g, "interval")
		rules := mappingValue(g, "rules")
		if rules == nil {
			continue
		}
		for _, r := range rules.Content {
			if a := mappingValue(r, "alert"); a != nil && a.Value == quotaAlert {
				found = true
			}
			if f := mappingValue(r, "for"); f != nil {
				f.Value = chainFor
			}
			// An alert kept firing after it cleared would hold the incident open.
			deleteKey(r, "keep_firing_for")
		}
	}
	if !found {
		t.Fatalf("%s has no %s alert", src, quotaAlert)
	}
	out, err := yaml.Marshal(map[string]*yaml.Node{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "etcd-rules.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func deleteKey(m *yaml.Node, key string) {
	if m.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}

// startAlertmanager runs Alertmanager with one route to remediator's webhook, grouped and
// repeated as the deploy example does but in seconds, with no gossip cluster.
func startAlertmanager(t *testing.T, remediatorAddr, tokenFile string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"route": map[string]any{
			"receiver": "remediator",
			"group_by": []string{"alertname", "cluster"},
			// Long enough for every member's alert to be in the first notification: each
			// target is scraped at its own offset, so their alerts fire up to an evaluation
			// apart, and the remediation may be over before a second notification comes.
			// Production waits 30s for the same reason.
			"group_wait":      "3s",
			"group_interval":  "1s",
			"repeat_interval": "1h",
		},
		"receivers": []any{map[string]any{
			"name": "remediator",
			"webhook_configs": []any{map[string]any{
				"url":           "http://" + remediatorAddr + "/webhooks/alertmanager",
				"send_resolved": true,
				"http_config": map[string]any{
					"authorization": map[string]any{"type": "Bearer", "credentials_file": tokenFile},
				},
			}},
		}},
	}
	addr := freeAddr(t)
	s := startServer(t, "alertmanager", addr, alertmanagerBin,
		"--config.file="+writeYAML(t, dir, "alertmanager.yml", cfg),
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		// Empty: no gossip, which would otherwise bind :9094 on every interface.
		"--cluster.listen-address=",
	)
	s.waitReady(t, 30*time.Second)
	return s
}

// startPrometheus runs Prometheus scraping every member's /metrics each second, evaluating
// the rules each second, and sending alerts to the given Alertmanager.
func startPrometheus(t *testing.T, etcd *etcdtest.Cluster, amAddr, rules string) *server {
	t.Helper()
	dir := t.TempDir()
	var targets []string
	for _, m := range etcd.Members {
		u, err := url.Parse(m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, u.Host)
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval":     "1s",
			"scrape_timeout":      "1s",
			"evaluation_interval": "1s",
			"external_labels":     map[string]string{"cluster": chainCluster},
		},
		"rule_files": []string{rules},
		"scrape_configs": []any{map[string]any{
			"job_name": "etcd",
			// On the series too, not only on the alerts as external labels are: a rule that
			// aggregates by cluster keeps it.
			"static_configs": []any{map[string]any{"targets": targets, "labels": map[string]string{"cluster": chainCluster}}},
		}},
		"alerting": map[string]any{
			"alertmanagers": []any{map[string]any{"static_configs": []any{map[string]any{"targets": []string{amAddr}}}}},
		},
	}
	addr := freeAddr(t)
	s := startServer(t, "prometheus", addr, prometheusBin,
		"--config.file="+writeYAML(t, dir, "prometheus.yml", cfg),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		// Firing alerts are sent again each evaluation rather than each minute, so that
		// Alertmanager never takes one for resolved between two sends.
		"--rules.alert.resend-delay=1s",
	)
	s.waitReady(t, 30*time.Second)
	return s
}

// server is a server the test runs as a child process; its output goes to the test log if
// the test fails.
type server struct {
	name   string
	addr   string
	out    *syncBuffer
	exited chan struct{}
	err    error // how it exited, once exited is closed
}

// startServer starts bin and stops it when the test ends: an interrupt first, so that it
// shuts down as it would in production, then a kill if it takes more than 5s.
func startServer(t *testing.T, name, addr, bin string, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	s := &server{name: name, addr: addr, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.exited
		if t.Failed() {
			t.Logf("%s output (%s):\n%s", name, strings.Join(cmd.Args, " "), lastLines(s.out.String(), 80))
		}
	})
	return s
}

// waitReady waits for the server's /-/ready, and fails at once if the server exits.
func (s *server) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var saw string
	for {
		select {
		case <-s.exited:
			t.Fatalf("%s exited before it was ready (%v); its output is below", s.name, s.err)
		default:
		}
		resp, err := httpc.Get("http://" + s.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			saw = resp.Status
		} else {
			saw = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready on %s after %s; last answer: %s; its output is below", s.name, s.addr, timeout, saw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pollUntil polls check until it says done; on timeout it fails with what was awaited and
// what check last saw.
func pollUntil(t *testing.T, what string, timeout time.Duration, check func() (done bool, saw string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, saw := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last saw: %s", timeout, what, saw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// promQuery runs an instant query and returns the labels of the resulting series.
func promQuery(t *testing.T, addr, query string) []map[string]string {
	t.Helper()
	var resp struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	promGet(t, addr, "/api/v1/query?query="+url.QueryEscape(query), &resp)
	out := make([]map[string]string, len(resp.Data.Result))
	for i, r := range resp.Data.Result {
		out[i] = r.Metric
	}
	return out
}

// promAlerts returns the states of Prometheus's active (pending or firing) alerts of a name.
func promAlerts(t *testing.T, addr, name string) []string {
	t.Helper()
	var resp struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	promGet(t, addr, "/api/v1/alerts", &resp)
	var out []string
	for _, a := range resp.Data.Alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a.Labels["instance"]+" "+a.State)
		}
	}
	return out
}

// promDiagnosis says why an alert may not fire: the targets' health, the rule's state and
// the very ratio the rule compares.
func promDiagnosis(t *testing.T, addr string) string {
	t.Helper()
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	promGet(t, addr, "/api/v1/targets", &targets)
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					State     string `json:"state"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	promGet(t, addr, "/api/v1/rules?type=alert", &rules)
	var b strings.Builder
	for _, tg := range targets.Data.ActiveTargets {
		fmt.Fprintf(&b, "target %s %s %s; ", tg.ScrapeURL, tg.Health, tg.LastError)
	}
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			if r.Name == quotaAlert {
				fmt.Fprintf(&b, "rule %s: %s, health %s %s; ", r.Name, r.State, r.Health, r.LastError)
			}
		}
	}
	var ratio struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	promGet(t, addr, "/api/v1/query?query="+url.QueryEscape("100 * etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes"), &ratio)
	for _, r := range ratio.Data.Result {
		fmt.Fprintf(&b, "db %% of quota on %s: %v; ", r.Metric["instance"], r.Value[1:])
	}
	return b.String()
}

func promGet(t *testing.T, addr, path string, v any) {
	t.Helper()
	resp, err := httpc.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("Prometheus: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Prometheus GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("Prometheus GET %s: %v: %s", path, err, body)
	}
}

// amNotifications sums an Alertmanager counter over its webhook integration's series.
func amNotifications(t *testing.T, addr, metric string) float64 {
	t.Helper()
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("Alertmanager metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(series, metric+"{") || !strings.Contains(series, `integration="webhook"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("Alertmanager metrics: %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// quotaAlerts returns the incident's evidence of quotaAlert with the given status, by
// fingerprint, and flags evidence that did not come from Prometheus through Alertmanager.
func quotaAlerts(t *testing.T, inc remediator.Incident, status remediator.AlertStatus) map[string]remediator.Alert {
	t.Helper()
	out := map[string]remediator.Alert{}
	for _, a := range inc.Evidence {
		if a.Source != remediator.SourceAlertmanager || a.Name() != quotaAlert || a.Labels["cluster"] != chainCluster || a.Labels["job"] != "etcd" {
			t.Errorf("evidence %s from %s, labels %v: want only %s from Alertmanager with cluster %q and job \"etcd\"",
				a.Name(), a.Source, a.Labels, quotaAlert, chainCluster)
			continue
		}
		if a.Status == status {
			out[a.Fingerprint] = a
		}
	}
	return out
}

// postNothing posts an empty Alertmanager payload without credentials.
func postNothing(t *testing.T, addr string) int {
	t.Helper()
	resp, err := httpc.Post("http://"+addr+"/webhooks/alertmanager", "application/json", strings.NewReader(`{"version":"4","alerts":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func timeline(inc remediator.Incident) string {
	var b strings.Builder
	for _, e := range inc.Timeline {
		fmt.Fprintf(&b, "  %s %-18s %s %s\n", clock(e.At), e.Kind, e.Step, e.Message)
	}
	return b.String()
}

func dbSize(s *remediator.MemberStatus) string {
	if s == nil {
		return "missing"
	}
	return strconv.FormatInt(s.DBSize, 10)
}

func writeYAML(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddr is a loopback address nothing listens on now: for servers that cannot be told to
// pick a port themselves and report it.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d earlier lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
