package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/remediator/remediator"
)

// Execute runs (or resumes) the remediation of the incident named by a run message. Steps
// that succeeded are not run again; a step that was interrupted runs again from the progress
// it saved. A step error that may pass is recorded and returned for the queue to retry, until
// the step has had its attempts; any other failure ends the incident as failed.
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
	if inc.State.Terminal() || inc.State == remediator.StateAwaitingApproval {
		return nil
	}
	plan, err := w.Remediations.Plan(inc.Remediation, inc.Params)
	if err != nil {
		return w.fail(ctx, log, inc.ID, err)
	}
	if inc.State == remediator.StatePending {
		if inc, err = w.start(ctx, log, inc.ID, plan); err != nil {
			return err
		}
		if inc.State != remediator.StateRunning {
			return nil
		}
	}
	if err := samePlan(inc.Steps, plan); err != nil {
		return w.fail(ctx, log, inc.ID, err)
	}
	for i, step := range plan {
		if s := inc.Steps[i].State; s == remediator.StepSucceeded || s == remediator.StepSkipped {
			continue
		}
		if inc, err = w.runStep(ctx, log.With("step", step.Name), inc.ID, i, step); err != nil {
			return err
		}
	}
	inc, err = w.Store.Update(ctx, inc.ID, func(inc *remediator.Incident) error {
		inc.SetState(remediator.StateSucceeded, "", w.Now())
		return nil
	})
	if err == nil {
		log.Info("remediation succeeded", "time_to_recovery", inc.TimeToRecovery())
	}
	return err
}

// start records the plan and moves a pending incident on as its mode says.
func (w *Worker) start(ctx context.Context, log *slog.Logger, id string, plan []remediator.PlannedStep) (*remediator.Incident, error) {
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		if inc.State != remediator.StatePending {
			return nil // another delivery got here first
		}
		now := w.Now()
		inc.Steps = make([]remediator.Step, len(plan))
		for i, p := range plan {
			inc.Steps[i] = remediator.Step{Name: p.Name, Description: p.Description, Risk: p.Risk, State: remediator.StepPending}
		}
		switch inc.Mode {
		case remediator.ModeDryRun:
			for i := range inc.Steps {
				inc.Steps[i].State = remediator.StepSkipped
				inc.Steps[i].Output = "dry-run: planned, not run"
			}
			inc.SetState(remediator.StateSkipped, fmt.Sprintf("dry-run: policy %q plans this remediation and runs none of it", inc.Policy), now)
		case remediator.ModeApprove:
			inc.SetState(remediator.StateAwaitingApproval, fmt.Sprintf("policy %q requires approval before the remediation runs", inc.Policy), now)
		default:
			inc.SetState(remediator.StateRunning, "", now)
		}
		return nil
	})
	if err == nil {
		log.Info("incident moved on", "state", inc.State, "mode", inc.Mode)
	}
	return inc, err
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
func (w *Worker) runStep(ctx context.Context, log *slog.Logger, id string, i int, step remediator.PlannedStep) (*remediator.Incident, error) {
	inc, err := w.Store.Update(ctx, id, func(inc *remediator.Incident) error {
		s := &inc.Steps[i]
		s.State = remediator.StepRunning
		s.Attempts++
		if s.StartedAt.IsZero() {
			s.StartedAt = w.Now()
		}
		msg := "started"
		if s.Attempts > 1 {
			msg = fmt.Sprintf("attempt %d started", s.Attempts)
		}
		inc.Record(w.Now(), remediator.EventStepStarted, s.Name, "%s", msg)
		return nil
	})
	if err != nil {
		return nil, err
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
	log.Info("step started", "attempt", inc.Steps[i].Attempts, "risk", step.Risk)
	started := w.Now()
	res, stepErr := safeRun(ctx, step.Run, in)
	took := w.Now().Sub(started)

	// A step cut short by a shutdown (or a lost ack deadline) has not failed: it runs again,
	// from its saved progress, wherever the message goes next.
	interrupted := stepErr != nil && ctx.Err() != nil
	retry := stepErr != nil && remediator.Retriable(stepErr) && inc.Steps[i].Attempts < w.StepAttempts
	outcome := "succeeded"
	switch {
	case interrupted:
		outcome = "interrupted"
	case retry:
		outcome = "retry"
	case stepErr != nil:
		outcome = "failed"
	}
	w.steps.WithLabelValues(inc.Remediation, step.Name, outcome).Observe(took.Seconds())

	rctx, cancel := recordCtx(ctx)
	defer cancel()
	inc, err = w.Store.Update(rctx, id, func(inc *remediator.Incident) error {
		now := w.Now()
		s := &inc.Steps[i]
		s.Output = res.Output
		if res.Before != nil {
			inc.Before = res.Before
		}
		if res.After != nil {
			inc.After = res.After
		}
		switch {
		case stepErr == nil:
			s.State, s.Error, s.FinishedAt = remediator.StepSucceeded, "", now
			inc.Record(now, remediator.EventStepSucceeded, s.Name, "succeeded in %s", s.Duration().Round(time.Millisecond))
		case interrupted:
			s.Error = fmt.Sprintf("attempt %d interrupted: %v", s.Attempts, stepErr)
			inc.Record(now, remediator.EventStepRetry, s.Name, "attempt %d interrupted (%v); it runs again from its saved progress", s.Attempts, stepErr)
		case retry:
			s.Error = fmt.Sprintf("attempt %d: %v", s.Attempts, stepErr)
			inc.Record(now, remediator.EventStepRetry, s.Name, "attempt %d failed and will be retried: %v", s.Attempts, stepErr)
		default:
			s.State, s.Error, s.FinishedAt = remediator.StepFailed, stepErr.Error(), now
			inc.Record(now, remediator.EventStepFailed, s.Name, "failed: %v", stepErr)
			skipRest(inc, i)
			reason := fmt.Sprintf("step %s failed: %v", s.Name, stepErr)
			if remediator.Retriable(stepErr) {
				reason = fmt.Sprintf("step %s failed on its last attempt (%d of %d): %v", s.Name, s.Attempts, w.StepAttempts, stepErr)
			}
			inc.SetState(remediator.StateFailed, reason, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case stepErr == nil:
		log.Info("step succeeded", "took", took)
	case interrupted:
		log.Warn("step interrupted; it runs again from its saved progress", "took", took, "err", stepErr)
	case retry:
		log.Warn("step failed; will retry", "took", took, "err", stepErr)
	default:
		log.Error("step failed; the incident failed", "took", took, "err", stepErr)
	}
	return inc, stepErr
}

// skipRest marks the steps after i as not run.
func skipRest(inc *remediator.Incident, i int) {
	for j := i + 1; j < len(inc.Steps); j++ {
		if inc.Steps[j].State == remediator.StepPending {
			inc.Steps[j].State = remediator.StepSkipped
			inc.Steps[j].Output = fmt.Sprintf("not run: step %s failed", inc.Steps[i].Name)
		}
	}
}

// fail ends the incident as failed before or between steps (step failures are recorded by
// runStep) and returns the cause.
func (w *Worker) fail(ctx context.Context, log *slog.Logger, id string, cause error) error {
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	if _, err := w.Store.Update(rctx, id, func(inc *remediator.Incident) error {
		inc.SetState(remediator.StateFailed, cause.Error(), w.Now())
		return nil
	}); err != nil {
		return err
	}
	log.Error("incident failed", "err", cause)
	return cause
}

// safeRun runs a step, turning a panic into an error so that it is recorded like one.
func safeRun(ctx context.Context, run remediator.StepFunc, in remediator.StepInput) (res remediator.StepResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = remediator.Errorf(remediator.EINTERNAL, "step panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return run(ctx, in)
}
