// Package steptest runs a remediation's planned steps in a test with the executor's own step
// functions (Incident.StartStep, PlannedStep.Attempt, ClassifyStep, Incident.EndStep and
// Step.Runnable): in order, each with the progress it saved, in an incident that records them
// and the figures before and after, a retriable error tried again, and after a failure, or a
// step that found nothing to do, only the clean-up steps. What it leaves out is the queue, the
// store and the cluster lock.
package steptest

import (
	"context"
	"encoding/json"
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

// Step runs one attempt of a step by name, whatever its state, and records its outcome as
// the executor does. A step that returns a *remediator.NothingToDo is recorded as succeeded,
// and the error is returned for the test to see.
func (r *Runner) Step(name string) (remediator.StepResult, error) {
	r.t.Helper()
	_, res, err := r.attempt(r.Index(name))
	return res, err
}

func (r *Runner) attempt(i int) (remediator.Outcome, remediator.StepResult, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	start := time.Now()
	r.Incident.StartStep(i, start)
	res, err := r.Plan[i].Attempt(ctx, remediator.StepInput{
		Incident: r.Incident,
		Progress: r.Incident.Steps[i].Progress,
		Log:      slog.New(slog.DiscardHandler),
		SaveProgress: func(_ context.Context, v any) error {
			raw, err := json.Marshal(v)
			r.Incident.Steps[i].Progress = raw
			return err
		},
	})
	// No service shuts down under a test, so no attempt counts as interrupted: a step past its
	// timeout is classified by its error, as the worker does once the step's own deadline passed.
	o := remediator.ClassifyStep(err, false, r.Incident.Steps[i].Attempts, attempts)
	r.Incident.EndStep(i, o, res, err, attempts, time.Now())
	r.t.Logf("step %s (%s, %s): %v\n%s", r.Plan[i].Name, o, time.Since(start).Round(time.Millisecond), err, res.Output)
	return o, res, err
}

// Output is what the named step said when it last ran.
func (r *Runner) Output(name string) string {
	r.t.Helper()
	return r.Incident.Steps[r.Index(name)].Output
}

// Until runs the steps still to run (Step.Runnable), in order, up to and including the named
// one; a retriable error is tried again after a pause, up to the attempts. After the first
// failure, or a step that found nothing to do, the executor's EndStep leaves only the clean-up
// steps to run. It returns the results of the steps it ran, and the first step that failed or
// found nothing to do and its error (a *remediator.NothingToDo for the latter).
func (r *Runner) Until(last string) (results map[string]remediator.StepResult, failed string, err error) {
	r.t.Helper()
	results = map[string]remediator.StepResult{}
	for i, p := range r.Plan {
		if !r.Incident.Steps[i].Runnable() {
			continue
		}
		o, res, stepErr := r.attempt(i)
		for o == remediator.OutcomeRetry {
			time.Sleep(retryPause) // the queue's backoff, not a wait for something to happen
			o, res, stepErr = r.attempt(i)
		}
		results[p.Name] = res
		if stepErr != nil && failed == "" {
			failed, err = p.Name, stepErr
		}
		if p.Name == last && failed == "" {
			break
		}
	}
	return results, failed, err
}

// All runs every step not run yet, as Until does.
func (r *Runner) All() (map[string]remediator.StepResult, string, error) {
	r.t.Helper()
	return r.Until("")
}
