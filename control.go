package remediator

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// An operator's hands on a run: cancel it, retry it, or pause every run on a cluster.

// Cancel is an operator's request to stop an incident's run, or a stop that a rejection or an
// expired approval made of a run with clean-up left to do (Ends says which).
type Cancel struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Ends is the state the run ends in once its clean-up ran: cancelled if empty.
	Ends State `json:"ends,omitempty"`
}

// Why says who cancelled and why, as the incident's reason and the skipped steps say it; a
// rejection's reason says it itself.
func (c *Cancel) Why() string {
	if c.Ends != "" {
		return c.Reason
	}
	return fmt.Sprintf("cancelled by %s: %s", c.By, c.Reason)
}

// End is the state the stopped run ends in.
func (c *Cancel) End() State {
	if c.Ends != "" {
		return c.Ends
	}
	return StateCancelled
}

// Stop ends the run before its next step, in state end, for why (a rejection, an expired
// approval). A run that changed something and has clean-up steps left does not end here:
// the clean-up still runs, as after a cancel, and the incident ends in state end after it.
// Stop says whether a worker has to run that clean-up.
func (inc *Incident) Stop(by, why string, end State, now time.Time) (cleanup bool) {
	pending := slices.ContainsFunc(inc.Steps, func(s Step) bool { return s.Always && s.State == StepPending })
	if !inc.started() || !pending {
		inc.SkipPending(why)
		inc.SetState(end, why, now)
		return false
	}
	inc.Cancel = &Cancel{By: by, Reason: why, At: now, Ends: end}
	inc.Record(now, EventCancelRequested, "", "%s; the run stops here, and its clean-up steps still run", why)
	return true
}

// Event kinds of an operator's hands on a run.
const (
	EventCancelRequested = "cancel_requested"
	EventRetry           = "retry"
)

// RequestCancel records an operator's request to stop the run. An incident whose run has not
// changed anything yet ends cancelled at once; one that has stops before its next step, and
// its clean-up steps still run (the worker sees Cancel). It says whether a worker has to
// finish the cancel.
func (inc *Incident) RequestCancel(by, reason string, at time.Time) (finish bool, err error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return false, Errorf(EINVALID, "say why the run is cancelled (--reason TEXT, \"reason\" in the API): it goes in the incident's timeline")
	case inc.State.Terminal():
		return false, Errorf(EREFUSED, "incident %s is %s already: there is no run to cancel", inc.ID, inc.State)
	case inc.Cancel != nil:
		return true, nil // asked already; the worker is on it
	}
	inc.Cancel = &Cancel{By: by, Reason: reason, At: at}
	if !inc.started() {
		inc.Record(at, EventCancelRequested, "", "cancelled by %s before any step ran: %s", by, reason)
		inc.SkipPending(inc.Cancel.Why())
		inc.SetState(StateCancelled, inc.Cancel.Why(), at)
		return false, nil
	}
	inc.Record(at, EventCancelRequested, "", "cancel requested by %s: %s; the run stops before its next step, and its clean-up steps still run", by, reason)
	return true, nil
}

// started says whether a step of the incident's run began.
func (inc *Incident) started() bool {
	return slices.ContainsFunc(inc.Steps, func(s Step) bool { return s.Attempts > 0 })
}

// CutShort says whether a step of this risk may be stopped part way by a cancel: a check, a
// wait or a verification leaves nothing half done; a higher-risk step (a member removed and
// not yet added back) must finish what it started.
func CutShort(r Risk) bool { return r == RiskReadOnly || r == RiskLow }

// CancelSteps marks the steps a cancelled run will not run as skipped, a read-only or low-risk
// step whose attempt was interrupted or waits for its retry too, and returns the steps still
// to run: the clean-up steps, and a higher-risk step that started, which finishes from its
// saved progress first.
func (inc *Incident) CancelSteps() (left []string) {
	why := inc.Cancel.Why()
	for j := range inc.Steps {
		s := &inc.Steps[j]
		switch {
		case !s.Runnable():
		case s.Always, s.State == StepRunning && !CutShort(s.Risk):
			left = append(left, s.Name)
		default:
			if s.State == StepRunning {
				s.Output = strings.TrimSpace(s.Output + "\nnot run again: " + why)
				s.FinishedAt = inc.UpdatedAt
			} else {
				s.Output = "not run: " + why
			}
			s.State = StepSkipped
		}
	}
	return left
}

// Retry makes a failed or cancelled incident run again, as a new attempt, from its first step
// that did not succeed: that step and those after it are pending again, with no progress, the
// approvals are asked for again where the policy asks for them, and the gates apply as to a new
// run (the incident's own earlier attempts count towards max_attempts, not its cooldown). When
// a clean-up step ran, it undid what the steps before it set up (a liveness probe suspended for
// the recovery is back on): the new attempt starts from the first step.
func (inc *Incident) Retry(by string, at time.Time) error {
	switch {
	case inc.State != StateFailed && inc.State != StateCancelled:
		return Errorf(EREFUSED, "incident %s is %s: only a failed or cancelled incident can be retried", inc.ID, inc.State)
	case inc.Closed():
		return Errorf(EREFUSED, "incident %s is closed: its alerts resolved or it was closed by hand; if the problem is back, its next alert opens a new incident", inc.ID)
	case len(inc.Steps) == 0:
		return Errorf(EREFUSED, "incident %s never planned its steps: nothing to retry", inc.ID)
	}
	first := slices.IndexFunc(inc.Steps, func(s Step) bool { return s.State != StepSucceeded })
	if first < 0 {
		return Errorf(EREFUSED, "every step of incident %s succeeded: nothing to retry", inc.ID)
	}
	if slices.ContainsFunc(inc.Steps, func(s Step) bool { return s.Always && s.State == StepSucceeded }) {
		first = 0
	}
	inc.Attempt = max(inc.Attempt, 1) + 1
	for j := first; j < len(inc.Steps); j++ {
		s := &inc.Steps[j]
		s.State, s.Attempts, s.Error, s.Output, s.RetryAt, s.Progress = StepPending, 0, "", "", time.Time{}, nil
		s.StartedAt, s.FinishedAt = time.Time{}, time.Time{}
	}
	inc.Cancel, inc.Approval, inc.PastApprovals, inc.FinishedAt = nil, nil, nil, time.Time{}
	inc.Record(at, EventRetry, inc.Steps[first].Name, "retry by %s: attempt %d runs from step %s", by, inc.Attempt, inc.Steps[first].Name)
	inc.SetState(StatePending, fmt.Sprintf("retry by %s: attempt %d, from step %s", by, inc.Attempt, inc.Steps[first].Name), at)
	return nil
}

// AllClusters is the Pause.Cluster of a pause of every cluster.
const AllClusters = "*"

// Pause holds back every new step on a cluster (or on all of them) until an operator resumes
// it: the kill switch. Steps already running finish; incidents wait, saying why.
type Pause struct {
	Cluster string    `json:"cluster"`
	By      string    `json:"by"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

// Why says what holds the run back, for the incident's reason.
func (p Pause) Why() string {
	where := "cluster " + p.Cluster
	if p.Cluster == AllClusters {
		where = "every cluster"
	}
	return fmt.Sprintf("paused: %s paused %s at %s: %s; no step starts until `remediator resume`",
		p.By, where, p.At.UTC().Format(time.RFC3339), p.Reason)
}
