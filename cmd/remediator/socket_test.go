package main

import (
	"encoding/json"
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

const appToken = "xapp-1-A0REMEDIATOR-socket-test"

// withSocketMode is withSlack in Socket Mode only: an app-level token and no signing secret,
// so that Slack reaches remediator only through the socket remediator opens.
func withSocketMode(t *testing.T, cfg *config.Config, slack *slacktest.Server, approval string) {
	t.Helper()
	withSlack(t, cfg, slack, "auto", approval)
	slack.EnableSocket(appToken)
	path := filepath.Join(t.TempDir(), "app-token")
	if err := os.WriteFile(path, []byte(appToken), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Slack.SigningSecretFile, cfg.Slack.AppTokenFile = "", path
}

// waitEphemeral waits until Slack was asked to show user a message only they see, saying want.
func waitEphemeral(t *testing.T, slack *slacktest.Server, user, want string) {
	t.Helper()
	waitFor(t, "a message to "+user+" saying "+want, func() bool {
		for _, e := range slack.Calls("chat.postEphemeral") {
			if e.Form.Get("user") == user && strings.Contains(e.Form.Get("text"), want) {
				return true
			}
		}
		return false
	})
}

// ephemeralText returns what /remediator answered, from the socket's acknowledgement.
func ephemeralText(t *testing.T, ack json.RawMessage) string {
	t.Helper()
	var msg struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal(ack, &msg); err != nil || msg.ResponseType != "ephemeral" {
		t.Fatalf("acknowledgement %s: want an ephemeral answer (%v)", ack, err)
	}
	return msg.Text
}

func TestSocketModeApprovesNOSPACEWithoutAPublicURL(t *testing.T) {
	etcd, cl := nospaceCluster(t)
	slack := slacktest.New(t, botToken)
	cfg := testConfig(t, etcd)
	withSocketMode(t, &cfg, slack, "      users: [U01ALICE]\n      timeout: 10m\n      from_risk: high")
	m := startService(t, cfg)
	waitFor(t, "remediator to open its socket", func() bool { return slack.Connected() == 1 })

	// Slack has no way in: the HTTP endpoints are not served without a signing secret.
	click := slacktest.ButtonClick("U01ALICE", "alice", "approve", "any")
	resp, err := http.DefaultClient.Do(slacktest.Request("http://"+m.Addr+"/slack/interactions", signingSecret, time.Now(), click))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /slack/interactions in Socket Mode: %s, want no such route", resp.Status)
	}

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	waitFor(t, "the Slack message with its buttons", func() bool {
		shown := append(slack.Calls("chat.postMessage"), slack.Calls("chat.update")...)
		return len(shown) > 0 && strings.Contains(shown[len(shown)-1].Form.Get("blocks"), `"action_id":"approve"`)
	})

	// /remediator over the socket: the answer is the acknowledgement, within Slack's 3 s.
	ack, err := slack.Send(slacktest.SlashCommands, slacktest.SlashCommand("U01ALICE", "/remediator", "show "+inc.ID))
	if err != nil {
		t.Fatal(err)
	}
	if text := ephemeralText(t, ack); !strings.Contains(text, "Waits for approval before *compact*") {
		t.Errorf("/remediator show over the socket: %q", text)
	}

	// A click from someone the policy does not name is refused, and told so, only to them.
	if _, err := slack.Send(slacktest.Interactive, slacktest.BlockActions("U09MALLORY", "mallory", "approve", inc.ID)); err != nil {
		t.Fatal(err)
	}
	waitEphemeral(t, slack, "U09MALLORY", "may not answer")
	if got := incidents(t, m.Addr)[0]; got.State != remediator.StateAwaitingApproval || len(got.Approval.Approvals) != 0 {
		t.Fatalf("after a non-approver's click: %s with %d approvals, want still waiting with none", got.State, len(got.Approval.Approvals))
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms while waiting: %q, want NOSPACE untouched", a)
	}

	// The socket drops; remediator connects again, and the approver's click goes through.
	slack.DropSocket()
	waitFor(t, "remediator to connect again", func() bool { return slack.Connects() >= 2 && slack.Connected() == 1 })
	if _, err := slack.Send(slacktest.Interactive, slacktest.BlockActions("U01ALICE", "alice", "approve", inc.ID)); err != nil {
		t.Fatal(err)
	}
	// Slack goes away mid-run, Web API and socket both: the notifications wait in the queue.
	slack.Down(3)
	slack.DropSocket()
	inc = waitIncident(t, m.Addr, 2*time.Minute, terminal)
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("after the approval over the socket: %s (%s)", inc.State, inc.Reason)
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms after the remediation: %s", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
	if a := inc.Approval.Approvals; len(a) != 1 || a[0].By != "U01ALICE" || a[0].Via != remediator.ViaSlack {
		t.Errorf("approvals recorded: %+v", a)
	}
	// No notification was lost: the thread has every step, and the message its last state.
	waitFor(t, "the last Slack update and the report in the thread", func() bool {
		u, posts := slack.Calls("chat.update"), slack.Calls("chat.postMessage")
		return len(u) > 0 && strings.Contains(u[len(u)-1].Form.Get("blocks"), "/report") &&
			strings.Contains(posts[len(posts)-1].Form.Get("text"), "Report:")
	})
	var thread []string
	for _, p := range slack.Calls("chat.postMessage")[1:] {
		thread = append(thread, p.Form.Get("text"))
	}
	joined := strings.Join(thread, "\n")
	for _, want := range []string{"*preflight* succeeded", "*snapshot* succeeded", "waiting before compact", "refused",
		"(U01ALICE) via slack (1 of 1)", "*compact* succeeded", "*defragment* succeeded", "*disarm* succeeded", "*verify* succeeded", "Report:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("thread lacks %q:\n%s", want, joined)
		}
	}
	waitFor(t, "remediator back on its socket", func() bool { return slack.Connected() == 1 })

	// The App Home: alice opens it, and it is drawn with what is open (nothing by now).
	if _, err := slack.Send(slacktest.EventsAPI, slacktest.AppHomeOpened("U01ALICE")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the App Home drawn", func() bool {
		homes := slack.Calls("views.publish")
		return len(homes) > 0 && homes[len(homes)-1].Form.Get("user_id") == "U01ALICE" &&
			strings.Contains(homes[len(homes)-1].Form.Get("view"), "No open incidents")
	})
}

func TestSlashCommandsOverTheSocket(t *testing.T) {
	etcd, _ := nospaceCluster(t)
	slack := slacktest.New(t, botToken)
	cfg := testConfig(t, etcd)
	withSocketMode(t, &cfg, slack, "      users: [U01ALICE]\n      timeout: 10m\n      from_risk: high")
	m := startService(t, cfg)
	command := func(user, text string) string {
		t.Helper()
		ack, err := slack.Send(slacktest.SlashCommands, slacktest.SlashCommand(user, "/remediator", text))
		if err != nil {
			t.Fatalf("/remediator %s: %v", text, err)
		}
		return ephemeralText(t, ack)
	}
	if text := command("U01ALICE", "incidents"); !strings.Contains(text, "No open incidents") {
		t.Errorf("incidents before any: %q", text)
	}
	// simulate plans with the real policies and remediations, and touches nothing.
	text := command("U01ALICE", "simulate etcdDatabaseQuotaLowSpace")
	for _, want := range []string{"Policy nospace-with-approval would open an incident on " + cfg.Clusters[0].Name, "compact (destructive)", "waits for 1 approval(s) from users U01ALICE", "Nothing was touched"} {
		if !strings.Contains(text, want) {
			t.Errorf("simulate lacks %q:\n%s", want, text)
		}
	}
	if n := len(incidents(t, m.Addr)); n != 0 {
		t.Errorf("%d incidents after a simulation, want none", n)
	}

	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	if text := command("U01ALICE", "incidents"); !strings.Contains(text, inc.ID) || !strings.Contains(text, "awaiting_approval") {
		t.Errorf("incidents: %q", text)
	}
	// A non-approver's approve is refused by the worker, under the buttons' rules, and told.
	if text := command("U09MALLORY", "approve "+inc.ID); !strings.Contains(text, "being recorded") {
		t.Errorf("approve by mallory: %q", text)
	}
	waitEphemeral(t, slack, "U09MALLORY", "may not answer")
	if text := command("U01ALICE", "reject "+inc.ID+" not during the release"); !strings.Contains(text, "Your rejection of "+inc.ID) {
		t.Errorf("reject by alice: %q", text)
	}
	inc = waitIncident(t, m.Addr, time.Minute, terminal)
	if inc.State != remediator.StateRejected || !strings.Contains(inc.Reason, "not during the release") {
		t.Errorf("after alice's reject: %s (%s)", inc.State, inc.Reason)
	}
	if text := command("U01ALICE", "approve "+inc.ID); !strings.Contains(text, "is rejected, not awaiting approval") {
		t.Errorf("approve after the rejection: %q", text)
	}
}
