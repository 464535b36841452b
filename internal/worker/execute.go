package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remediator/remediator"
)

// Execute runs (or resumes) the remediation of the incident named by a run message. A new
// incident passes its gates first (dry-run, cooldown, max_attempts, maintenance windows) and
// runs only with its cluster's lock; a step at or above the policy's approval risk waits for
// approval, and one at or above its per_step_from for an approval of its own. Steps that
// succeeded are not run again; a step that was interrupted runs again from the progress it
// saved. A step error that may pass is recorded and returned for the queue to retry, until
// the step has had its attempts; any other failure ends the incident.
func (w *Worker) Execute(ctx context.Context, data []byte) error {
	var req runRequest
	if err := json.Unmarshal(data, &req); err != nil || req.Incident == "" {
		return remediator.Errorf(remediator.EINVALID, "run request %q: not an incident reference", data)
	}
	inc, err := w.Store.Get(ctx, req.Incident)
	if err != nil {
		return err
	}
	log := w.Log.With("incident", inc.ID, "cluster", inc.Cluster, "remediation", inc.Remediation)
	switch {
	case inc.State.Terminal():
		return nil
	case inc.State == remediator.StateAwaitingApproval && inc.Cancel == nil:
		// Its expiry may not have been scheduled, if this worker stopped in between.
		return w.scheduleExpiry(ctx, inc)
	}
	plan, err := w.Remediations.Plan(inc.Remediation, inc.Params)
	if err != nil {
		return w.fail(ctx, log, inc.ID, err)
	}
	if inc.State == remediator.StatePending && inc.Cancel == nil {
		if inc, err = w.admit(ctx, log, inc, plan); err != nil || inc.State != remediator.StatePending {
			return err
		}
	}
	if err := samePlan(inc.Steps, plan); err != nil {
		return w.fail(ctx, log, inc.ID, err)
	}
	// A paused cluster's incidents wait without its lock, which other clusters' do not need
	// but an operator resuming it would find held.
	if held, err := w.heldByPause(ctx, log, inc); held || err != nil {
		return err
	}

	// Each run holds the lock under its own name: a second delivery of the same incident
	// waits like any other run, so an incident never runs twice at once.
	holder := inc.ID + "@" + w.id + "/" + newID(w.Now())
	owner, err := w.Locks.Acquire(ctx, inc.Cluster, holder)
	var fenced *remediator.Later
	switch {
	case errors.As(err, &fenced):
		if err := w.note(ctx, inc.ID, remediator.EventWaiting, "waiting: "+fenced.Reason); err != nil {
			return err
		}
		return err
	case err != nil:
		return err
	case owner != holder:
		return w.waitForLock(ctx, log, inc.ID, owner)
	}
	lock := w.holdLock(ctx, log, inc.Cluster, holder)
	defer lock.release(ctx)
	// What the incident is now, under the lock: another run may have moved it on.
	if inc, err = w.Store.Get(ctx, inc.ID); err != nil || inc.State.Terminal() || (inc.State == remediator.StateAwaitingApproval && inc.Cancel == nil) {
		return err
	}
	switch {
	case inc.Cancel != nil && inc.State != remediator.StateRunning:
		if inc, err = w.setState(ctx, log, inc.ID, remediator.StateRunning, inc.Cancel.Why()+"; running the clean-up steps"); err != nil {
			return err
		}
	case inc.State == remediator.StatePending:
		if inc, err = w.setState(ctx, log, inc.ID, remediator.StateRunning, ""); err != nil {
			return err
		}
	}

	var failed error
	for i, step := range plan {
		if !inc.Steps[i].Runnable() {
			continue
		}
		// After a failure, or a step that found nothing to do, only clean-up steps are left,
		// and they do not wait for gates: the cluster must not stay as the run left it.
		if failed == nil && !hasFailed(inc) && nothingToDo(inc) == "" && inc.Cancel == nil {
			if stop, err := w.holdBack(ctx, log, inc, step); stop || err != nil {
				return err
			}
		}
		// A pause holds back every step, clean-up too: the operator wants the cluster left
		// alone, and the clean-up runs on resume.
		if held, err := w.heldByPause(ctx, log, inc); held || err != nil {
			return err
		}
		if err := lock.check(); err != nil {
			return w.lostLock(ctx, log, inc.ID, step.Name, err)
		}
		if w.Draining != nil && w.Draining() {
			log.Info("shutting down: handing the run back to the queue before its next step", "step", step.Name)
			return remediator.RetryLater(time.Second, "this worker is shutting down: step %s is left to another worker", step.Name)
		}
		var stepErr error
		inc, stepErr = w.runStep(ctx, log.With("step", step.Name), lock, inc.ID, i, step)
		if inc != nil {
			w.notify(ctx, inc, nil)
		}
		last := stepErr == nil && i+1 == len(plan)
		if err := lock.check(); err != nil && !last && (inc == nil || inc.Steps[i].State != remediator.StepFailed) {
			next := step.Name
			if stepErr == nil && i+1 < len(plan) {
				next = plan[i+1].Name
			}
			return w.lostLock(ctx, log, req.Incident, next, err)
		}
		switch {
		case stepErr == nil:
		case inc == nil || ctx.Err() != nil || inc.Steps[i].State != remediator.StepFailed:
			return stepErr // interrupted, or retried by the queue
		default:
			failed = stepErr
		}
	}
	if inc.State.Terminal() {
		return failed
	}
	if inc.Cancel != nil && !hasFailed(inc) {
		_, err := w.setState(ctx, log, inc.ID, inc.Cancel.End(), inc.Cancel.Why())
		return err
	}
	if why := nothingToDo(inc); why != "" && !hasFailed(inc) {
		_, err := w.setState(ctx, log, inc.ID, remediator.StateSkipped, why)
		return err
	}
	if hasFailed(inc) {
		i := slices.IndexFunc(inc.Steps, func(s remediator.Step) bool { return s.State == remediator.StepFailed })
		_, err := w.setState(ctx, log, inc.ID, remediator.StateFailed, fmt.Sprintf("step %s failed: %s", inc.Steps[i].Name, inc.Steps[i].Error))
		if failed == nil {
			failed = remediator.Errorf(remediator.EPRECONDITION, "step %s failed: %s", inc.Steps[i].Name, inc.Steps[i].Error)
		}
		return errors.Join(failed, err)
	}
	inc, err = w.setState(ctx, log, inc.ID, remediator.StateSucceeded, "")
	if err == nil {
		log.Info("remediation succeeded", "time_to_recovery", inc.TimeToRecovery())
	}
	return err
}

// holdBack applies, before a step, the gates that hold for every step (beforeStep), and says
// whether the run stops here.
func (w *Worker) holdBack(ctx context.Context, log *slog.Logger, inc *remediator.Incident, step remediator.PlannedStep) (bool, error) {
	a := beforeStep(inc, step, w.Now(), w.DryRun)
	if a.verdict == admitRun {
		return false, nil
	}
	_, err := w.apply(ctx, log, inc.ID, step.Name, inc.State, a)
	return true, err
}

// apply carries out a gate's verdict other than admitRun, before step gate, on an incident
// the verdict was made in state from: the run ends skipped, or is noted as waiting and comes
// back when it may go on, or asks for approval. An incident another delivery has moved on
// meanwhile is left as that delivery made it.
func (w *Worker) apply(ctx context.Context, log *slog.Logger, id, gate string, from remediator.State, a admission) (*remediator.Incident, error) {
	switch a.verdict {
	case admitWait:
		if err := w.note(ctx, id, remediator.EventWaiting, a.reason); err != nil {
			return nil, err
		}
		return nil, remediator.RetryLater(a.until.Sub(w.Now()), "%s", a.reason)
	case admitApprove:
		return w.requestApproval(ctx, log, id, gate, a.reason)
	}
	skipped := false
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if skipped = inc.State == from; !skipped {
			return nil // another delivery got here first
		}
		now := w.Now()
		inc.SkipPending(a.reason)
		inc.Record(now, remediator.EventNotice, "", "%s", a.reason)
		inc.SetState(remediator.StateSkipped, a.reason, now)
		return nil
	})
	if err != nil || !skipped {
		return inc, err
	}
	log.Info("incident not run", "reason", a.reason)
	w.notify(ctx, inc, nil)
	return inc, nil
}

// note records (once) why the incident waits.
func (w *Worker) note(ctx context.Context, id, kind, reason string) error {
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if inc.Reason != reason {
			inc.Reason = reason
			inc.Record(w.Now(), kind, "", "%s", reason)
		}
		return nil
	})
	if err == nil {
		w.notify(ctx, inc, nil)
	}
	return err
}

// admit records the plan of a pending incident and applies its gates. The incident it returns
// is still pending if the run may start; otherwise it says what happened instead.
func (w *Worker) admit(ctx context.Context, log *slog.Logger, inc *remediator.Incident, plan []remediator.PlannedStep) (*remediator.Incident, error) {
	id := inc.ID
	var history []remediator.Run
	if inc.Gates.Cooldown > 0 || inc.Gates.MaxAttempts > 0 {
		var err error
		if history, err = w.Store.Runs(ctx, inc.Cluster, inc.Remediation); err != nil {
			return nil, err
		}
		if history == nil {
			history = []remediator.Run{}
		}
	}
	a := admit(inc, history, w.Now(), w.DryRun)
	w.admissions.WithLabelValues(a.verdict.String()).Inc()
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if inc.State == remediator.StatePending && len(inc.Steps) == 0 {
			inc.Steps = make([]remediator.Step, len(plan))
			for i, p := range plan {
				inc.Steps[i] = remediator.Step{Name: p.Name, Description: p.Description, Risk: p.Risk, Always: p.Always, Undo: p.Undo, State: remediator.StepPending}
			}
		}
		return nil
	})
	if err != nil || inc.State != remediator.StatePending || a.verdict == admitRun {
		return inc, err
	}
	return w.apply(ctx, log, id, plan[0].Name, remediator.StatePending, a)
}

// setState moves the incident to a state and tells the humans.
func (w *Worker) setState(ctx context.Context, log *slog.Logger, id string, s remediator.State, reason string) (*remediator.Incident, error) {
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if inc.State.Terminal() {
			return nil // ended meanwhile (a cancel before any step ran): it stays as it ended
		}
		inc.SetState(s, reason, w.Now())
		return nil
	})
	if err != nil {
		return nil, err
	}
	log.Info("incident state", "state", s, "reason", reason)
	w.notify(ctx, inc, nil)
	return inc, nil
}

// waitForLock notes (once) that the incident waits for another's cluster lock, and asks the
// queue to come back about when the lock could have expired.
func (w *Worker) waitForLock(ctx context.Context, log *slog.Logger, id, owner string) error {
	holder, _, _ := strings.Cut(owner, "@")
	log.Debug("waiting for the cluster lock", "holder", owner)
	if holder == id {
		// Another delivery of this same incident runs: nothing to tell the humans.
		return remediator.RetryLater(w.Locks.TTL()/3, "incident %s runs elsewhere", id)
	}
	reason := fmt.Sprintf("waiting for the cluster lock, held by incident %s: one remediation per cluster at a time", holder)
	if err := w.note(ctx, id, remediator.EventWaiting, reason); err != nil {
		return err
	}
	return remediator.RetryLater(w.Locks.TTL()/3, "%s", reason)
}

// heldLock is a cluster lock this run holds, refreshed in the background.
type heldLock struct {
	w               *Worker
	cluster, holder string
	done            chan struct{}
	mu              sync.Mutex
	lost            error
	// cut is called when the lock is lost, to cut the running step short.
	cut func()
}

// onLoss has cut called if the lock is lost before the returned stop is called.
func (l *heldLock) onLoss(cut func()) (stop func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		cut()
	}
	l.cut = cut
	return func() {
		l.mu.Lock()
		l.cut = nil
		l.mu.Unlock()
	}
}

// holdLock keeps the cluster lock refreshed until release. Two refreshes that fail in a row
// mean the lock may expire before the next (a third of the TTL later): the lock counts as
// lost before another worker can take it. No step starts after that (check), and the step
// running is cut short, unless it outlives its context, when its fence keeps a new holder
// waiting until its deadline.
func (w *Worker) holdLock(ctx context.Context, log *slog.Logger, cluster, holder string) *heldLock {
	l := &heldLock{w: w, cluster: cluster, holder: holder, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(w.Locks.TTL() / 3)
		defer t.Stop()
		failures := 0
		for {
			select {
			case <-l.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				err := w.Locks.Refresh(ctx, cluster, holder)
				if err == nil {
					failures = 0
					continue
				}
				if failures++; failures < 2 && remediator.ErrorCode(err) != remediator.ECONFLICT {
					log.Warn("cannot refresh the cluster lock; trying again", "err", err)
					continue
				}
				log.Error("lost the cluster lock; no step starts after the one running", "err", err)
				l.mu.Lock()
				l.lost = err
				if l.cut != nil {
					l.cut()
				}
				l.mu.Unlock()
				return
			}
		}
	}()
	return l
}

// check says whether the lock is still held.
func (l *heldLock) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// fence records the step about to run and its deadline.
func (l *heldLock) fence(ctx context.Context, step string, deadline time.Time) error {
	return l.w.Locks.Fence(ctx, l.cluster, l.holder, step, deadline)
}

// unfence records that the step is over.
func (l *heldLock) unfence(ctx context.Context) error {
	return l.w.Locks.Unfence(ctx, l.cluster, l.holder)
}

// release stops refreshing the lock and gives it up.
func (l *heldLock) release(ctx context.Context) {
	close(l.done)
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	if err := l.w.Locks.Release(rctx, l.cluster, l.holder); err != nil {
		l.w.Log.Warn("releasing the cluster lock failed; it expires by itself", "cluster", l.cluster, "err", err)
	}
}

// lostLock records that the run stopped before a step because its lock was lost, and hands
// the run back to the queue: whoever holds the lock next resumes it.
func (w *Worker) lostLock(ctx context.Context, log *slog.Logger, id, step string, cause error) error {
	reason := fmt.Sprintf("stopped before step %s: this worker lost the cluster lock (%v); the run resumes with the next lock holder", step, cause)
	log.Warn("run stopped: the cluster lock was lost", "step", step, "err", cause)
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	if err := w.note(rctx, id, remediator.EventWaiting, reason); err != nil {
		return err
	}
	return remediator.RetryLater(w.Locks.TTL(), "%s", reason)
}

// samePlan checks that a resumed incident's recorded steps are the plan this version makes.
func samePlan(steps []remediator.Step, plan []remediator.PlannedStep) error {
	names := func() []string {
		n := make([]string, len(plan))
		for i, p := range plan {
			n[i] = p.Name
		}
		return n
	}()
	recorded := make([]string, len(steps))
	for i, s := range steps {
		recorded[i] = s.Name
	}
	if !slices.Equal(names, recorded) {
		return remediator.Errorf(remediator.EPRECONDITION, "the plan changed since the incident started (recorded %v, now %v); not resuming", recorded, names)
	}
	return nil
}

// runStep runs step i and records how it went.
func (w *Worker) runStep(ctx context.Context, log *slog.Logger, lock *heldLock, id string, i int, step remediator.PlannedStep) (*remediator.Incident, error) {
	start := false
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if inc.Cancel != nil {
			inc.CancelSteps()
		}
		if start = inc.Steps[i].Runnable() && !inc.State.Terminal(); start {
			inc.StartStep(i, w.Now())
		}
		return nil
	})
	if err != nil || !start {
		return inc, err
	}
	in := remediator.StepInput{
		Incident: *inc,
		Progress: inc.Steps[i].Progress,
		Log:      log,
		SaveProgress: func(ctx context.Context, progress any) error {
			raw, err := json.Marshal(progress)
			if err != nil {
				return err
			}
			_, err = w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
				inc.Steps[i].Progress = raw
				return nil
			})
			return err
		},
	}
	timeout := cmp.Or(step.Timeout, remediator.DefaultStepTimeout)
	deadline := time.Now().Add(timeout)
	stepCtx, cancelStep := context.WithDeadline(ctx, deadline)
	defer cancelStep()
	stop := lock.onLoss(cancelStep)
	defer stop()
	cut := w.cutOnCancel(stepCtx, id, step, cancelStep)
	defer cut.stop()
	in.Fence = func(ctx context.Context, op string, until time.Time) (func(), error) {
		if err := lock.fence(ctx, step.Name+": "+op, until); err != nil {
			return nil, err
		}
		return func() {
			rctx, cancel := recordCtx(ctx)
			defer cancel()
			if err := lock.unfence(rctx); err != nil {
				log.Warn("cannot clear the fence; the next lock holder waits for its deadline", "op", op, "err", err)
			}
		}, nil
	}
	log.Info("step started", "attempt", inc.Steps[i].Attempts, "risk", step.Risk, "deadline", deadline)
	started := w.Now()
	res, stepErr := step.Attempt(stepCtx, in)
	cancelStep()
	if err := lock.check(); err != nil && stepErr != nil {
		stepErr = remediator.Errorf(remediator.EUNAVAILABLE, "interrupted: this worker lost the cluster lock (%v): %w", err, stepErr)
	}
	if errors.Is(stepErr, context.DeadlineExceeded) && ctx.Err() == nil && !time.Now().Before(deadline) {
		stepErr = remediator.Errorf(remediator.EUNAVAILABLE, "step %s passed its deadline of %s: %w", step.Name, timeout, stepErr)
	}
	took := w.Now().Sub(started)

	o := remediator.ClassifyStep(stepErr, ctx.Err() != nil, inc.Steps[i].Attempts, w.StepAttempts)
	if c := cut.cancelled(); c != nil && stepErr != nil && ctx.Err() == nil {
		o, stepErr = remediator.OutcomeCancelled, fmt.Errorf("cut short: %s", c.Why())
	}
	var retryIn time.Duration
	if o == remediator.OutcomeRetry && w.RetryDelay != nil {
		retryIn = w.RetryDelay(inc.Steps[i].Attempts)
	}
	w.steps.WithLabelValues(inc.Remediation, step.Name, string(o)).Observe(took.Seconds())
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	inc, err = w.Store.Update(rctx, id, func(inc *remediator.Incident) error {
		inc.EndStep(i, o, res, stepErr, w.StepAttempts, w.Now())
		if retryIn > 0 {
			inc.Steps[i].RetryAt = w.Now().Add(retryIn)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if retryIn > 0 {
		// The run comes back when the step's next attempt is due, as recorded.
		log.Warn("step failed; will retry", "took", took, "err", stepErr, "retry_at", inc.Steps[i].RetryAt)
		return inc, remediator.RetryLater(retryIn, "step %s: attempt %d of %d failed (%v); the next starts at %s",
			step.Name, inc.Steps[i].Attempts, w.StepAttempts, stepErr, inc.Steps[i].RetryAt.UTC().Format(time.RFC3339))
	}
	l, args := stepLogs[o], []any{"took", took}
	if stepErr != nil {
		args = append(args, "err", stepErr)
	}
	log.Log(ctx, l.level, l.msg, args...)
	if o == remediator.OutcomeNothingToDo || o == remediator.OutcomeCancelled {
		return inc, nil
	}
	return inc, stepErr
}

// cutter cuts a step short when its incident is cancelled, where that is safe: a read-only
// or low-risk step (a check, a wait, a verification) leaves nothing half done. A higher-risk
// step finishes, and the run stops after it; a clean-up step always finishes.
type cutter struct {
	done chan struct{}
	// seen is the cancel that cut the step, once seen.
	seen atomic.Pointer[remediator.Cancel]
}

func (w *Worker) cutOnCancel(ctx context.Context, id string, step remediator.PlannedStep, cut func()) *cutter {
	c := &cutter{done: make(chan struct{})}
	// A clean-up step runs because of the cancel, or after it: it must finish.
	if step.Always || !remediator.CutShort(step.Risk) {
		return c
	}
	go func() {
		t := time.NewTicker(w.CancelPoll)
		defer t.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				inc, err := w.Store.Get(ctx, id)
				if err == nil && inc.Cancel != nil {
					c.seen.Store(inc.Cancel)
					cut()
					return
				}
			}
		}
	}()
	return c
}

func (c *cutter) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}

// cancelled is the cancel that cut the step short, or nil.
func (c *cutter) cancelled() *remediator.Cancel {
	c.stop()
	return c.seen.Load()
}

// stepLogs says how each outcome of a step attempt is logged.
var stepLogs = map[remediator.Outcome]struct {
	level slog.Level
	msg   string
}{
	remediator.OutcomeSucceeded:   {slog.LevelInfo, "step succeeded"},
	remediator.OutcomeNothingToDo: {slog.LevelInfo, "step found nothing to do; the incident is skipped"},
	remediator.OutcomeInterrupted: {slog.LevelWarn, "step interrupted; it runs again from its saved progress"},
	remediator.OutcomeRetry:       {slog.LevelWarn, "step failed; will retry"},
	remediator.OutcomeFailed:      {slog.LevelError, "step failed; the incident failed"},
	remediator.OutcomeCancelled:   {slog.LevelWarn, "step cut short: the incident was cancelled"},
}

// nothingToDo is why the incident's run stopped short without a failure: a step found nothing
// to do, and the steps after it (but clean-up) were skipped; "" if none was.
func nothingToDo(inc *remediator.Incident) string {
	for _, s := range inc.Steps {
		if s.State == remediator.StepSkipped && !s.Always {
			return strings.TrimPrefix(s.Output, "not run: ")
		}
	}
	return ""
}

// hasFailed says whether a step of the incident failed.
func hasFailed(inc *remediator.Incident) bool {
	return slices.ContainsFunc(inc.Steps, func(s remediator.Step) bool { return s.State == remediator.StepFailed })
}

// fail ends the incident as failed before or between steps (step failures are recorded by
// runStep) and returns the cause.
func (w *Worker) fail(ctx context.Context, log *slog.Logger, id string, cause error) error {
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	inc, err := w.Store.Update(rctx, id, func(inc *remediator.Incident) error {
		inc.SkipPending(cause.Error())
		inc.SetState(remediator.StateFailed, cause.Error(), w.Now())
		return nil
	})
	if err != nil {
		return err
	}
	log.Error("incident failed", "err", cause)
	w.notify(rctx, inc, nil)
	return cause
}
