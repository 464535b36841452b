package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// expireRequest is the body of an approval deadline message.
type expireRequest struct {
	Incident string `json:"incident"`
	Gate     string `json:"gate"`
}

// requestApproval stops the run before gate until enough approvers answer, and schedules the
// request's expiry.
func (w *Worker) requestApproval(ctx context.Context, log *slog.Logger, id, gate, reason string) (*remediator.Incident, error) {
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		rule, now := inc.Gates.Approval, w.Now()
		inc.Approval = &remediator.ApprovalRequest{Gate: gate, Reason: reason, Required: rule.Required,
			RequestedAt: now, ExpiresAt: now.Add(time.Duration(rule.Timeout))}
		inc.SetState(remediator.StateAwaitingApproval, reason, now)
		inc.Record(now, remediator.EventApprovalRequested, gate, "waiting before %s for %d approval(s) from %s, until %s: %s",
			gate, rule.Required, approvers(rule), inc.Approval.ExpiresAt.UTC().Format(time.RFC3339), reason)
		return nil
	})
	if err != nil {
		return nil, err
	}
	data, _ := json.Marshal(expireRequest{Incident: id, Gate: gate})
	if _, err := w.Publisher.Publish(ctx, w.ExpireSubject, data, "expire-"+id+"-"+gate); err != nil {
		return nil, err
	}
	log.Info("waiting for approval", "gate", gate, "expires_at", inc.Approval.ExpiresAt, "reason", reason)
	w.notify(ctx, inc, nil)
	return inc, nil
}

// Expire rejects an incident whose approval request is still open at its deadline; before
// the deadline it asks the queue to come back then.
func (w *Worker) Expire(ctx context.Context, data []byte) error {
	var req expireRequest
	if err := json.Unmarshal(data, &req); err != nil || req.Incident == "" {
		return remediator.Errorf(remediator.EINVALID, "expiry %q: not an incident reference", data)
	}
	open := func(inc *remediator.Incident) bool {
		return inc.State == remediator.StateAwaitingApproval && inc.Approval != nil && inc.Approval.Gate == req.Gate
	}
	inc, err := w.Store.Get(ctx, req.Incident)
	if err != nil || !open(inc) {
		return err
	}
	if wait := inc.Approval.ExpiresAt.Sub(w.Now()); wait > 0 {
		return remediator.RetryLater(wait, "approval of incident %s open until %s", inc.ID, inc.Approval.ExpiresAt)
	}
	expired := false
	inc, err = w.Store.Update(ctx, req.Incident, func(inc *remediator.Incident) error {
		if expired = open(inc); !expired {
			return nil
		}
		now := w.Now()
		reason := fmt.Sprintf("expired: no approval within %s (%d of %d given)",
			time.Duration(inc.Gates.Approval.Timeout), len(inc.Approval.Approvals), inc.Approval.Required)
		inc.Record(now, remediator.EventExpired, inc.Approval.Gate, "%s", reason)
		skipPending(inc, reason)
		inc.SetState(remediator.StateRejected, reason, now)
		return nil
	})
	if err != nil || !expired {
		return err
	}
	w.Log.Info("approval expired", "incident", inc.ID, "reason", inc.Reason)
	w.notify(ctx, inc, nil)
	return nil
}

// Answer records a human's approval or rejection. It refuses, and records the refusal, an
// answer from someone who is no approver (EFORBIDDEN), a second approval by the same person
// or an answer to an incident that is not waiting (ECONFLICT). Once enough distinct approvers
// approved, the run goes on.
func (w *Worker) Answer(ctx context.Context, a remediator.Answer) (*remediator.Incident, error) {
	inc, err := w.Store.Get(ctx, a.Incident)
	if err != nil {
		return nil, err
	}
	allowed := false
	if rule := inc.Gates.Approval; rule != nil {
		if allowed, err = w.mayApprove(ctx, rule, a); err != nil {
			return nil, err
		}
	}
	var refusal error
	granted := false
	inc, err = w.Store.Update(ctx, a.Incident, func(inc *remediator.Incident) error {
		refusal, granted = nil, false
		now := w.Now()
		verb := map[bool]string{true: "approval", false: "rejection"}[a.Approve]
		refuse := func(code, format string, args ...any) error {
			refusal = remediator.Errorf(code, format, args...)
			inc.Record(now, remediator.EventRefused, "", "%s by %s via %s refused: %v", verb, a.Who(), a.Via, refusal)
			return nil
		}
		switch {
		case inc.State != remediator.StateAwaitingApproval || inc.Approval == nil:
			return refuse(remediator.ECONFLICT, "incident %s is %s, not awaiting approval", inc.ID, inc.State)
		case !allowed:
			rule := inc.Gates.Approval
			return refuse(remediator.EFORBIDDEN, "%s may not answer for incident %s: the approvers are %s", a.Who(), inc.ID, approvers(rule))
		case a.Approve && inc.Approval.ApprovedBy(a.By):
			return refuse(remediator.ECONFLICT, "%s approved already; %d of %d distinct approvers so far", a.Who(), len(inc.Approval.Approvals), inc.Approval.Required)
		}
		if !a.Approve {
			reason := "rejected by " + a.Who()
			if a.Comment != "" {
				reason += ": " + a.Comment
			}
			inc.Record(now, remediator.EventRejected, inc.Approval.Gate, "%s via %s", reason, a.Via)
			skipPending(inc, reason)
			inc.SetState(remediator.StateRejected, reason, now)
			return nil
		}
		inc.Approval.Approvals = append(inc.Approval.Approvals, remediator.Approval{By: a.By, Via: a.Via, At: now, Comment: a.Comment})
		count := len(inc.Approval.Approvals)
		inc.Record(now, remediator.EventApproved, inc.Approval.Gate, "approved by %s via %s (%d of %d)%s", a.Who(), a.Via, count, inc.Approval.Required, commentSuffix(a.Comment))
		if count >= inc.Approval.Required {
			granted = true
			inc.Approval.Granted = true
			inc.SetState(remediator.StateRunning, "", now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	log := w.Log.With("incident", inc.ID, "by", a.Who(), "via", a.Via, "approve", a.Approve)
	var ephemeral *remediator.Ephemeral
	if refusal != nil {
		log.Warn("answer refused", "err", refusal)
		if a.Channel != "" {
			ephemeral = &remediator.Ephemeral{User: a.By, Channel: a.Channel, Text: "Not accepted: " + refusal.Error() + "."}
		}
	} else {
		log.Info("answer recorded", "state", inc.State)
	}
	w.notify(ctx, inc, ephemeral)
	if granted {
		data, _ := json.Marshal(runRequest{Incident: inc.ID})
		if _, err := w.Publisher.Publish(ctx, w.RunSubject, data, "run-"+inc.ID+"-approved-"+inc.Approval.Gate); err != nil {
			return inc, err
		}
	}
	return inc, refusal
}

// AnswerFromChat handles an answer clicked in chat, enqueued by the interactions handler. A
// refusal is recorded and told to the user; it is not an error of the message.
func (w *Worker) AnswerFromChat(ctx context.Context, data []byte) error {
	var a remediator.Answer
	if err := json.Unmarshal(data, &a); err != nil || a.Incident == "" {
		return remediator.Errorf(remediator.EINVALID, "answer %q: not an answer to an incident", data)
	}
	_, err := w.Answer(ctx, a)
	switch remediator.ErrorCode(err) {
	case remediator.EFORBIDDEN, remediator.ECONFLICT, remediator.ENOTFOUND:
		return nil
	}
	return err
}

// mayApprove says whether the answerer is one of the rule's users, or a member of one of its
// chat groups. Chat users are matched by their ID only: a display name can be changed by its
// owner.
func (w *Worker) mayApprove(ctx context.Context, rule *remediator.ApprovalRule, a remediator.Answer) (bool, error) {
	if slices.Contains(rule.Users, a.By) {
		return true, nil
	}
	if a.Via != "slack" || w.Groups == nil {
		return false, nil
	}
	for _, g := range rule.Groups {
		members, err := w.Groups.Members(ctx, g)
		if err != nil {
			return false, fmt.Errorf("members of %s: %w", g, err)
		}
		if slices.Contains(members, a.By) {
			return true, nil
		}
	}
	return false, nil
}

func commentSuffix(c string) string {
	if c = strings.TrimSpace(c); c != "" {
		return ": " + c
	}
	return ""
}
