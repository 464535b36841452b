// Package steptest runs a remediation's planned steps in a test the way the worker does: in
// order, each with the progress it saved, in an incident that records them and the figures
// before and after, and after a failure, or a step that found nothing to do, only the
// clean-up steps.
package steptest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// stepTimeout bounds one step, so that a hung step fails its test instead of the whole run.
const stepTimeout = 5 * time.Minute

// attempts and retryPause are how Until tries a step again whose error is retriable: like
// the worker (its first backoff is 2s), if not as long.
const (
	attempts   = 3
	retryPause = 2 * time.Second
)

// Runner holds a plan and the incident its steps run for.
type Runner struct {
	t testing.TB
	// Plan is the remediation's plan for the runner's parameters.
	Plan []remediator.PlannedStep
	// Incident records the steps' progress and outcome; set its evidence before running.
	Incident remediator.Incident
}

// New plans with params and returns a runner for the incident "test-incident" of cluster.
func New(t testing.TB, plan func(map[string]string) ([]remediator.PlannedStep, error), cluster string, params map[string]string) *Runner {
	t.Helper()
	steps, err := plan(params)
	if err != nil {
		t.Fatal(err)
	}
	inc := remediator.Incident{ID: "test-incident", Cluster: cluster, Params: params}
	for _, p := range steps {
		inc.Steps = append(inc.Steps, remediator.Step{Name: p.Name, Risk: p.Risk, Always: p.Always, State: remediator.StepPending})
	}
	return &Runner{t: t, Plan: steps, Incident: inc}
}

// Index is the position of the named step in the plan.
func (r *Runner) Index(name string) int {
	r.t.Helper()
	i := slices.IndexFunc(r.Plan, func(p remediator.PlannedStep) bool { return p.Name == name })
	if i < 0 {
		r.t.Fatalf("no step %q", name)
	}
	return i
}

// Step runs one step by name, whatever its state, and records its outcome. As the worker
// does, a step that returns a *remediator.NothingToDo is recorded as succeeded, and the
// error is returned for the test to see.
func (r *Runner) Step(name string) (remediator.StepResult, error) {
	r.t.Helper()
	i := r.Index(name)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	start := time.Now()
	res, err := r.Plan[i].Run(ctx, remediator.StepInput{
		Incident: r.Incident,
		Progress: r.Incident.Steps[i].Progress,
		Log:      slog.New(slog.DiscardHandler),
		SaveProgress: func(_ context.Context, v any) error {
			r.Incident.Steps[i].Progress, _ = json.Marshal(v)
			return nil
		},
	})
	s := &r.Incident.Steps[i]
	s.Output, s.State, s.Error = res.Output, remediator.StepSucceeded, ""
	var nothing *remediator.NothingToDo
	if err != nil && !errors.As(err, &nothing) {
		s.State, s.Error = remediator.StepFailed, err.Error()
	}
	r.Incident.AddFindings(res)
	r.t.Logf("step %s (%s): %v\n%s", name, time.Since(start).Round(time.Millisecond), err, res.Output)
	return res, err
}

// Output is what the named step said when it last ran.
func (r *Runner) Output(name string) string {
	r.t.Helper()
	return r.Incident.Steps[r.Index(name)].Output
}

// Until runs the steps not run yet, in order, up to and including the named one; after the
// first failure only the clean-up steps. A step that finds nothing to do stops the run the
// same way, except that, as the worker does, the steps it leaves out are marked skipped. It
// returns the results of the steps it ran, and the first step that failed or found nothing to
// do and its error (a *remediator.NothingToDo for the latter).
func (r *Runner) Until(last string) (results map[string]remediator.StepResult, failed string, err error) {
	r.t.Helper()
	results = map[string]remediator.StepResult{}
	for i, p := range r.Plan {
		if r.Incident.Steps[i].State != remediator.StepPending || failed != "" && !p.Always {
			continue
		}
		res, stepErr := r.Step(p.Name)
		// As the worker does: a step whose failure may pass (etcd's client still backing off
		// from a member that just restarted) is tried again after a pause.
		for attempt := 2; stepErr != nil && remediator.Retriable(stepErr) && attempt <= attempts; attempt++ {
			time.Sleep(retryPause)
			res, stepErr = r.Step(p.Name)
		}
		results[p.Name] = res
		if stepErr != nil && failed == "" {
			failed, err = p.Name, stepErr
			var nothing *remediator.NothingToDo
			if errors.As(stepErr, &nothing) {
				r.skipToCleanup(i, nothing)
			}
		}
		if p.Name == last && failed == "" {
			break
		}
	}
	return results, failed, err
}

// skipToCleanup marks the pending steps after step i skipped, but the clean-up steps, as the
// worker does after a step that found nothing to do.
func (r *Runner) skipToCleanup(i int, nothing *remediator.NothingToDo) {
	for j := i + 1; j < len(r.Incident.Steps); j++ {
		if s := &r.Incident.Steps[j]; s.State == remediator.StepPending && !s.Always {
			s.State, s.Output = remediator.StepSkipped, "not run: "+nothing.Error()
		}
	}
}

// All runs every step not run yet, as Until does.
func (r *Runner) All() (map[string]remediator.StepResult, string, error) {
	r.t.Helper()
	return r.Until("")
}
