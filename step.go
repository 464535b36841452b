package remediator

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
)

// Outcome is how a step attempt ended; its value is the metric label.
type Outcome string

// The outcomes of a step attempt.
const (
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeNothingToDo: the step proved there is no problem to act on.
	OutcomeNothingToDo Outcome = "nothing_to_do"
	// OutcomeInterrupted: the attempt was cut short by a shutdown (or a lost ack deadline). It
	// has not failed: it runs again, from its saved progress, wherever the work goes next.
	OutcomeInterrupted Outcome = "interrupted"
	// OutcomeRetry: the attempt failed in a way that may pass, and the step has attempts left.
	OutcomeRetry  Outcome = "retry"
	OutcomeFailed Outcome = "failed"
	// OutcomeCancelled: the attempt was cut short because an operator cancelled the run.
	OutcomeCancelled Outcome = "cancelled"
)

// Attempt runs the step once, turning a panic into an EINTERNAL error so that it is recorded
// like one.
func (p PlannedStep) Attempt(ctx context.Context, in StepInput) (res StepResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Errorf(EINTERNAL, "step panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return p.Run(ctx, in)
}

// Runnable says whether the step is still to run: not started, or started and not finished
// (an interrupted or retried attempt). After a failure or a step that found nothing to do,
// only the clean-up steps are (SkipToCleanup).
func (s Step) Runnable() bool { return s.State == StepPending || s.State == StepRunning }

// StartStep records that an attempt of step i begins.
func (inc *Incident) StartStep(i int, now time.Time) {
	s := &inc.Steps[i]
	s.State = StepRunning
	s.Attempts++
	s.RetryAt = time.Time{}
	if s.StartedAt.IsZero() {
		s.StartedAt = now
	}
	msg := "started"
	if s.Attempts > 1 {
		msg = fmt.Sprintf("attempt %d started", s.Attempts)
	}
	inc.Record(now, EventStepStarted, s.Name, "%s", msg)
}

// ClassifyStep decides how an attempt of a step that has had attempts of maxAttempts ended
// with err; interrupted says whether its context ended.
func ClassifyStep(err error, interrupted bool, attempts, maxAttempts int) Outcome {
	var nothing *NothingToDo
	switch {
	case err == nil:
		return OutcomeSucceeded
	case interrupted:
		return OutcomeInterrupted
	case Retriable(err) && attempts < maxAttempts:
		return OutcomeRetry
	case errors.As(err, &nothing):
		return OutcomeNothingToDo
	}
	return OutcomeFailed
}

// EndStep records how the attempt of step i ended: its output, findings, state and timeline.
// After a failure, or a step that found nothing to do, only the clean-up steps are left to
// run; without any, the incident ends failed or skipped.
func (inc *Incident) EndStep(i int, o Outcome, res StepResult, err error, maxAttempts int, now time.Time) {
	s := &inc.Steps[i]
	s.Output = res.Output
	s.MaxAttempts = maxAttempts
	inc.AddFindings(res)
	switch o {
	case OutcomeSucceeded:
		s.State, s.Error, s.FinishedAt = StepSucceeded, "", now
		inc.Record(now, EventStepSucceeded, s.Name, "succeeded in %s", s.Duration().Round(time.Millisecond))
	case OutcomeInterrupted:
		s.Error = fmt.Sprintf("attempt %d interrupted: %v", s.Attempts, err)
		inc.Record(now, EventStepRetry, s.Name, "attempt %d interrupted (%v); it runs again from its saved progress", s.Attempts, err)
	case OutcomeRetry:
		s.Error = fmt.Sprintf("attempt %d: %v", s.Attempts, err)
		inc.Record(now, EventStepRetry, s.Name, "attempt %d failed and will be retried: %v", s.Attempts, err)
	case OutcomeCancelled:
		s.State, s.Error, s.FinishedAt = StepSkipped, "", now
		s.Output = strings.TrimSpace(s.Output + "\n" + err.Error())
		inc.Record(now, EventStepSkipped, s.Name, "attempt %d %v", s.Attempts, err)
		inc.CancelSteps()
	case OutcomeNothingToDo:
		// The step did its job: it proved there is no problem to act on.
		var nothing *NothingToDo
		errors.As(err, &nothing)
		s.State, s.Error, s.FinishedAt = StepSucceeded, "", now
		inc.Record(now, EventStepSucceeded, s.Name, "%v", nothing)
		if cleanup := inc.SkipToCleanup(nothing.Error()); len(cleanup) > 0 {
			inc.Record(now, EventNotice, "", "running the clean-up steps %s before the incident ends skipped", strings.Join(cleanup, ", "))
		} else {
			inc.SetState(StateSkipped, nothing.Error(), now)
		}
	default:
		s.State, s.Error, s.FinishedAt = StepFailed, err.Error(), now
		inc.Record(now, EventStepFailed, s.Name, "failed: %v", err)
		reason := fmt.Sprintf("step %s failed: %v", s.Name, err)
		if Retriable(err) {
			reason = fmt.Sprintf("step %s failed on its last attempt (%d of %d): %v", s.Name, s.Attempts, maxAttempts, err)
			s.Error = reason
		}
		if cleanup := inc.SkipToCleanup(fmt.Sprintf("step %s failed", s.Name)); len(cleanup) > 0 {
			inc.Record(now, EventNotice, "", "running the clean-up steps %s before the incident fails", strings.Join(cleanup, ", "))
		} else {
			inc.SetState(StateFailed, reason, now)
		}
	}
}

// SkipPending marks the steps not run yet as skipped, and why.
func (inc *Incident) SkipPending(why string) { inc.skipSteps(why, false) }

// SkipToCleanup marks the steps not run yet as skipped, but the clean-up steps (Always), whose
// names it returns: they run even after a failure.
func (inc *Incident) SkipToCleanup(why string) []string { return inc.skipSteps(why, true) }

func (inc *Incident) skipSteps(why string, keepCleanup bool) (cleanup []string) {
	for j := range inc.Steps {
		s := &inc.Steps[j]
		switch {
		case s.State != StepPending:
		case s.Always && keepCleanup:
			cleanup = append(cleanup, s.Name)
		default:
			s.State = StepSkipped
			s.Output = "not run: " + why
		}
	}
	return cleanup
}
