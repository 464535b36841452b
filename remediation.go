package remediator

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Risk is how much a step can hurt if it goes wrong; approval gates are set by it.
type Risk string

// The risk levels, from harmless to irreversible.
const (
	// RiskReadOnly steps change nothing in the cluster.
	RiskReadOnly Risk = "read-only"
	// RiskLow steps change something that is easily undone.
	RiskLow Risk = "low"
	// RiskHigh steps disturb serving, for example by blocking a member for a while.
	RiskHigh Risk = "high"
	// RiskDestructive steps cannot be undone without the backup.
	RiskDestructive Risk = "destructive"
)

// PlannedStep is one step of a remediation's plan.
type PlannedStep struct {
	Name        string
	Description string
	Risk        Risk
	// Undo says, in a line, how a human undoes the step or that nothing can ("irreversible:
	// ..."), for whoever is asked to approve it; every high or destructive step says it.
	Undo string
	// Always marks a clean-up step, such as turning a suspended probe back on: it runs even
	// after an earlier step failed, and the incident still fails.
	Always bool
	// Timeout bounds one attempt (DefaultStepTimeout if zero): the step's context ends then,
	// and when the worker loses its cluster lock.
	Timeout time.Duration
	Run     StepFunc
}

// DefaultStepTimeout bounds a step attempt that names no timeout of its own.
const DefaultStepTimeout = 15 * time.Minute

// StepFunc runs one step. A step must be safe to run again after an interruption: it saves
// its progress as it goes and resumes from it. Its error's code says whether retrying makes
// sense (see Retriable).
type StepFunc func(ctx context.Context, in StepInput) (StepResult, error)

// StepInput is what a running step gets.
type StepInput struct {
	// Incident is a copy of the incident the step runs for; changing it changes nothing.
	Incident Incident
	// Progress is what an earlier, interrupted attempt of this step saved, or nil.
	Progress json.RawMessage
	// SaveProgress persists the step's progress so far before it goes on.
	SaveProgress func(ctx context.Context, progress any) error
	// Fence records, before an operation that goes on where it was sent even if this process
	// stops (a defragmentation runs to its end on the etcd server), what it is and its
	// deadline: no other worker starts a step on the cluster before it passes, or done is
	// called. Nil outside a worker.
	Fence func(ctx context.Context, op string, deadline time.Time) (done func(), err error)
	Log   *slog.Logger
}

// StepResult is what a finished step reports.
type StepResult struct {
	// Output says what the step saw and did, in a few lines for the operator.
	Output string
	// Before and After, when set, are the member figures the report compares.
	Before []MemberStatus
	After  []MemberStatus
	// RootCause is what the step found to be the cause of the incident, when it could tell.
	RootCause string
	// FollowUps are what the step leaves to humans, such as moving etcd to a faster disk.
	FollowUps []string
}

// Progress reads what an interrupted attempt of the running step saved; ok is false when it
// saved nothing. A record that does not decode is an EPRECONDITION error that the step must
// return: a resumed destructive step that read it as "start over" would repeat what it did.
func Progress[T any](in StepInput) (v T, ok bool, err error) {
	return decodeProgress[T](in.Progress, "this step")
}

// Findings reads what the named earlier step of the incident saved; ok is false when it saved
// nothing (or did not run). A record that does not decode is an EPRECONDITION error.
func Findings[T any](inc Incident, step string) (v T, ok bool, err error) {
	for _, s := range inc.Steps {
		if s.Name == step {
			return decodeProgress[T](s.Progress, "step "+step)
		}
	}
	return v, false, nil
}

func decodeProgress[T any](raw json.RawMessage, whose string) (v T, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, Errorf(EPRECONDITION, "the progress %s saved is unreadable (%v): not acting on a guess of how far it came", whose, err)
	}
	return v, true, nil
}
