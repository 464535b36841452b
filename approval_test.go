package remediator

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Incident.Accept is the door answers go through: whatever it refuses changes nothing but the
// timeline, which says why.
func TestAccept(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	waiting := func(approvals ...Approval) *Incident {
		inc := &Incident{ID: "i1", State: StateAwaitingApproval,
			Steps:    []Step{{Name: "act", State: StepPending}},
			Approval: &ApprovalRequest{Gate: "act", Required: 2, Approvals: approvals}}
		return inc
	}
	alice := Answer{Incident: "i1", By: "alice", Person: "alice", Via: ViaAPI, Approve: true}
	for _, tc := range []struct {
		name      string
		inc       *Incident
		answer    Answer
		denied    error
		code      string // "" when accepted
		state     State
		approvals int
		granted   bool
	}{
		{name: "not awaiting approval", inc: func() *Incident { i := waiting(); i.State = StateRunning; return i }(), answer: alice,
			code: EREFUSED, state: StateRunning},
		{name: "denied answerer", inc: waiting(), answer: alice, denied: errors.New("alice may not answer"),
			code: EFORBIDDEN, state: StateAwaitingApproval},
		{name: "denied even as a rejection", inc: waiting(), answer: Answer{Incident: "i1", By: "mallory", Person: "mallory", Via: ViaAPI},
			denied: errors.New("mallory may not answer"), code: EFORBIDDEN, state: StateAwaitingApproval},
		{name: "the same person twice", inc: waiting(Approval{By: "alice", Via: ViaSlack}), answer: alice,
			code: EREFUSED, state: StateAwaitingApproval, approvals: 1},
		{name: "a second approval with the shared token", inc: waiting(Approval{By: "bob", Via: ViaSharedAPI}),
			answer: Answer{Incident: "i1", By: "carol", Person: "carol", Via: ViaSharedAPI, Approve: true},
			code:   EREFUSED, state: StateAwaitingApproval, approvals: 1},
		{name: "first of two", inc: waiting(), answer: alice, state: StateAwaitingApproval, approvals: 1},
		{name: "second of two grants", inc: waiting(Approval{By: "bob", Via: ViaAPI}), answer: alice,
			state: StateRunning, approvals: 2, granted: true},
		{name: "a rejection ends it", inc: waiting(), answer: Answer{Incident: "i1", By: "bob", Person: "bob", Via: ViaAPI, Comment: "not now"},
			state: StateRejected},
		// A click on the request before an earlier step, arriving once the next one opened,
		// counts for nothing: its clicker never saw what this step does.
		{name: "an answer to the request before another step", inc: waiting(),
			answer: Answer{Incident: "i1", By: "alice", Person: "alice", Via: ViaSlack, Approve: true, Gate: "stop", Attempt: 1},
			code:   EREFUSED, state: StateAwaitingApproval},
		{name: "a rejection of another step's request", inc: waiting(),
			answer: Answer{Incident: "i1", By: "alice", Person: "alice", Via: ViaSlack, Gate: "stop"},
			code:   EREFUSED, state: StateAwaitingApproval},
		{name: "an answer to an earlier attempt", inc: func() *Incident { i := waiting(); i.Attempt = 2; return i }(),
			answer: Answer{Incident: "i1", By: "alice", Person: "alice", Via: ViaSlack, Approve: true, Gate: "act", Attempt: 1},
			code:   EREFUSED, state: StateAwaitingApproval},
		{name: "an answer to this very request", inc: waiting(),
			answer: Answer{Incident: "i1", By: "alice", Person: "alice", Via: ViaSlack, Approve: true, Gate: "act", Attempt: 1},
			state:  StateAwaitingApproval, approvals: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			granted, refusal := tc.inc.Accept(tc.answer, tc.denied, t0)
			if ErrorCode(refusal) != tc.code && !(tc.code == "" && refusal == nil) {
				t.Fatalf("refusal %v (code %s), want code %q", refusal, ErrorCode(refusal), tc.code)
			}
			if tc.code != "" && !strings.Contains(tc.inc.Timeline[len(tc.inc.Timeline)-1].Message, "refused") {
				t.Errorf("the refusal is not in the timeline: %+v", tc.inc.Timeline)
			}
			if granted != tc.granted || tc.inc.Approval.Granted != tc.granted {
				t.Errorf("granted %v (request %v), want %v", granted, tc.inc.Approval.Granted, tc.granted)
			}
			if tc.inc.State != tc.state || len(tc.inc.Approval.Approvals) != tc.approvals {
				t.Errorf("state %s with %d approvals, want %s with %d", tc.inc.State, len(tc.inc.Approval.Approvals), tc.state, tc.approvals)
			}
			if tc.state == StateRejected && tc.inc.Steps[0].State != StepSkipped {
				t.Errorf("after a rejection the pending step is %s, want skipped", tc.inc.Steps[0].State)
			}
		})
	}
}

func TestAnswerValue(t *testing.T) {
	inc := &Incident{ID: "20261207-030000-aaaaaa", Attempt: 2, Approval: &ApprovalRequest{Gate: "force-new-cluster"}}
	id, gate, attempt := ParseAnswerValue(AnswerValue(inc))
	if id != inc.ID || gate != "force-new-cluster" || attempt != 2 {
		t.Errorf("round trip: %q %q %d", id, gate, attempt)
	}
	if id, gate, attempt := ParseAnswerValue(inc.ID); id != inc.ID || gate != "" || attempt != 0 {
		t.Errorf("a value of before: %q %q %d, want the incident alone", id, gate, attempt)
	}
}

// A new request keeps the one granted before it on record, and only as many as there are
// steps: each gate asks once per attempt.
func TestAskApprovalKeepsWhatWasGranted(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	inc := &Incident{ID: "i1", State: StateRunning, Gates: Gates{Approval: &ApprovalRule{Users: []string{"alice"}, Required: 1}},
		Steps: []Step{{Name: "stop"}, {Name: "wipe"}}}
	inc.AskApproval("stop", "stop is high risk", t0, t0.Add(time.Hour))
	if inc.State != StateAwaitingApproval || inc.Approval.Gate != "stop" || len(inc.PastApprovals) != 0 {
		t.Fatalf("first request: %s before %q, %d past", inc.State, inc.Approval.Gate, len(inc.PastApprovals))
	}
	alice := Answer{Incident: "i1", By: "alice", Person: "alice", Via: ViaAPI, Approve: true}
	if granted, err := inc.Accept(alice, nil, t0.Add(time.Minute)); !granted || err != nil {
		t.Fatalf("alice at stop: granted %v, %v", granted, err)
	}
	inc.AskApproval("wipe", "wipe asks again", t0.Add(2*time.Minute), t0.Add(time.Hour))
	if len(inc.PastApprovals) != 1 || inc.PastApprovals[0].Gate != "stop" || inc.PastApprovals[0].Approvals[0].By != "alice" || inc.Approval.Gate != "wipe" || len(inc.Approval.Approvals) != 0 {
		t.Fatalf("second request %+v, past %+v; want wipe's empty, stop's kept", inc.Approval, inc.PastApprovals)
	}
	if granted, err := inc.Accept(alice, nil, t0.Add(3*time.Minute)); !granted || err != nil {
		t.Fatalf("alice at wipe, having approved stop: granted %v, %v", granted, err)
	}
	// An unanswered request is replaced, not kept; the record holds no more than the steps.
	for _, gate := range []string{"a", "b", "c"} {
		inc.AskApproval(gate, "", t0.Add(4*time.Minute), t0.Add(time.Hour))
		if gate == "a" {
			inc.Approval.Granted = true
		}
	}
	var gates []string
	for _, r := range inc.Requests() {
		gates = append(gates, r.Gate)
	}
	if strings.Join(gates, ",") != "wipe,a,c" {
		t.Errorf("requests %v, want the last two granted (the steps bound them) and the open one", gates)
	}
}
