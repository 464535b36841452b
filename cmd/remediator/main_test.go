package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/etcdtest"
)

// quota is the test clusters' --quota-backend-bytes: small, so that NOSPACE takes seconds.
const quota = 8 << 20

// testConfig is the defaults, on a free port and a fresh data dir, for the given cluster.
func testConfig(t testing.TB, etcd *etcdtest.Cluster) config.Config {
	cfg := config.Defaults(func(string) string { return "" })
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NATS.AckWait = config.Duration(3 * time.Second)
	cfg.Clusters[0].Etcd.Endpoints = etcd.Endpoints()
	return cfg
}

// startService runs the whole service in this process until the test ends.
func startService(t testing.TB, cfg config.Config) *Main {
	t.Helper()
	if err := errors.Join(cfg.Validate(), cfg.LoadSecrets()); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	m := &Main{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Reads of incidents need an operator token once the operator API is on.
	token := cfg.API.BearerToken
	for _, o := range cfg.API.Operators {
		token = cmp.Or(token, o.Token)
	}
	readTokens.Store(m.Addr, token)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	return m
}

// writePolicy writes a policies_dir whose one policy sends NOSPACE alerts to the remediation
// with the given mode and parameters.
func writePolicy(t *testing.T, mode string, params map[string]string) string {
	t.Helper()
	return onePolicy(t, `text.contains("database space exceeded") || labels.alertname == "etcdDatabaseQuotaLowSpace"`,
		"etcd-nospace-recovery", mode, params)
}

// onePolicy writes a policies_dir whose one policy sends the alerts match picks to the
// remediation, in the mode, with the parameters.
func onePolicy(tb testing.TB, match, remediation, mode string, params map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	var p strings.Builder
	fmt.Fprintf(&p, "policies:\n  - name: test\n    match: %s\n    remediation: %s\n    mode: %s\n    params:\n", match, remediation, mode)
	for k, v := range params {
		fmt.Fprintf(&p, "      %s: %q\n", k, v)
	}
	if len(params) == 0 {
		p.WriteString("      {}\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "test.yaml"), []byte(p.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// nospaceCluster starts a 3-member cluster and fills it into NOSPACE, checking that it is
// really there: the alarm is armed and writes are refused.
func nospaceCluster(t *testing.T) (*etcdtest.Cluster, *clientv3.Client) {
	t.Helper()
	return nospaceClusterAt(t, etcdtest.DefaultVersion)
}

// nospaceClusterAt is nospaceCluster on the given etcd version.
func nospaceClusterAt(t *testing.T, v etcdtest.Version) (*etcdtest.Cluster, *clientv3.Client) {
	t.Helper()
	etcd := etcdtest.New(t, etcdtest.Options{Members: 3, QuotaBytes: quota, Version: v})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := etcdtest.Fill(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if alarms := alarmList(t, cl); !strings.Contains(alarms, "NOSPACE") {
		t.Fatalf("after filling, alarms = %q, want NOSPACE", alarms)
	}
	if err := probeWrite(cl); !errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
		t.Fatalf("a write after filling: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	return etcd, cl
}

// assertHealed checks what a NOSPACE recovery must leave: the incident succeeded, no alarm is
// armed and a write succeeds.
func assertHealed(t *testing.T, inc remediator.Incident, cl *clientv3.Client) {
	t.Helper()
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("incident %s: %s (%s), want succeeded", inc.ID, inc.State, inc.Reason)
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms after the remediation: %s, want none", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
}

func alarmList(t *testing.T, cl *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cl.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range resp.Alarms {
		out = append(out, fmt.Sprintf("%x:%s", a.MemberID, a.Alarm))
	}
	return strings.Join(out, ",")
}

func probeWrite(cl *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.Put(ctx, "test/after", "written")
	return err
}

// post sends a testdata payload of Alertmanager's and returns the status and decoded body.
func post(t *testing.T, addr, file string) (int, map[string]any) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "alertmanager", file))
	if err != nil {
		t.Fatal(err)
	}
	return postBody(t, "http://"+addr+"/webhooks/alertmanager", body)
}

// postEvent sends a testdata Kubernetes event, for the only cluster there is.
func postEvent(t *testing.T, addr, file string) (int, map[string]any) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	delete(e, "clusterName")
	body, _ = json.Marshal(e)
	return postBody(t, "http://"+addr+"/webhooks/kubernetes", body)
}

func postBody(t testing.TB, url string, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// readTokens holds the operator token of each service a test started, by its address.
var readTokens sync.Map

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := readTokens.Load(req.URL.Host); tok != nil && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func incidents(t testing.TB, addr string) []remediator.Incident {
	var list struct{ Incidents []remediator.Incident }
	getJSON(t, "http://"+addr+"/api/v1/incidents", &list)
	return list.Incidents
}

// waitIncident polls the API until the only incident satisfies done.
func waitIncident(t testing.TB, addr string, timeout time.Duration, done func(remediator.Incident) bool) remediator.Incident {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []remediator.Incident
	for time.Now().Before(deadline) {
		last = incidents(t, addr)
		if len(last) > 1 {
			t.Fatalf("%d incidents, want 1: %+v", len(last), last)
		}
		if len(last) == 1 && done(last[0]) {
			return last[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("no incident as wanted after %s; incidents:\n%s", timeout, b)
	return remediator.Incident{}
}

func terminal(inc remediator.Incident) bool { return inc.State.Terminal() }

func step(t *testing.T, inc remediator.Incident, name string) remediator.Step {
	t.Helper()
	for _, s := range inc.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("incident has no step %q: %+v", name, inc.Steps)
	return remediator.Step{}
}

// defragTimes returns when each member finished defragmenting, from the members' own logs.
func defragTimes(t *testing.T, etcd *etcdtest.Cluster) map[string][]time.Time {
	t.Helper()
	out := map[string][]time.Time{}
	for _, m := range etcd.Members {
		ts, err := m.LogLines("finished defragment")
		if err != nil {
			t.Fatal(err)
		}
		out[m.Name] = ts
	}
	return out
}

func leaderOf(t *testing.T, statuses []remediator.MemberStatus) string {
	t.Helper()
	for _, s := range statuses {
		if s.Leader {
			return s.Name
		}
	}
	t.Fatalf("no leader among %+v", statuses)
	return ""
}

// assertDefraggedOnceLeaderLast checks, from etcd's own logs, that every member was
// defragmented exactly once and the leader after every other member.
func assertDefraggedOnceLeaderLast(t *testing.T, etcd *etcdtest.Cluster, leader string) {
	t.Helper()
	times := defragTimes(t, etcd)
	for name, ts := range times {
		if len(ts) != 1 {
			t.Errorf("member %s was defragmented %d times, want once", name, len(ts))
		}
	}
	if t.Failed() || len(times[leader]) == 0 {
		return
	}
	for name, ts := range times {
		if name != leader && !ts[0].Before(times[leader][0]) {
			t.Errorf("member %s was defragmented at %s, not before the leader %s at %s", name, ts[0], leader, times[leader][0])
		}
	}
}

func TestNOSPACEIsHealedEndToEnd(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	m := startService(t, testConfig(t, etcd))

	// etcd's liveness probe fails before the alert fires: kept, it joins the incident.
	if code, body := postEvent(t, m.Addr, "etcd-liveness-unhealthy.json"); code != http.StatusAccepted || body["alerts"] != float64(1) {
		t.Fatalf("POST event: %d %v, want 202 with 1 signal", code, body)
	}
	code, body := post(t, m.Addr, "nospace-firing.json")
	if code != http.StatusAccepted || body["duplicate"] != false || body["alerts"] != float64(3) {
		t.Fatalf("POST firing: %d %v, want 202 with 3 new alerts", code, body)
	}
	inc := waitIncident(t, m.Addr, 2*time.Minute, terminal)

	assertHealed(t, inc, cl)
	assertDefraggedOnceLeaderLast(t, etcd, leaderOf(t, inc.Before))
	if len(inc.Evidence) != 4 || inc.Remediation != "etcd-liveness-probe-guard" || inc.Policy != "etcd-nospace" {
		t.Errorf("incident evidence %d alerts, remediation %q, policy %q; want the 3 alerts and the probe failure", len(inc.Evidence), inc.Remediation, inc.Policy)
	}
	if inc.Closed() {
		t.Errorf("incident closed at %v while its alerts fire", inc.ClosedAt)
	}
	for _, s := range inc.Steps {
		if s.State != remediator.StepSucceeded || s.Attempts != 1 {
			t.Errorf("step %s: %s after %d attempts (%s)", s.Name, s.State, s.Attempts, s.Error)
		}
	}
	for i, after := range inc.After {
		if before := inc.Before[i]; after.DBSize >= before.DBSize/2 || len(after.Alarms) > 0 {
			t.Errorf("member %s: db %d -> %d, alarms %v -> %v: want it halved at least and no alarms",
				after.Name, before.DBSize, after.DBSize, before.Alarms, after.Alarms)
		}
	}
	if snap, err := os.Stat(filepath.Join(m.Config.DataDir, "backups", "default", inc.ID+".db")); err != nil {
		t.Errorf("snapshot: %v", err)
	} else if snap.Size() < 1<<20 {
		t.Errorf("snapshot of %d bytes; want the filled keyspace saved", snap.Size())
	}

	// Alertmanager sends the same notification again: the same message, not a second incident.
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted || body["duplicate"] != true {
		t.Errorf("POST firing again: %d %v, want 202 duplicate", code, body)
	}
	// The resolved notification joins the incident as evidence, and closes it.
	if code, _ := post(t, m.Addr, "nospace-resolved.json"); code != http.StatusAccepted {
		t.Errorf("POST resolved: %d", code)
	}
	inc = waitIncident(t, m.Addr, 30*time.Second, func(inc remediator.Incident) bool { return len(inc.Evidence) == 7 && inc.Closed() })

	md, err := run(t, "report", inc.ID, "--server", "http://"+m.Addr)
	if err != nil {
		t.Fatalf("remediator report: %v\n%s", err, md)
	}
	for _, want := range []string{"# Incident " + inc.ID, "succeeded", "Members before and after", "Webhook to verified recovery", "| 6 | defragment | high | succeeded | 1 |", "| 9 | restore-probes | low | succeeded | 1 |",
		"EtcdPodUnhealthy firing from kubernetes", "closed: every alert of the incident resolved"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	var rep struct {
		TimeToRecovery float64 `json:"time_to_recovery_seconds"`
		Members        []struct{ Before, After *remediator.MemberStatus }
	}
	getJSON(t, "http://"+m.Addr+"/api/v1/incidents/"+inc.ID+"/report?format=json", &rep)
	if rep.TimeToRecovery <= 0 || len(rep.Members) != 3 || rep.Members[0].Before == nil || rep.Members[0].After == nil {
		t.Errorf("JSON report: time to recovery %v, %d members with before and after", rep.TimeToRecovery, len(rep.Members))
	}
}

func TestMemberDownBeforeTheRemediationStopsIt(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	down := etcd.Members[2]
	down.Kill()
	m := startService(t, testConfig(t, etcd))

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, 2*time.Minute, terminal)

	if inc.State != remediator.StateFailed || !strings.Contains(inc.Reason, "member "+down.Name) || !strings.Contains(inc.Reason, "refusing") {
		t.Fatalf("incident: %s (%s), want failed naming member %s", inc.State, inc.Reason, down.Name)
	}
	if s := step(t, inc, "defragment"); s.State != remediator.StepSkipped || s.Attempts != 0 {
		t.Errorf("defragment step: %s after %d attempts, want skipped", s.State, s.Attempts)
	}
	for name, ts := range defragTimes(t, etcd) {
		if len(ts) > 0 {
			t.Errorf("member %s was defragmented although a member was down", name)
		}
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms: %q, want NOSPACE left as it was", a)
	}
}

func TestMemberDownDuringDefragmentationStopsBeforeTheNext(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	cfg := testConfig(t, etcd)
	cfg.PoliciesDir = writePolicy(t, "auto", map[string]string{"pause_between_members": "3s"})
	m := startService(t, cfg)

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, 2*time.Minute, func(inc remediator.Incident) bool {
		return len(inc.Steps) == 6 && strings.Contains(string(inc.Steps[3].Progress), `"name"`)
	})
	var progress struct{ Done []struct{ Name string } }
	if err := json.Unmarshal(step(t, inc, "defragment").Progress, &progress); err != nil || len(progress.Done) != 1 {
		t.Fatalf("defragment progress %s: %v", step(t, inc, "defragment").Progress, err)
	}
	first, leader := progress.Done[0].Name, leaderOf(t, inc.Before)
	var down *etcdtest.Member
	for _, mem := range etcd.Members {
		if mem.Name != first && mem.Name != leader {
			down = mem
		}
	}
	down.Kill()

	inc = waitIncident(t, m.Addr, 2*time.Minute, terminal)
	if inc.State != remediator.StateFailed || !strings.Contains(inc.Reason, "not defragmenting") || !strings.Contains(inc.Reason, down.Name) {
		t.Fatalf("incident: %s (%s), want failed naming %s", inc.State, inc.Reason, down.Name)
	}
	for name, ts := range defragTimes(t, etcd) {
		if want := map[bool]int{true: 1, false: 0}[name == first]; len(ts) != want {
			t.Errorf("member %s defragmented %d times, want %d", name, len(ts), want)
		}
	}
	if s := step(t, inc, "disarm"); s.State != remediator.StepSkipped {
		t.Errorf("disarm step: %s, want skipped", s.State)
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms: %q, want NOSPACE left armed", a)
	}
}

// syncBuffer is a log sink that goroutines may write to while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
