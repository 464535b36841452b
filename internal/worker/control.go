package worker

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// An operator's hands on the runs: close, cancel, retry, pause and resume. Each is a change
// of the store that a run honours before its next step, and each tells the humans.

// PauseStore keeps the clusters operators paused.
type PauseStore interface {
	Pause(ctx context.Context, p remediator.Pause) (remediator.Pause, error)
	Resume(ctx context.Context, cluster string) (bool, error)
	// Paused returns the pause that holds a cluster back (its own, or one of every cluster).
	Paused(ctx context.Context, cluster string) (*remediator.Pause, error)
	List(ctx context.Context) ([]remediator.Pause, error)
}

// DefaultPauseRecheck is how often an incident held back by a pause looks again.
const DefaultPauseRecheck = 15 * time.Second

// Close closes a finished incident by hand, for an operator, and tells the humans.
func (w *Worker) Close(ctx context.Context, id, by, reason string) (*remediator.Incident, error) {
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		return inc.CloseBy(w.Now(), by, reason)
	})
	if err != nil {
		return nil, err
	}
	w.Log.Info("incident closed by hand", "incident", id, "by", by, "reason", reason)
	w.notify(ctx, inc, nil)
	return inc, nil
}

// Cancel stops an incident's run, for an operator: before its next step (the step running
// is cut short only if it is read-only or low risk), with its clean-up steps still run. A run
// that has not started ends cancelled at once.
func (w *Worker) Cancel(ctx context.Context, id, by, reason string) (*remediator.Incident, error) {
	finish := false
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		var err error
		finish, err = inc.RequestCancel(by, reason, w.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	w.Log.Info("cancel requested", "incident", id, "by", by, "reason", reason, "state", inc.State)
	w.notify(ctx, inc, nil)
	if finish {
		// A run waiting for approval, a window or a retry has no worker on it: this one
		// finishes the cancel now.
		if err := w.requestRunFor(ctx, id, "cancel"+attemptKey(inc)); err != nil {
			return inc, err
		}
	}
	return inc, nil
}

// Retry runs a failed or cancelled incident again, as a new attempt, from its first step that
// did not succeed, through the same gates as a new run. It needs the incident's cluster and
// remediation free: an incident opened for the same problem since is the one to follow.
func (w *Worker) Retry(ctx context.Context, id, by string) (*remediator.Incident, error) {
	before, err := w.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if before.State == remediator.StatePending && before.Attempt > 1 && !slices.ContainsFunc(before.Steps, func(s remediator.Step) bool { return s.Attempts > 0 && s.State != remediator.StepSucceeded }) {
		// Retried already, and not started: its run request may have been lost with the
		// queue; asking again is safe, as the queue takes it once.
		return before, w.requestRunFor(ctx, id, "retry-"+strconv.Itoa(before.Attempt))
	}
	if err := (*before).Retry(by, w.Now()); err != nil {
		return nil, err // refused before claiming anything
	}
	holder, err := w.Store.ClaimOpen(ctx, before.Cluster, before.Remediation, id)
	switch {
	case err != nil:
		return nil, err
	case holder != id:
		return nil, remediator.Errorf(remediator.EREFUSED, "incident %s is open for %s on cluster %s since: follow that one (remediator show %s)",
			holder, before.Remediation, before.Cluster, holder)
	}
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error { return inc.Retry(by, w.Now()) })
	if err != nil {
		// The claim is this incident's; free it only if the incident is still over, so that a
		// retry that won in between keeps it.
		rctx, cancel := recordCtx(ctx)
		defer cancel()
		if now, gerr := w.Store.Get(rctx, id); gerr == nil && now.State.Terminal() {
			if rerr := w.Store.ReleaseOpen(rctx, before.Cluster, before.Remediation, id); rerr != nil {
				w.Log.Warn("cannot free the open claim of an incident not retried", "incident", id, "err", rerr)
			}
		}
		return nil, err
	}
	w.Log.Info("retry requested", "incident", id, "by", by, "attempt", inc.Attempt)
	w.notify(ctx, inc, nil)
	return inc, w.requestRunFor(ctx, id, "retry-"+strconv.Itoa(inc.Attempt))
}

// Pause holds back every new step on a cluster (remediator.AllClusters for all), for an
// operator; pausing a paused cluster keeps the first pause, which it returns.
func (w *Worker) Pause(ctx context.Context, cluster, by, reason string) (remediator.Pause, error) {
	if strings.TrimSpace(reason) == "" {
		return remediator.Pause{}, remediator.Errorf(remediator.EINVALID, "say why the cluster is paused (--reason TEXT, \"reason\" in the API): it shows wherever the incidents wait")
	}
	p, err := w.Pauses.Pause(ctx, remediator.Pause{Cluster: cluster, By: by, Reason: strings.TrimSpace(reason), At: w.Now()})
	if err != nil {
		return p, err
	}
	w.Log.Warn("cluster paused: no step starts on it until it is resumed", "cluster", cluster, "by", p.By, "reason", p.Reason)
	return p, nil
}

// Resume lifts a pause, for an operator: the incidents held back go on when they look again.
func (w *Worker) Resume(ctx context.Context, cluster, by string) error {
	ok, err := w.Pauses.Resume(ctx, cluster)
	switch {
	case err != nil:
		return err
	case !ok:
		if cluster == remediator.AllClusters {
			return remediator.Errorf(remediator.ENOTFOUND, "every cluster is not paused as one: a cluster paused by name is resumed by name (--cluster NAME)")
		}
		return remediator.Errorf(remediator.ENOTFOUND, "cluster %s is not paused", cluster)
	}
	w.Log.Info("cluster resumed", "cluster", cluster, "by", by)
	return nil
}

// Paused returns every pause in force.
func (w *Worker) Paused(ctx context.Context) ([]remediator.Pause, error) { return w.Pauses.List(ctx) }

// heldByPause says whether a pause holds the incident's next step back; if so it notes why
// (once) and the run comes back to look again.
func (w *Worker) heldByPause(ctx context.Context, log *slog.Logger, inc *remediator.Incident) (bool, error) {
	if w.Pauses == nil {
		return false, nil
	}
	p, err := w.Pauses.Paused(ctx, inc.Cluster)
	if err != nil || p == nil {
		return false, err
	}
	log.Debug("held back by a pause", "paused_by", p.By, "reason", p.Reason)
	if err := w.note(ctx, inc.ID, remediator.EventWaiting, p.Why()); err != nil {
		return true, err
	}
	return true, remediator.RetryLater(w.PauseRecheck, "%s", p.Why())
}
