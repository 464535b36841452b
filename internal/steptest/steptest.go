// Package steptest runs a remediation's planned steps in a test the way the worker does: in
// order, each with the progress it saved, in an incident that records them, and after a
// failure only the clean-up steps.
package steptest

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"

	"github.com/remediator/remediator"
)

// Runner holds a plan and the incident its steps run for.
type Runner struct {
	t    testing.TB
	Plan []remediator.PlannedStep
	// Incident records the steps' progress; set its fields (alerts, params) before running.
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

// Step runs one step by name and records its outcome.
func (r *Runner) Step(name string) (remediator.StepResult, error) {
	r.t.Helper()
	i := slices.IndexFunc(r.Plan, func(p remediator.PlannedStep) bool { return p.Name == name })
	if i < 0 {
		r.t.Fatalf("no step %q", name)
	}
	res, err := r.Plan[i].Run(context.Background(), remediator.StepInput{
		Incident: r.Incident,
		Progress: r.Incident.Steps[i].Progress,
		Log:      slog.New(slog.DiscardHandler),
		SaveProgress: func(_ context.Context, v any) error {
			r.Incident.Steps[i].Progress, _ = json.Marshal(v)
			return nil
		},
	})
	s := &r.Incident.Steps[i]
	s.Output = res.Output
	s.State = remediator.StepSucceeded
	if err != nil {
		s.State, s.Error = remediator.StepFailed, err.Error()
	}
	r.t.Logf("step %s: %v\n%s", name, err, res.Output)
	return res, err
}

// All runs the steps in order; after the first failure it runs only the clean-up steps. It
// returns every step's result, and the first failed step and its error.
func (r *Runner) All() (results map[string]remediator.StepResult, failed string, err error) {
	r.t.Helper()
	results = map[string]remediator.StepResult{}
	for _, p := range r.Plan {
		if failed != "" && !p.Always {
			continue
		}
		res, stepErr := r.Step(p.Name)
		results[p.Name] = res
		if stepErr != nil && failed == "" {
			failed, err = p.Name, stepErr
		}
	}
	return results, failed, err
}
