package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
	"github.com/remediator/remediator/queue"
)

const token = "xoxb-test-token"

type fixture struct {
	slack *slacktest.Server
	store *queue.Store
	n     *Notifier
	id    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	f := &fixture{slack: slacktest.New(t, token), store: q.Incidents}
	f.n = New(Config{Token: token, Channel: "#etcd", APIURL: f.slack.URL(), BaseURL: "https://remediator.example", Incidents: q.Incidents})

	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	inc := remediator.NewIncident("20261121-100000-abcdef", "prod", remediator.Decision{
		Policy: "nospace-approve", Remediation: "etcd-nospace-recovery", Mode: remediator.ModeAuto,
		Gates: remediator.Gates{Approval: &remediator.ApprovalRule{Users: []string{"U01ALICE"}, Groups: []string{"S0SRE"}, Required: 2,
			Timeout: remediator.Duration(time.Hour), FromRisk: remediator.RiskHigh}},
	}, now)
	inc.AddEvidence([]remediator.Alert{{Source: "alertmanager", Fingerprint: "fp1", Status: remediator.AlertFiring,
		Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace"}, ReceivedAt: now}})
	inc.Steps = []remediator.Step{
		{Name: "preflight", Risk: remediator.RiskReadOnly, State: remediator.StepSucceeded, Attempts: 1, StartedAt: now, FinishedAt: now.Add(time.Second), Output: "m1 (8e) leader: db 9.5 MiB"},
		{Name: "compact", Risk: remediator.RiskDestructive, State: remediator.StepPending},
	}
	inc.Before = []remediator.MemberStatus{{ID: "8e", Name: "m1", Leader: true, DBSize: 9 << 20, Quota: 8 << 20, Alarms: []string{"NOSPACE"}}}
	inc.Record(now, remediator.EventStepSucceeded, "preflight", "succeeded in 1s")
	inc.Approval = &remediator.ApprovalRequest{Gate: "compact", Reason: "step compact is destructive risk", Required: 2, RequestedAt: now, ExpiresAt: now.Add(time.Hour)}
	inc.SetState(remediator.StateAwaitingApproval, "step compact is destructive risk", now)
	inc.Record(now, remediator.EventApprovalRequested, "compact", "waiting before compact for 2 approval(s)")
	if err := q.Incidents.Create(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	f.id = inc.ID
	return f
}

func (f *fixture) handle(t *testing.T, notice remediator.Notice) error {
	t.Helper()
	notice.Incident = f.id
	data, _ := json.Marshal(notice)
	return f.n.Handle(context.Background(), data)
}

func (f *fixture) update(t *testing.T, fn func(*remediator.Incident)) {
	t.Helper()
	if _, err := f.store.Update(context.Background(), f.id, func(inc *remediator.Incident) error { fn(inc); return nil }); err != nil {
		t.Fatal(err)
	}
}

// buttons returns the action IDs and values of the buttons in blocks.
func buttons(blocks []map[string]any) []string {
	var out []string
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		for _, e := range b["elements"].([]any) {
			el := e.(map[string]any)
			out = append(out, el["action_id"].(string)+"="+el["value"].(string)+"/"+el["style"].(string))
		}
	}
	return out
}

func blockText(blocks []map[string]any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(blocks)
	return b.String()
}

func TestTheMessageFollowsTheIncident(t *testing.T) {
	f := newFixture(t)
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}
	posts := f.slack.Calls("chat.postMessage")
	if len(posts) != 3 || posts[0].Form.Get("channel") != "#etcd" {
		t.Fatalf("%d chat.postMessage calls, want the message and 2 thread replies: %+v", len(posts), posts)
	}
	first := posts[0].Blocks()
	if got := buttons(first); strings.Join(got, " ") != "approve="+f.id+":compact:1/primary reject="+f.id+":compact:1/danger" {
		t.Errorf("buttons %v, want Approve and Reject for the incident", got)
	}
	for _, want := range []string{"etcd-nospace-recovery on prod: awaiting approval", "etcdDatabaseQuotaLowSpace (firing) ×1",
		"compact — destructive risk — :raised_hand: waits for approval", "0 of 2 given", "<@U01ALICE>", "<!subteam^S0SRE>", "9.0 MiB, 8.0 MiB quota (112% full), NOSPACE"} {
		if !strings.Contains(blockText(first), want) {
			t.Errorf("message lacks %q: %s", want, blockText(first))
		}
	}
	for i, want := range []string{"*preflight* succeeded in 1s\n```m1 (8e) leader", "waiting before compact"} {
		reply := posts[i+1]
		if reply.Form.Get("thread_ts") != "1763700000.000001" || !strings.Contains(reply.Form.Get("text"), want) {
			t.Errorf("thread reply %d: %q in thread %q, want %q", i, reply.Form.Get("text"), reply.Form.Get("thread_ts"), want)
		}
	}

	// The next step runs: the message is updated in place, and only the new event is threaded.
	f.update(t, func(inc *remediator.Incident) {
		now := inc.UpdatedAt.Add(time.Minute)
		inc.Approval.Granted = true
		inc.Steps[1].State, inc.Steps[1].Attempts, inc.Steps[1].StartedAt, inc.Steps[1].FinishedAt = remediator.StepSucceeded, 1, now, now.Add(20*time.Millisecond)
		inc.Steps[1].Output = "compacted to revision 43"
		inc.Record(now, remediator.EventStepSucceeded, "compact", "succeeded in 20ms")
		inc.SetState(remediator.StateSucceeded, "", now)
	})
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}
	updates := f.slack.Calls("chat.update")
	if len(updates) != 1 || updates[0].Form.Get("ts") != "1763700000.000001" {
		t.Fatalf("chat.update calls %+v, want one on the first message", updates)
	}
	last := updates[0].Blocks()
	if len(buttons(last)) != 0 || !strings.Contains(blockText(last), "https://remediator.example/api/v1/incidents/"+f.id+"/report") {
		t.Errorf("finished message: buttons %v, want none, and a report link: %s", buttons(last), blockText(last))
	}
	posts = f.slack.Calls("chat.postMessage")
	if len(posts) != 5 || !strings.Contains(posts[3].Form.Get("text"), "*compact* succeeded") || !strings.Contains(posts[4].Form.Get("text"), "Report: https://remediator.example") {
		t.Errorf("thread after the run: %d posts, last ones %q and %q", len(posts), posts[len(posts)-2].Form.Get("text"), posts[len(posts)-1].Form.Get("text"))
	}

	// The same notice again posts nothing new.
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.slack.Calls("chat.postMessage")); n != 5 {
		t.Errorf("%d posts after a repeated notice, want still 5", n)
	}

	// The alert resolves: the incident closes, and its thread links the report.
	f.update(t, func(inc *remediator.Incident) {
		a := inc.Evidence[0]
		a.Status, a.ReceivedAt = remediator.AlertResolved, inc.UpdatedAt.Add(time.Minute)
		inc.AddEvidence([]remediator.Alert{a})
	})
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}
	posts = f.slack.Calls("chat.postMessage")
	if len(posts) != 6 || !strings.Contains(posts[5].Form.Get("text"), "closed: every alert of the incident resolved. Post-incident report: https://remediator.example/api/v1/incidents/"+f.id+"/report?format=html") {
		t.Errorf("thread after the close: %d posts, the last %q; want the report linked", len(posts), posts[len(posts)-1].Form.Get("text"))
	}
}

func TestARefusalIsShownToTheUserOnly(t *testing.T) {
	f := newFixture(t)
	err := f.handle(t, remediator.Notice{Ephemeral: &remediator.Ephemeral{User: "U09MALLORY", Channel: slacktest.Channel, Text: "Not accepted: you are no approver."}})
	if err != nil {
		t.Fatal(err)
	}
	eph := f.slack.Calls("chat.postEphemeral")
	if len(eph) != 1 || eph[0].Form.Get("user") != "U09MALLORY" || eph[0].Form.Get("channel") != slacktest.Channel || !strings.Contains(eph[0].Form.Get("text"), "no approver") {
		t.Errorf("ephemeral calls %+v", eph)
	}
}

func TestSlackDownIsRetriedNotLost(t *testing.T) {
	f := newFixture(t)
	f.slack.Down(1)
	err := f.handle(t, remediator.Notice{})
	if !remediator.Retriable(err) {
		t.Fatalf("with Slack down: %v, want a retriable error", err)
	}
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatalf("once Slack is back: %v", err)
	}
	if n := len(f.slack.Calls("chat.postMessage")); n != 3 {
		t.Errorf("%d posts once Slack is back, want the message and its 2 replies", n)
	}
	inc, _ := f.store.Get(context.Background(), f.id)
	if inc.Chat == nil || len(inc.Chat.Posted) != 2 {
		t.Errorf("chat record %+v, want the message and 2 posted replies", inc.Chat)
	}
}

func TestABadTokenIsNotRetried(t *testing.T) {
	f := newFixture(t)
	f.n = New(Config{Token: "xoxb-wrong", Channel: "#etcd", APIURL: f.slack.URL(), Incidents: f.store})
	if err := f.handle(t, remediator.Notice{}); err == nil || remediator.Retriable(err) || !strings.Contains(err.Error(), "invalid_auth") {
		t.Errorf("with a bad token: %v, want a permanent invalid_auth error", err)
	}
}

func TestGroupMembers(t *testing.T) {
	f := newFixture(t)
	f.slack.SetGroup("S0SRE", "U02BOB", "U03CAROL")
	got, err := f.n.Members(context.Background(), "S0SRE")
	if err != nil || strings.Join(got, ",") != "U02BOB,U03CAROL" {
		t.Errorf("members %v (%v)", got, err)
	}
	if _, err := f.n.Members(context.Background(), "S0NONE"); err == nil {
		t.Error("members of an unknown group: no error")
	}
}

func TestADeletedMessageIsPostedAgain(t *testing.T) {
	f := newFixture(t)
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}
	f.slack.DeleteMessages()
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatalf("with the message deleted: %v", err)
	}
	var mains []string
	for _, p := range f.slack.Calls("chat.postMessage") {
		if p.Form.Get("thread_ts") == "" {
			mains = append(mains, p.Form.Get("text"))
		}
	}
	inc, _ := f.store.Get(context.Background(), f.id)
	if len(mains) != 2 || inc.Chat == nil || inc.Chat.ID == "1763700000.000001" || len(inc.Chat.Posted) != 2 {
		t.Errorf("messages posted %v, chat record %+v; want a second message, with its thread replies posted again", mains, inc.Chat)
	}
}

func TestLongEvidenceStaysWithinSlacksLimits(t *testing.T) {
	f := newFixture(t)
	f.update(t, func(inc *remediator.Incident) {
		for i := range 400 {
			inc.Evidence = append(inc.Evidence, remediator.Alert{Fingerprint: fmt.Sprint(i), Status: remediator.AlertFiring,
				Labels: map[string]string{"alertname": fmt.Sprintf("SomeVeryLongAlertNameNumber%03d", i)}})
		}
	})
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}
	for _, b := range f.slack.Calls("chat.postMessage")[0].Blocks() {
		if txt, ok := b["text"].(map[string]any); ok && len([]rune(txt["text"].(string))) > 3000 {
			t.Errorf("a %s block of %d characters, over Slack's 3000", b["type"], len([]rune(txt["text"].(string))))
		}
	}
}
