package remediator

import (
	"slices"
	"strings"
	"time"
)

// Approvers says who may approve under the rule, for people: "any operator", or "users a, b or
// members of G".
func (r *ApprovalRule) Approvers() string {
	if slices.Contains(r.Users, AnyApprover) {
		return "any operator"
	}
	var parts []string
	if len(r.Users) > 0 {
		parts = append(parts, "users "+strings.Join(r.Users, ", "))
	}
	if len(r.Groups) > 0 {
		parts = append(parts, "members of "+strings.Join(r.Groups, ", "))
	}
	return strings.Join(parts, " or ")
}

// AskApproval opens the incident's request for approval before step gate, under the policy's
// rule, and the incident waits for it. A request granted earlier in the run is kept in
// PastApprovals, so that who approved what stays on record; the steps bound how many there
// are, as each gate asks once per attempt.
func (inc *Incident) AskApproval(gate, reason string, now, expires time.Time) {
	if prev := inc.Approval; prev != nil && prev.Granted {
		inc.PastApprovals = append(inc.PastApprovals, *prev)
		if n := len(inc.PastApprovals) - max(len(inc.Steps), 1); n > 0 {
			inc.PastApprovals = slices.Delete(inc.PastApprovals, 0, n)
		}
	}
	rule := inc.Gates.Approval
	inc.Approval = &ApprovalRequest{Gate: gate, Reason: reason, Required: rule.Required, RequestedAt: now, ExpiresAt: expires}
	inc.SetState(StateAwaitingApproval, reason, now)
	inc.Record(now, EventApprovalRequested, gate, "waiting before %s for %d approval(s) from %s, until %s: %s",
		gate, rule.Required, rule.Approvers(), expires.UTC().Format(time.RFC3339), reason)
}

// Requests returns the incident's approval requests of this attempt, oldest first: those
// granted before, then the current one.
func (inc *Incident) Requests() []*ApprovalRequest {
	var out []*ApprovalRequest
	for i := range inc.PastApprovals {
		out = append(out, &inc.PastApprovals[i])
	}
	if inc.Approval != nil {
		out = append(out, inc.Approval)
	}
	return out
}

// Accept records a human's answer to the incident's open approval request. denied is why the
// answerer may not answer (nil if they may), as the caller found from the rule and from chat.
// It refuses, recording the refusal in the timeline, an answer to an incident that is not
// waiting (EREFUSED), one from someone denied (EFORBIDDEN), a second approval by the same
// person, and a second approval given with the shared operator token (EREFUSED), which cannot
// tell one person from another. Each request counts its own approvers: who approved an
// earlier gate may approve this one too. A rejection ends the incident rejected; the approval
// that makes enough distinct approvers grants the request, and the run goes on.
func (inc *Incident) Accept(a Answer, denied error, now time.Time) (granted bool, refusal error) {
	verb := map[bool]string{true: "approval", false: "rejection"}[a.Approve]
	refuse := func(code, format string, args ...any) (bool, error) {
		refusal := Errorf(code, format, args...)
		inc.Record(now, EventRefused, "", "%s by %s via %s refused: %v", verb, a.Who(), a.Via, refusal)
		return false, refusal
	}
	req := inc.Approval
	switch {
	case inc.State != StateAwaitingApproval || req == nil:
		return refuse(EREFUSED, "incident %s is %s, not awaiting approval", inc.ID, inc.State)
	case inc.Cancel != nil:
		return refuse(EREFUSED, "incident %s is being cancelled (%s): its clean-up runs, and it takes no answer", inc.ID, inc.Cancel.Why())
	case a.Attempt != 0 && a.Attempt != max(inc.Attempt, 1):
		return refuse(EREFUSED, "that answer was to attempt %d of incident %s, which is at attempt %d now: answer its current request", a.Attempt, inc.ID, max(inc.Attempt, 1))
	case a.Gate != "" && a.Gate != req.Gate:
		return refuse(EREFUSED, "that answer was to the request before step %s; incident %s now waits before step %s, which asks anew: read what it will do, then answer", a.Gate, inc.ID, req.Gate)
	case denied != nil:
		return refuse(EFORBIDDEN, "%v", denied)
	case a.Approve && req.ApprovedBy(a.Person):
		return refuse(EREFUSED, "%s approved already; %d of %d distinct approvers so far", a.Who(), len(req.Approvals), req.Required)
	case a.Approve && a.Via == ViaSharedAPI && slices.ContainsFunc(req.Approvals, func(x Approval) bool { return x.Via == ViaSharedAPI }):
		return refuse(EREFUSED, "an approval was given with the shared operator token already, and that token cannot tell one person from another: the next approver must use Slack or an operator token of their own")
	}
	if !a.Approve {
		reason := "rejected by " + a.Who()
		if a.Comment != "" {
			reason += ": " + a.Comment
		}
		inc.Record(now, EventRejected, req.Gate, "%s via %s", reason, a.Via)
		inc.Stop(a.Who(), reason, StateRejected, now)
		return false, nil
	}
	approval := Approval{By: a.Person, Via: a.Via, At: now, Comment: a.Comment}
	if a.Via == ViaSlack {
		approval.ChatID = a.By
	}
	req.Approvals = append(req.Approvals, approval)
	suffix := ""
	if c := strings.TrimSpace(a.Comment); c != "" {
		suffix = ": " + c
	}
	inc.Record(now, EventApproved, req.Gate, "approved by %s via %s (%d of %d)%s", a.Who(), a.Via, len(req.Approvals), req.Required, suffix)
	if len(req.Approvals) < req.Required {
		return false, nil
	}
	req.Granted = true
	inc.SetState(StateRunning, "", now)
	return true, nil
}
