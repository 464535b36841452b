package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// run runs the remediator command with args, as from a shell, and returns what it printed.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestApprovalWithoutSlackFromTheCommandLine(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	cfg := testConfig(t, etcd)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte("operator-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.API.BearerTokenFile = tokenFile
	operators := filepath.Join(dir, "operators.yaml")
	if err := os.WriteFile(operators, []byte("alice: alices-token\nbob: bobs-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.API.OperatorsFile = operators
	alicesToken := filepath.Join(dir, "alice")
	if err := os.WriteFile(alicesToken, []byte("alices-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	policies := filepath.Join(dir, "policies")
	_ = os.Mkdir(policies, 0o755)
	if err := os.WriteFile(filepath.Join(policies, "p.yaml"), []byte(`policies:
  - name: ask-first
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-nospace-recovery
    mode: approve
    approval: {users: [alice, bob]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.PoliciesDir = policies
	m := startService(t, cfg)
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	if inc.Approval.Gate != "preflight" {
		t.Fatalf("waiting before %q, want before the first step", inc.Approval.Gate)
	}
	server := "http://" + m.Addr

	out, err := run(t, "approve", inc.ID, "--as", "mallory", "--server", server, "--token-file", tokenFile)
	if exitCode(err) != exitRefused || !strings.Contains(err.Error(), "mallory may not answer") {
		t.Fatalf("approve as mallory: %q, %v; want refused", out, err)
	}
	out, err = run(t, "approve", inc.ID, "--as", "bob", "--server", server, "--token-file", alicesToken)
	if err == nil || !strings.Contains(err.Error(), "this token is alice's, not bob's") {
		t.Fatalf("alice's token as bob: %q, %v; want refused", out, err)
	}
	out, err = run(t, "approve", inc.ID, "--comment", "quota is fine, history is the problem", "--server", server, "--token-file", alicesToken)
	if err != nil || !strings.Contains(out, "incident "+inc.ID+" is running") {
		t.Fatalf("approve as alice: %q, %v", out, err)
	}
	inc = waitIncident(t, m.Addr, 2*time.Minute, terminal)
	if inc.State != remediator.StateSucceeded || inc.Approval.Approvals[0].By != "alice" || inc.Approval.Approvals[0].Via != "api" {
		t.Fatalf("incident: %s (%s), approvals %+v", inc.State, inc.Reason, inc.Approval.Approvals)
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms: %s", a)
	}
	var timeline []string
	for _, e := range inc.Timeline {
		timeline = append(timeline, e.Kind+": "+e.Message)
	}
	for _, want := range []string{"refused: approval by mallory via api-shared refused", "approved: approved by alice via api (1 of 1): quota is fine"} {
		if !strings.Contains(strings.Join(timeline, "\n"), want) {
			t.Errorf("timeline lacks %q:\n%s", want, strings.Join(timeline, "\n"))
		}
	}

	// The alert was silenced and will never resolve: alice closes the incident by hand.
	if inc.Closed() {
		t.Fatalf("closed at %v while its alerts fire", inc.ClosedAt)
	}
	out, err = run(t, "close", inc.ID, "--reason", "alert silenced while we resize the quota", "--server", server, "--token-file", alicesToken)
	if err != nil || !strings.Contains(out, "incident "+inc.ID+" (succeeded) closed at") {
		t.Fatalf("close as alice: %q, %v", out, err)
	}
	inc = waitIncident(t, m.Addr, 10*time.Second, func(inc remediator.Incident) bool { return inc.Closed() })
	if last := inc.Timeline[len(inc.Timeline)-1]; last.Kind != remediator.EventClosed || !strings.Contains(last.Message, "closed by alice with 3 alert(s) still firing: alert silenced") {
		t.Errorf("last event %s: %s", last.Kind, last.Message)
	}
}

func TestPolicyLint(t *testing.T) {
	out, err := run(t, "policy", "lint", "../../policies")
	if err != nil || !strings.Contains(out, "ok  ../../policies/default.yaml: etcd-nospace -> etcd-liveness-probe-guard (auto)") {
		t.Errorf("lint of the defaults: %q, %v", out, err)
	}
	if out, err := run(t, "policy", "lint", "../../policies/testdata/invalid"); err == nil || !strings.Contains(out, `policy "broken": match: Syntax error`) {
		t.Errorf("lint of invalid policies: %q, %v", out, err)
	}
}

func TestSimulateShowsThePlanAndItsGates(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "p.yaml"), []byte(`policies:
  - name: nights-only
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-nospace-recovery
    mode: auto
    approval: {users: [alice], from_risk: high}
    maintenance:
      windows: [{days: [mon-fri], start: "22:00", end: "06:00", timezone: Europe/Berlin}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "remediator.yaml")
	if err := os.WriteFile(config, []byte("policies_dir: policies\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "simulate", "--config", config, "--payload", "../../testdata/alertmanager/nospace-firing.json", "--at", "2026-11-23T12:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"etcdDatabaseQuotaLowSpace (firing) on default: policy nights-only -> etcd-nospace-recovery (mode auto)",
		"incident on default: etcd-nospace-recovery for 3 alert(s)",
		"the run waits: outside the maintenance windows: waiting for the next, at 2026-11-23T21:00:00Z",
		"2. snapshot    read-only",
		"3. compact     destructive",
		"^ waits for 1 approval(s) from users alice (risk destructive is at least high)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("simulate output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "^ waits") != 1 {
		t.Errorf("one approval covers the run; output gates more than one step:\n%s", out)
	}
}
