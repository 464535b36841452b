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
