package slack

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
)

// TestTheHomeTabShowsWhatWaitsForTheViewer: the incidents waiting for the viewer's approval,
// under the rules a click of theirs would meet, then every open incident; one they approved
// already does not wait for them.
func TestTheHomeTabShowsWhatWaitsForTheViewer(t *testing.T) {
	s := slacktest.New(t, token)
	now := time.Now()
	waiting := func(id string, approvedBy ...string) *remediator.Incident {
		inc := remediator.NewIncident(id, "prod", remediator.Decision{Policy: "p", Remediation: "etcd-quorum-restore",
			Gates: remediator.Gates{Approval: &remediator.ApprovalRule{Users: []string{"U01ALICE"}, Required: 2}}}, now)
		inc.Approval = &remediator.ApprovalRequest{Gate: "force-new-cluster", Required: 2, ExpiresAt: now.Add(time.Hour)}
		for _, by := range approvedBy {
			inc.Approval.Approvals = append(inc.Approval.Approvals, remediator.Approval{By: by})
		}
		inc.SetState(remediator.StateAwaitingApproval, "step force-new-cluster is destructive risk", now)
		return inc
	}
	running := remediator.NewIncident("20261207-010000-cccccc", "staging", remediator.Decision{Remediation: "etcd-defrag-fragmented"}, now.Add(-time.Hour))
	running.SetState(remediator.StateRunning, "", now)
	// carol, an operator with a Slack ID, approved cccccc: the approval carries her name, and
	// her Slack ID as ChatID.
	byCarol := waiting("20261207-015000-dddddd")
	byCarol.Approval.Approvals = []remediator.Approval{{By: "carol", ChatID: "U03CAROL", Via: remediator.ViaSlack}}
	open := []*remediator.Incident{waiting("20261207-030000-aaaaaa"), waiting("20261207-020000-bbbbbb", "U01ALICE"), running, byCarol}
	n := New(Config{Token: token, Channel: "#etcd", APIURL: s.URL(), BaseURL: "https://remediator.example",
		Open: func(context.Context) ([]*remediator.Incident, error) { return open, nil },
		MayAnswer: func(_ context.Context, inc *remediator.Incident, user string) bool {
			return user == "U01ALICE" || user == "U03CAROL" // as the policy says
		}})
	home := func(user string) (yours, all string) {
		t.Helper()
		data, _ := json.Marshal(remediator.Notice{Home: user})
		if err := n.Handle(context.Background(), data); err != nil {
			t.Fatal(err)
		}
		calls := s.Calls("views.publish")
		last := calls[len(calls)-1]
		if last.Form.Get("user_id") != user {
			t.Fatalf("views.publish for %q, want %s", last.Form.Get("user_id"), user)
		}
		view := last.Form.Get("view")
		mine, rest, ok := strings.Cut(view, "Open incidents")
		if !ok || !strings.Contains(view, `"type":"home"`) {
			t.Fatalf("view: %s", view)
		}
		return mine, rest
	}

	yours, all := home("U01ALICE")
	if !strings.Contains(yours, "20261207-030000-aaaaaa") || strings.Contains(yours, "20261207-020000-bbbbbb") || strings.Contains(yours, "20261207-010000-cccccc") {
		t.Errorf("alice's waiting list: %s\nwant aaaaaa only: she approved bbbbbb, and cccccc waits for nobody", yours)
	}
	if !strings.Contains(yours, "Waits before *force-new-cluster* for 0 of 2 approval(s)") {
		t.Errorf("alice's waiting list does not say what it waits for: %s", yours)
	}
	for _, id := range []string{"20261207-030000-aaaaaa", "20261207-020000-bbbbbb", "20261207-010000-cccccc"} {
		if !strings.Contains(all, "https://remediator.example/api/v1/incidents/"+id+"/report?format=html|"+id) {
			t.Errorf("open incidents lack a link to %s: %s", id, all)
		}
	}
	if i, j := strings.Index(all, "aaaaaa"), strings.Index(all, "cccccc"); i < 0 || j < i {
		t.Errorf("open incidents not newest first: %s", all)
	}
	if yours, _ := home("U03CAROL"); strings.Contains(yours, "dddddd") || !strings.Contains(yours, "aaaaaa") {
		t.Errorf("carol's waiting list: %s\nwant aaaaaa, and not dddddd, which she approved as the operator she is", yours)
	}
	if yours, _ := home("U09MALLORY"); !strings.Contains(yours, "Nothing waits for you.") || strings.Contains(yours, "aaaaaa") {
		t.Errorf("mallory's waiting list: %s, want nothing: the policy does not name her", yours)
	}
}
