package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/slacktest"
)

const (
	botToken      = "xoxb-remediator-test"
	signingSecret = "e2e-signing-secret"
)

// withSlack points the configuration at a local Slack and a policy that gates the
// remediation with the given approval block.
func withSlack(t *testing.T, cfg *config.Config, slack *slacktest.Server, mode, approval string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg.Slack = config.Slack{BotTokenFile: write("bot-token", botToken), SigningSecretFile: write("signing-secret", signingSecret),
		Channel: "#etcd-incidents", APIURL: slack.URL()}
	cfg.ExternalURL = "https://remediator.example"
	policies := filepath.Join(dir, "policies")
	if err := os.Mkdir(policies, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "nospace.yaml"), []byte(fmt.Sprintf(`policies:
  - name: nospace-with-approval
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-nospace-recovery
    mode: %s
    approval:
%s
`, mode, approval)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.PoliciesDir = policies
}

// click clicks a button of the incident's Slack message as a user, signed as Slack signs it.
func click(t *testing.T, addr, user, action, incident string) {
	t.Helper()
	body := slacktest.ButtonClick(user, strings.ToLower(user), action, incident)
	resp, err := http.DefaultClient.Do(slacktest.Request("http://"+addr+"/slack/interactions", signingSecret, time.Now(), body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("click by %s: %s", user, resp.Status)
	}
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNOSPACEWaitsForTwoApproversInSlackBeforeChangingEtcd(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	slack := slacktest.New(t, botToken)
	slack.SetGroup("S0ETCDSRE", "U02BOB")
	cfg := testConfig(t, etcd)
	withSlack(t, &cfg, slack, "auto", "      users: [U01ALICE]\n      groups: [S0ETCDSRE]\n      required: 2\n      timeout: 10m\n      from_risk: high")
	m := startService(t, cfg)

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	if inc.Approval.Gate != "compact" || step(t, inc, "preflight").State != remediator.StepSucceeded || step(t, inc, "snapshot").State != remediator.StepSucceeded {
		t.Fatalf("waiting before %q with steps %+v; want preflight and snapshot done, then a wait before compact", inc.Approval.Gate, inc.Steps)
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms while waiting: %q, want NOSPACE untouched", a)
	}
	for name, ts := range defragTimes(t, etcd) {
		if len(ts) > 0 {
			t.Errorf("member %s was defragmented before approval", name)
		}
	}
	waitFor(t, "the Slack message with its buttons", func() bool {
		shown := append(slack.Calls("chat.postMessage"), slack.Calls("chat.update")...)
		return len(shown) > 0 && strings.Contains(shown[len(shown)-1].Form.Get("blocks"), `"action_id":"approve"`)
	})

	click(t, m.Addr, "U01ALICE", "approve", inc.ID)
	click(t, m.Addr, "U01ALICE", "approve", inc.ID)   // the two-person rule wants someone else
	click(t, m.Addr, "U09MALLORY", "approve", inc.ID) // no approver
	waitFor(t, "two refusals told to their users", func() bool { return len(slack.Calls("chat.postEphemeral")) == 2 })
	// The answers are handled concurrently: match the refusals by user, not by order.
	told := map[string]string{}
	for _, e := range slack.Calls("chat.postEphemeral") {
		told[e.Form.Get("user")] = e.Form.Get("text")
	}
	if !strings.Contains(told["U01ALICE"], "approved already") || !strings.Contains(told["U09MALLORY"], "may not answer") {
		t.Errorf("ephemeral messages: %q", told)
	}
	if s := incidents(t, m.Addr)[0].State; s != remediator.StateAwaitingApproval {
		t.Fatalf("after one approver: %s, want still waiting", s)
	}

	click(t, m.Addr, "U02BOB", "approve", inc.ID) // a member of the approvers' group
	inc = waitIncident(t, m.Addr, 2*time.Minute, terminal)
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("after two approvals: %s (%s)", inc.State, inc.Reason)
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms after the remediation: %s", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
	assertDefraggedOnceLeaderLast(t, etcd, leaderOf(t, inc.Before))
	var by []string
	for _, a := range inc.Approval.Approvals {
		by = append(by, a.By+"/"+a.Via)
	}
	if strings.Join(by, ",") != "U01ALICE/slack,U02BOB/slack" {
		t.Errorf("approvals recorded: %v", by)
	}

	// Slack saw it all: the message updated as the steps ran, each step in the thread, and a
	// last version with the report link and no buttons.
	// The message is updated before its thread: wait for both.
	waitFor(t, "the last Slack update and the report in the thread", func() bool {
		u, posts := slack.Calls("chat.update"), slack.Calls("chat.postMessage")
		return len(u) > 0 && strings.Contains(u[len(u)-1].Form.Get("blocks"), "/report") &&
			strings.Contains(posts[len(posts)-1].Form.Get("text"), "Report:")
	})
	updates := slack.Calls("chat.update")
	if last := updates[len(updates)-1].Form.Get("blocks"); strings.Contains(last, `"action_id":"approve"`) || !strings.Contains(last, "https://remediator.example/api/v1/incidents/"+inc.ID+"/report") {
		t.Errorf("last message: %s", last)
	}
	var thread []string
	for _, p := range slack.Calls("chat.postMessage")[1:] {
		thread = append(thread, p.Form.Get("text"))
	}
	joined := strings.Join(thread, "\n")
	for _, want := range []string{"*preflight* succeeded", "*snapshot* succeeded", "waiting before compact", "(U01ALICE) via slack (1 of 2)",
		"refused", "(U02BOB) via slack (2 of 2)", "*compact* succeeded", "*defragment* succeeded", "*disarm* succeeded", "*verify* succeeded", "Report:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("thread lacks %q:\n%s", want, joined)
		}
	}
	if len(updates) < 6 {
		t.Errorf("%d chat.update calls, want the message updated as each step ran", len(updates))
	}
}

func TestAnExpiredApprovalLeavesEtcdUntouched(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	slack := slacktest.New(t, botToken)
	cfg := testConfig(t, etcd)
	withSlack(t, &cfg, slack, "approve", "      users: [U01ALICE]\n      timeout: 2s")
	m := startService(t, cfg)

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, terminal)
	if inc.State != remediator.StateRejected || !strings.HasPrefix(inc.Reason, "expired: no approval within 2s") {
		t.Fatalf("incident: %s (%s), want rejected as expired", inc.State, inc.Reason)
	}
	for _, s := range inc.Steps {
		if s.State != remediator.StepSkipped || s.Attempts != 0 {
			t.Errorf("step %s: %s after %d attempts, want never run", s.Name, s.State, s.Attempts)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "backups")); !os.IsNotExist(err) {
		t.Errorf("backups folder: %v, want none: nothing ran", err)
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms: %q, want NOSPACE untouched", a)
	}
	waitFor(t, "the expiry in the Slack thread", func() bool {
		for _, p := range slack.Calls("chat.postMessage") {
			if strings.Contains(p.Form.Get("text"), "expired: no approval within 2s") {
				return true
			}
		}
		return false
	})
}
