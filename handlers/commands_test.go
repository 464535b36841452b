package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
	"github.com/remediator/remediator/queue"
)

// workspace says who is a full member of the workspace, as Slack's users.info would.
type workspace map[string]remediator.ChatMember

func (w workspace) Member(_ context.Context, id string) (remediator.ChatMember, error) {
	if m, ok := w[id]; ok {
		return m, nil
	}
	return remediator.ChatMember{ID: id, External: true}, nil
}

// explainer records the alerts /remediator simulate asks about.
type explainer struct{ got []remediator.Alert }

func (e *explainer) Explain(a remediator.Alert) (string, error) {
	e.got = append(e.got, a)
	return "Policy etcd-nospace would open an incident on " + a.Cluster, nil
}

// commandForm is a slash command as Slack posts it over HTTP.
func commandForm(t *testing.T, user, text string) []byte {
	t.Helper()
	var fields map[string]string
	if err := json.Unmarshal(slacktest.SlashCommand(user, "/remediator", text), &fields); err != nil {
		t.Fatal(err)
	}
	form := url.Values{}
	for k, v := range fields {
		form.Set(k, v)
	}
	return []byte(form.Encode())
}

// commandFixture is a fixture with an incident awaiting approval and one running, a guest and
// a full member of the workspace, and an operator known by their Slack ID.
func commandFixture(t *testing.T) (*fixture, *explainer, *remediator.Incident) {
	t.Helper()
	ex := &explainer{}
	f := newFixtureWith(t, "", func(c *Config) {
		c.ChatMembers = workspace{"U01ALICE": {ID: "U01ALICE"}, "U0GUEST": {ID: "U0GUEST", Guest: true}}
		c.People = map[string]string{"U03CAROL": "carol"}
		c.Explainer = ex
		c.BaseURL = "https://remediator.example"
	})
	now := time.Now()
	waiting := remediator.NewIncident("20261207-030000-aaaaaa", "prod", remediator.Decision{Policy: "etcd-nospace", Remediation: "etcd-nospace-recovery",
		Gates: remediator.Gates{Approval: &remediator.ApprovalRule{Users: []string{"U01ALICE"}, Required: 1, FromRisk: remediator.RiskHigh}}}, now)
	waiting.Steps = []remediator.Step{{Name: "preflight", Risk: remediator.RiskReadOnly, State: remediator.StepSucceeded},
		{Name: "compact", Risk: remediator.RiskHigh, State: remediator.StepPending}}
	waiting.Approval = &remediator.ApprovalRequest{Gate: "compact", Required: 1, RequestedAt: now, ExpiresAt: now.Add(time.Hour)}
	waiting.SetState(remediator.StateAwaitingApproval, "step compact is high risk", now)
	running := remediator.NewIncident("20261207-020000-bbbbbb", "staging", remediator.Decision{Policy: "etcd-fragmented", Remediation: "etcd-defrag-fragmented"}, now.Add(-time.Hour))
	running.SetState(remediator.StateRunning, "", now)
	for _, inc := range []*remediator.Incident{waiting, running} {
		if err := f.q.Incidents.Create(context.Background(), inc); err != nil {
			t.Fatal(err)
		}
		if _, err := f.q.Incidents.ClaimOpen(context.Background(), inc.Cluster, inc.Remediation, inc.ID); err != nil {
			t.Fatal(err)
		}
	}
	return f, ex, waiting
}

// command posts a signed /remediator and returns Slack's view of the answer: its status and
// the ephemeral text.
func (f *fixture) command(t *testing.T, user, text string) (int, string) {
	t.Helper()
	status, body := f.do(t, slacktest.Request(f.srv.URL+"/slack/commands", signingSecret, time.Now(), commandForm(t, user, text)))
	if status != http.StatusOK {
		return status, body
	}
	var msg struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if msg.ResponseType != "ephemeral" {
		t.Errorf("answer to %q is %q, want ephemeral: only who typed it sees it", text, msg.ResponseType)
	}
	return status, msg.Text
}

func TestSlashCommandVerbs(t *testing.T) {
	f, ex, waiting := commandFixture(t)

	for _, tc := range []struct {
		user, text string
		want       []string
	}{
		{"U01ALICE", "", []string{"`incidents`", "`show ID`", "`approve ID [comment]`", "`simulate ALERTNAME"}},
		{"U01ALICE", "help", []string{"`reject ID [reason]`"}},
		{"U01ALICE", "incidents", []string{"*2 open incident(s)*", "<https://remediator.example/api/v1/incidents/20261207-030000-aaaaaa/report?format=html|20261207-030000-aaaaaa>",
			"`awaiting_approval` on *prod*", "`running` on *staging*"}},
		{"U03CAROL", "show " + waiting.ID, []string{"State `awaiting_approval`", "1. preflight `succeeded` (read-only risk)", "2. compact `pending` (high risk)",
			"Waits for approval before *compact*: 0 of 1 given", "from users U01ALICE", "`/remediator approve " + waiting.ID + "`"}},
		{"U01ALICE", "simulate etcdDatabaseQuotaLowSpace cluster=staging instance=10.0.0.1:2379", []string{"would open an incident on staging", "```"}},
	} {
		status, text := f.command(t, tc.user, tc.text)
		if status != http.StatusOK {
			t.Fatalf("/remediator %s: %d %s", tc.text, status, text)
		}
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("/remediator %s by %s lacks %q:\n%s", tc.text, tc.user, w, text)
			}
		}
	}
	if len(ex.got) != 1 || ex.got[0].Labels["instance"] != "10.0.0.1:2379" || ex.got[0].Name() != "etcdDatabaseQuotaLowSpace" || ex.got[0].Cluster != "staging" {
		t.Errorf("simulate asked about %+v", ex.got)
	}

	// approve is enqueued as a click is, with the comment, for the worker to judge.
	_, text := f.command(t, "U01ALICE", "approve "+waiting.ID+" disk is fine")
	if !strings.Contains(text, "Your approval of "+waiting.ID+" before *compact* is being recorded") {
		t.Errorf("approve answered %q", text)
	}
	a := f.answerQueued(t)
	if a.Incident != waiting.ID || a.By != "U01ALICE" || a.Via != remediator.ViaSlack || !a.Approve || a.Comment != "disk is fine" || a.Channel != slacktest.Channel {
		t.Errorf("answer enqueued: %+v", a)
	}
	if len(f.answers.got) != 0 {
		t.Errorf("the command answered in the request: %+v; it must go through the queue as a click does", f.answers.got)
	}
}

func TestSlashCommandRefusals(t *testing.T) {
	f, ex, waiting := commandFixture(t)
	before := f.pub.published.Load()
	for _, tc := range []struct {
		name, user, text string
		want             string
	}{
		{"unknown incident", "U01ALICE", "show 20261207-000000-ffffff", "no incident 20261207-000000-ffffff"},
		{"approve an unknown incident", "U01ALICE", "approve 20261207-000000-ffffff", "no incident 20261207-000000-ffffff"},
		{"approve one that waits for nothing", "U01ALICE", "approve 20261207-020000-bbbbbb", "is running, not awaiting approval"},
		{"a guest", "U0GUEST", "incidents", "not guests or users of other workspaces"},
		{"another workspace's user", "U0STRANGER", "show " + waiting.ID, "not guests or users of other workspaces"},
		{"a guest approving", "U0GUEST", "approve " + waiting.ID, "not guests"},
		{"an unknown verb", "U01ALICE", "restart etcd", `"restart" is not a command`},
		{"show without an ID", "U01ALICE", "show", "show takes one incident ID"},
		{"approve without an ID", "U01ALICE", "approve", "approve takes an incident ID"},
		{"a bad label", "U01ALICE", "simulate etcdNoLeader cluster", `"cluster" is not label=value`},
		{"an unknown cluster", "U01ALICE", "simulate etcdNoLeader cluster=qa", `unknown cluster "qa"`},
		{"no cluster of two", "U01ALICE", "simulate etcdNoLeader", "2 clusters are configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, text := f.command(t, tc.user, tc.text)
			if status != http.StatusOK || !strings.HasPrefix(text, ":no_entry:") || !strings.Contains(text, tc.want) {
				t.Errorf("/remediator %s by %s: %d %q, want a refusal saying %q", tc.text, tc.user, status, text, tc.want)
			}
		})
	}
	if n := f.pub.published.Load(); n != before {
		t.Errorf("%d messages enqueued by refused commands, want none", n-before)
	}
	if len(ex.got) != 0 {
		t.Errorf("refused simulations reached the explainer: %+v", ex.got)
	}
	inc, err := f.q.Incidents.Get(context.Background(), waiting.ID)
	if err != nil || inc.State != remediator.StateAwaitingApproval || len(inc.Approval.Approvals) != 0 {
		t.Errorf("the incident after refused commands: %+v, %v", inc, err)
	}
}

func TestSlashCommandsAreVerifiedAsClicksAre(t *testing.T) {
	f, _, waiting := commandFixture(t)
	body := commandForm(t, "U01ALICE", "approve "+waiting.ID)
	forged := slacktest.Request(f.srv.URL+"/slack/commands", "not-the-signing-secret", time.Now(), body)
	stale := slacktest.Request(f.srv.URL+"/slack/commands", signingSecret, time.Now().Add(-10*time.Minute), body)
	unsigned, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/slack/commands", strings.NewReader(string(body)))
	for name, r := range map[string]*http.Request{"forged": forged, "stale": stale, "unsigned": unsigned} {
		if status, text := f.do(t, r); status != http.StatusUnauthorized {
			t.Errorf("a %s command: %d %s, want 401", name, status, text)
		}
	}
	// The same signed command twice is a replay.
	signed := func() *http.Request {
		return slacktest.Request(f.srv.URL+"/slack/commands", signingSecret, time.Unix(time.Now().Unix(), 0), body)
	}
	if status, text := f.do(t, signed()); status != http.StatusOK {
		t.Fatalf("a signed command: %d %s", status, text)
	}
	if status, text := f.do(t, signed()); status != http.StatusConflict || !strings.Contains(text, "replay") {
		t.Errorf("the same command again: %d %s, want 409 replay", status, text)
	}
	if n := f.pub.published.Load(); n != 1 {
		t.Errorf("%d answers enqueued, want the signed one only", n)
	}
	// Without a signing secret (Socket Mode only), the HTTP door is not there at all.
	closed := newFixtureWith(t, "", func(c *Config) { c.SlackSigningSecret = "" })
	if status, _ := closed.do(t, slacktest.Request(closed.srv.URL+"/slack/commands", "", time.Now(), body)); status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
		t.Errorf("/slack/commands without a signing secret: %d, want no such route", status)
	}
}

func TestAppHomeOpenedOverHTTPAsksForTheHome(t *testing.T) {
	f := newFixtureWith(t, "", func(c *Config) {
		c.NotifySubject = queue.SubjectNotify
		c.ChatMembers = workspace{"U01ALICE": {ID: "U01ALICE"}, "U0GUEST": {ID: "U0GUEST", Guest: true}}
	})
	// A guest's Home is not drawn: it would show what /remediator refuses them.
	if status, text := f.do(t, slacktest.Request(f.srv.URL+"/slack/events", signingSecret, time.Now(), slacktest.AppHomeOpened("U0GUEST"))); status != http.StatusOK {
		t.Fatalf("app_home_opened by a guest: %d %s", status, text)
	}
	if n := f.pub.published.Load(); n != 0 {
		t.Errorf("%d messages enqueued for a guest's Home, want none", n)
	}
	body := slacktest.AppHomeOpened("U01ALICE")
	if status, text := f.do(t, slacktest.Request(f.srv.URL+"/slack/events", signingSecret, time.Now(), body)); status != http.StatusOK {
		t.Fatalf("app_home_opened: %d %s", status, text)
	}
	if n := f.pub.published.Load(); n != 1 {
		t.Errorf("%d messages enqueued, want the App Home request", n)
	}
	challenge := []byte(`{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	status, text := f.do(t, slacktest.Request(f.srv.URL+"/slack/events", signingSecret, time.Now(), challenge))
	if status != http.StatusOK || !strings.Contains(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P") {
		t.Errorf("url_verification: %d %s", status, text)
	}
	if status, _ := f.do(t, slacktest.Request(f.srv.URL+"/slack/events", "forged", time.Now(), body)); status != http.StatusUnauthorized {
		t.Errorf("a forged event: %d, want 401", status)
	}
}
