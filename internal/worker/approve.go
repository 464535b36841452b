package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// expireRequest is the body of an approval deadline message.
type expireRequest struct {
	Incident string `json:"incident"`
	Gate     string `json:"gate"`
	// ExpiresAt is the deadline as scheduled; the request's own deadline decides once the
	// request is recorded.
	ExpiresAt time.Time `json:"expires_at"`
}

// requestApproval stops the run before gate until enough approvers answer. The expiry is
// scheduled first, so that no request is ever left open without one; a request already open
// at this gate is kept, with the approvals it has, and one granted at an earlier gate goes to
// the incident's past approvals (Incident.AskApproval).
func (w *Worker) requestApproval(ctx context.Context, log *slog.Logger, id, gate, reason string) (*remediator.Incident, error) {
	inc, err := w.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	now := w.Now()
	expires := now.Add(time.Duration(inc.Gates.Approval.Timeout))
	if err := w.publishExpiry(ctx, inc, gate, expires); err != nil {
		return nil, err
	}
	inc, err = w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if a := inc.Approval; a != nil && a.Gate == gate && inc.State == remediator.StateAwaitingApproval {
			return nil
		}
		if inc.State.Terminal() || inc.Cancel != nil {
			return nil // ended or being cancelled meanwhile: nobody is to be asked
		}
		inc.AskApproval(gate, reason, now, expires)
		return nil
	})
	if err != nil {
		return nil, err
	}
	log.Info("waiting for approval", "gate", gate, "expires_at", inc.Approval.ExpiresAt, "reason", reason)
	w.notify(ctx, inc, nil)
	return inc, nil
}

// scheduleExpiry makes sure the open request of an incident has its expiry on the queue.
func (w *Worker) scheduleExpiry(ctx context.Context, inc *remediator.Incident) error {
	if inc.Approval == nil {
		return nil
	}
	return w.publishExpiry(ctx, inc, inc.Approval.Gate, inc.Approval.ExpiresAt)
}

func (w *Worker) publishExpiry(ctx context.Context, inc *remediator.Incident, gate string, at time.Time) error {
	data, _ := json.Marshal(expireRequest{Incident: inc.ID, Gate: gate, ExpiresAt: at})
	_, err := w.Publisher.Publish(ctx, w.ExpireSubject, data, "expire-"+inc.ID+"-"+gate+attemptKey(inc))
	return err
}

// attemptKey tells the queue messages of a retried incident's attempt from its earlier ones',
// which the queue would otherwise take for duplicates: "" for the first attempt.
func attemptKey(inc *remediator.Incident) string {
	if inc.Attempt <= 1 {
		return ""
	}
	return "-a" + strconv.Itoa(inc.Attempt)
}

// Expire rejects an incident whose approval request is still open at its deadline; before
// the deadline it asks the queue to come back then.
func (w *Worker) Expire(ctx context.Context, data []byte) error {
	var req expireRequest
	if err := json.Unmarshal(data, &req); err != nil || req.Incident == "" {
		return remediator.Errorf(remediator.EINVALID, "expiry %q: not an incident reference", data)
	}
	// A request of an incident being cancelled does not expire: the cancel's run ends it, after
	// the clean-up that an expiry would skip.
	open := func(inc *remediator.Incident) bool {
		return inc.State == remediator.StateAwaitingApproval && inc.Approval != nil && inc.Approval.Gate == req.Gate && inc.Cancel == nil
	}
	inc, err := w.Store.Get(ctx, req.Incident)
	switch {
	case err != nil:
		return err
	case !open(inc) && inc.Cancel != nil && inc.Cancel.Ends != "":
		// Stopped by this expiry or a rejection: make sure its clean-up run was enqueued.
		return w.cleanUpAfterStop(ctx, inc)
	case !open(inc):
		// Answered, over, or not recorded yet (the deadline is scheduled first): look again
		// at the deadline, by when it must be recorded if it ever will be. A gate granted
		// before the request open now was answered.
		answered := slices.ContainsFunc(inc.Requests(), func(a *remediator.ApprovalRequest) bool { return a.Gate == req.Gate && a.Granted })
		if wait := req.ExpiresAt.Sub(w.Now()); wait > 0 && !inc.State.Terminal() && !answered {
			return remediator.RetryLater(wait, "approval of incident %s before %s not recorded yet", inc.ID, req.Gate)
		}
		return nil
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
		inc.Stop("", reason, remediator.StateRejected, now)
		return nil
	})
	if err != nil || !expired {
		return err
	}
	w.Log.With("incident", inc.ID, "cluster", inc.Cluster, "remediation", inc.Remediation).Info("approval expired", "reason", inc.Reason)
	w.notify(ctx, inc, nil)
	return w.cleanUpAfterStop(ctx, inc)
}

// cleanUpAfterStop runs the clean-up steps of a run that a rejection or an expiry stopped
// after it changed something (Incident.Stop): the run that waited for the answer ended, so
// this enqueues one.
func (w *Worker) cleanUpAfterStop(ctx context.Context, inc *remediator.Incident) error {
	if inc.Cancel == nil || inc.Cancel.Ends == "" || inc.State.Terminal() {
		return nil
	}
	return w.requestRunFor(ctx, inc.ID, "stopped"+attemptKey(inc))
}

// Answer records a human's approval or rejection: it finds whether the answerer may answer
// (from the policy's rule and from chat), and the incident accepts or refuses the answer
// (Incident.Accept), recording why. Once enough distinct approvers approved, the run goes on.
func (w *Worker) Answer(ctx context.Context, a remediator.Answer) (*remediator.Incident, error) {
	a.Person = a.By
	if name, ok := w.People[a.By]; ok && a.Via == remediator.ViaSlack {
		a.Person = name // one person, one vote, wherever they answer
	}
	inc, err := w.Store.Get(ctx, a.Incident)
	if err != nil {
		return nil, err
	}
	if inc.State == remediator.StateRunning && inc.Approval != nil && inc.Approval.Granted {
		// Granted already: make sure the run it allowed was requested (it may not have been,
		// if this worker stopped in between), then refuse this answer below.
		if err := w.requestApprovedRun(ctx, inc); err != nil {
			return nil, err
		}
	}
	denied, err := w.denial(ctx, inc, a)
	if err != nil {
		return nil, err // the answer comes back when the group can be read
	}
	var refusal error
	granted := false
	inc, err = w.Store.Update(ctx, a.Incident, func(inc *remediator.Incident) error {
		granted, refusal = inc.Accept(a, denied, w.Now())
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
	// A rejection that stopped the run leaves its clean-up to a run of its own; enqueued
	// again on any later answer, in case the first enqueue failed (its message ID makes it one).
	if err := w.cleanUpAfterStop(ctx, inc); err != nil {
		return inc, err
	}
	if granted {
		if err := w.requestApprovedRun(ctx, inc); err != nil {
			return inc, err
		}
	}
	return inc, refusal
}

// denial says why the answerer may not answer for the incident, or nil if they may. It denies
// by default: an incident whose policy names no approvers takes no answer. Its error is a
// look-up of chat that may pass.
func (w *Worker) denial(ctx context.Context, inc *remediator.Incident, a remediator.Answer) (denied, err error) {
	rule := inc.Gates.Approval
	if rule == nil {
		return fmt.Errorf("incident %s names no approvers", inc.ID), nil
	}
	ok, err := w.mayApprove(ctx, rule, a)
	switch {
	case remediator.Retriable(err):
		return nil, err
	case err != nil:
		return fmt.Errorf("cannot tell whether %s may answer: %v", a.Who(), err), nil
	case !ok:
		return fmt.Errorf("%s may not answer for incident %s: the approvers are %s", a.Who(), inc.ID, rule.Approvers()), nil
	}
	return nil, nil
}

// requestApprovedRun enqueues the run an approval allowed, once.
func (w *Worker) requestApprovedRun(ctx context.Context, inc *remediator.Incident) error {
	data, _ := json.Marshal(runRequest{Incident: inc.ID})
	_, err := w.Publisher.Publish(ctx, w.RunSubject, data, "run-"+inc.ID+"-approved-"+inc.Approval.Gate+attemptKey(inc))
	return err
}

// RefuseForgedAnswer records, in the incident it names, an answer that reached the queue
// without the signature of the intake that checked it (Slack's signature or an operator
// token): it approves nothing. why says what was wrong with its signature.
func (w *Worker) RefuseForgedAnswer(ctx context.Context, data []byte, why error) error {
	var a remediator.Answer
	if err := json.Unmarshal(data, &a); err != nil || a.Incident == "" {
		w.Log.Warn("refused a forged answer that names no incident", "err", why)
		return nil
	}
	log := w.Log.With("incident", a.Incident, "by", a.Who(), "via", a.Via, "approve", a.Approve)
	log.Warn("refused a forged answer", "err", why)
	verb := map[bool]string{true: "approval", false: "rejection"}[a.Approve]
	// Whoever forges answers may send many: the first few tell the humans, the log has all,
	// and the rest cost the incident no write.
	recorded := func(inc *remediator.Incident) int {
		n := 0
		for _, e := range inc.Timeline {
			if e.Kind == remediator.EventRefused && strings.Contains(e.Message, forgedMark) {
				n++
			}
		}
		return n
	}
	inc, err := w.Store.Get(ctx, a.Incident)
	switch {
	case remediator.ErrorCode(err) == remediator.ENOTFOUND:
		return nil
	case err != nil:
		return err
	case recorded(inc) >= forgedRecorded:
		return nil
	}
	inc, err = w.Store.Update(ctx, a.Incident, func(inc *remediator.Incident) error {
		if recorded(inc) < forgedRecorded {
			inc.Record(w.Now(), remediator.EventRefused, "", "%s claiming to be by %s via %s refused: %s (%v); it counts for nothing",
				verb, truncate(a.Who(), 80), truncate(a.Via, 20), forgedMark, why)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.notify(ctx, inc, nil)
	return nil
}

// forgedMark marks the timeline events of refused forged answers, of which an incident
// records forgedRecorded.
const (
	forgedMark     = "it reached the queue without the signature of remediator's intake"
	forgedRecorded = 5
)

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
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
	case remediator.EFORBIDDEN, remediator.EREFUSED, remediator.ENOTFOUND:
		return nil // recorded, and told to the user
	}
	return err
}

// mayApprove says whether the answerer is one of the rule's users (by their chat user ID or
// operator name), a member of one of its chat groups, or anyone, where the rule says so: in
// chat, anyone who is a full member of the workspace, not a guest or a user of another
// workspace in a shared channel. Chat users are matched by their ID only: a display name can
// be changed by its owner.
func (w *Worker) mayApprove(ctx context.Context, rule *remediator.ApprovalRule, a remediator.Answer) (bool, error) {
	named := slices.ContainsFunc(rule.Users, func(u string) bool {
		return u == a.By || u == a.Person || (w.People[u] != "" && w.People[u] == a.Person)
	})
	if named {
		return true, nil
	}
	if slices.Contains(rule.Users, remediator.AnyApprover) {
		if a.Via != remediator.ViaSlack {
			return true, nil
		}
		if w.Members == nil {
			return false, fmt.Errorf("no chat to ask whether %s is a member of the workspace", a.Who())
		}
		m, err := w.Members.Member(ctx, a.By)
		if err != nil {
			return false, fmt.Errorf("is %s a member of the workspace: %w", a.Who(), err)
		}
		if m.FullMember() {
			return true, nil
		}
		if len(rule.Groups) == 0 {
			return false, nil
		}
	}
	if a.Via != remediator.ViaSlack || w.Groups == nil {
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
