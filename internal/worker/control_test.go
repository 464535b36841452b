package worker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/polltest"
)

// blocking is a step that signals when it starts and returns when released, or when its
// context ends (with its error).
type blocking struct{ started, release chan struct{} }

func newBlocking() *blocking {
	return &blocking{started: make(chan struct{}, 10), release: make(chan struct{})}
}

func (b *blocking) run(ctx context.Context, _ remediator.StepInput) (remediator.StepResult, error) {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return remediator.StepResult{Output: "finished"}, nil
	case <-ctx.Done():
		return remediator.StepResult{Output: "waited"}, ctx.Err()
	}
}

// executeAsync runs the incident in the background and returns its result when it ends.
func (f *fixture) executeAsync(t *testing.T, id string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f.execute(t, id) }()
	return done
}

func waitStarted(t *testing.T, b *blocking) {
	t.Helper()
	select {
	case <-b.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the step never started")
	}
}

func stepStates(inc *remediator.Incident) []string {
	out := make([]string, len(inc.Steps))
	for i, s := range inc.Steps {
		out[i] = s.Name + "=" + string(s.State)
	}
	return out
}

// A cancel during a step that changes things lets it finish, then stops: the steps after it
// never run, the clean-up step does, and the incident ends cancelled saying who and why.
func TestCancelStopsTheRunAfterTheStepInFlightAndRunsTheCleanup(t *testing.T) {
	slow := newBlocking()
	f := newFixture(t,
		remediator.PlannedStep{Name: "check", Risk: remediator.RiskReadOnly, Run: ok("healthy")},
		remediator.PlannedStep{Name: "defrag", Risk: remediator.RiskHigh, Run: slow.run},
		remediator.PlannedStep{Name: "disarm", Risk: remediator.RiskLow, Run: ok("disarmed")},
		remediator.PlannedStep{Name: "restore-probe", Risk: remediator.RiskLow, Always: true, Run: ok("restored")},
	)
	f.w.CancelPoll = 20 * time.Millisecond
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	done := f.executeAsync(t, id)
	waitStarted(t, slow)

	inc, err := f.w.Cancel(context.Background(), id, "carol", "wrong cluster")
	if err != nil {
		t.Fatal(err)
	}
	if inc.State != remediator.StateRunning || inc.Cancel == nil {
		t.Fatalf("after the cancel request: %s, cancel %+v; want running with the request recorded", inc.State, inc.Cancel)
	}
	// The high-risk step is not cut: it is still running well after the cancel was seen.
	time.Sleep(200 * time.Millisecond) // ten cancel polls: long enough to have cut it, were it cut
	select {
	case err := <-done:
		t.Fatalf("the run ended while its high-risk step ran: %v", err)
	default:
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	inc = f.only(t)
	want := []string{"check=succeeded", "defrag=succeeded", "disarm=skipped", "restore-probe=succeeded"}
	if inc.State != remediator.StateCancelled || inc.Reason != "cancelled by carol: wrong cluster" || !slices.Equal(stepStates(inc), want) {
		t.Errorf("incident %s (%q), steps %v; want cancelled by carol: wrong cluster, steps %v", inc.State, inc.Reason, stepStates(inc), want)
	}
	if got := inc.Steps[2].Output; got != "not run: cancelled by carol: wrong cluster" {
		t.Errorf("the skipped step says %q", got)
	}
	if f.rem.ran("disarm") != 0 || f.rem.ran("restore-probe") != 1 {
		t.Errorf("disarm ran %d times, restore-probe %d; want 0 and 1", f.rem.ran("disarm"), f.rem.ran("restore-probe"))
	}
}

// A read-only or low-risk step in flight (a wait for health, say) is cut short by a cancel.
func TestCancelCutsAReadOnlyStepShort(t *testing.T) {
	wait := newBlocking()
	f := newFixture(t,
		remediator.PlannedStep{Name: "wait-healthy", Risk: remediator.RiskReadOnly, Run: wait.run},
		remediator.PlannedStep{Name: "compact", Risk: remediator.RiskHigh, Run: ok("")},
		remediator.PlannedStep{Name: "cleanup", Risk: remediator.RiskLow, Always: true, Run: ok("cleaned")},
	)
	f.w.CancelPoll = 20 * time.Millisecond
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	done := f.executeAsync(t, id)
	waitStarted(t, wait)
	if _, err := f.w.Cancel(context.Background(), id, "carol", "etcd is being upgraded by hand"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read-only step was not cut short")
	}
	inc := f.only(t)
	want := []string{"wait-healthy=skipped", "compact=skipped", "cleanup=succeeded"}
	if inc.State != remediator.StateCancelled || !slices.Equal(stepStates(inc), want) {
		t.Errorf("incident %s, steps %v; want cancelled, %v", inc.State, stepStates(inc), want)
	}
	if got, want := inc.Steps[0].Output, "waited\ncut short: cancelled by carol: etcd is being upgraded by hand"; got != want {
		t.Errorf("the cut step says %q, want %q", got, want)
	}
	if f.rem.ran("compact") != 0 {
		t.Error("the step after the cancel ran")
	}
}

// A step waiting for its retry (the queue holds the run until then) is cancelled without
// waiting for it: the cancel enqueues a run of its own, which ends the incident.
func TestCancelOfAStepWaitingForItsRetry(t *testing.T) {
	f := newFixture(t,
		remediator.PlannedStep{Name: "status", Risk: remediator.RiskReadOnly, Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
			return remediator.StepResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "127.0.0.1:2379: connection refused")
		}},
		remediator.PlannedStep{Name: "cleanup", Risk: remediator.RiskLow, Always: true, Run: ok("")},
	)
	f.w.RetryDelay = func(attempts int) time.Duration { return time.Duration(attempts) * time.Hour }
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	before := time.Now()
	err := f.execute(t, id)
	var later *remediator.Later
	if !errors.As(err, &later) || later.After != time.Hour {
		t.Fatalf("the failed attempt returned %v, want the run back in an hour", err)
	}
	inc := f.only(t)
	s := inc.Steps[0]
	if s.State != remediator.StepRunning || s.Attempts != 1 || s.MaxAttempts != DefaultStepAttempts || s.RetryAt.Before(before.Add(time.Hour)) ||
		s.Error != "attempt 1: 127.0.0.1:2379: connection refused" {
		t.Fatalf("the waiting step: %s, attempt %d of %d, retry at %s, error %q", s.State, s.Attempts, s.MaxAttempts, s.RetryAt, s.Error)
	}
	if _, err := f.w.Cancel(context.Background(), id, "carol", "the node is gone"); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, id); err != nil { // the run the cancel enqueued
		t.Fatal(err)
	}
	inc = f.only(t)
	if want := []string{"status=skipped", "cleanup=succeeded"}; inc.State != remediator.StateCancelled || !slices.Equal(stepStates(inc), want) {
		t.Errorf("incident %s, steps %v; want cancelled, %v", inc.State, stepStates(inc), want)
	}
	if got := inc.Steps[0].Output; got != "not run again: cancelled by carol: the node is gone" {
		t.Errorf("the step says %q", got)
	}
}

// An incident whose run changed nothing yet (waiting for approval before its first step)
// ends cancelled at once, and an approval after it counts for nothing.
func TestCancelBeforeAnyStepEndsTheIncidentAtOnce(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: ok("")})
	f.correlate(t, alert("a1", "prod", "firing", "mode", "approve"))
	id := f.only(t).ID
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc, err := f.w.Cancel(context.Background(), id, "carol", "false alarm")
	if err != nil {
		t.Fatal(err)
	}
	if inc.State != remediator.StateCancelled || inc.Reason != "cancelled by carol: false alarm" || inc.Steps[0].State != remediator.StepSkipped {
		t.Fatalf("incident %s (%q), step %s; want cancelled at once", inc.State, inc.Reason, inc.Steps[0].State)
	}
	_, err = f.w.Answer(context.Background(), remediator.Answer{Incident: id, By: "bob", Via: remediator.ViaAPI, Approve: true})
	if remediator.ErrorCode(err) != remediator.EREFUSED || f.rem.ran("touch") != 0 {
		t.Errorf("an approval after the cancel: %v, and the step ran %d times; want refused, never run", err, f.rem.ran("touch"))
	}
}

func TestCancelRefusals(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	_, err := f.w.Cancel(context.Background(), id, "carol", " ")
	if want := `say why the run is cancelled (--reason TEXT, "reason" in the API): it goes in the incident's timeline`; err == nil || err.Error() != want {
		t.Errorf("a cancel without a reason: %v, want %q", err, want)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.w.Cancel(context.Background(), id, "carol", "late")
	if want := "incident " + id + " is succeeded already: there is no run to cancel"; remediator.ErrorCode(err) != remediator.EREFUSED || err.Error() != want {
		t.Errorf("a cancel of a finished incident: %v, want %q", err, want)
	}
	_, err = f.w.Cancel(context.Background(), "20261207-000000-ffffff", "carol", "x")
	if remediator.ErrorCode(err) != remediator.ENOTFOUND {
		t.Errorf("a cancel of no incident: %v, want not found", err)
	}
}

const retryPolicies = `policies:
  - name: auto-cooldown
    match: labels.alertname == "TestAlert" && !has(labels.mode)
    remediation: test-remediation
    mode: auto
    cooldown: 1h
  - name: approve
    match: has(labels.mode) && labels.mode == "approve"
    remediation: test-remediation
    mode: approve
    approval:
      users: [bob]
`

// A failed incident retried runs again from its failed step, as attempt 2, and its own first
// attempt does not count against its cooldown ("the problem came back"): the problem never
// went away.
func TestRetryRunsAgainFromTheFirstStepThatDidNotSucceed(t *testing.T) {
	broken := true
	f := newFixtureWith(t, retryPolicies,
		remediator.PlannedStep{Name: "snapshot", Risk: remediator.RiskLow, Run: ok("saved")},
		remediator.PlannedStep{Name: "compact", Risk: remediator.RiskHigh, Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
			if broken {
				return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "the policy's revision margin is wrong")
			}
			return remediator.StepResult{Output: "compacted"}, nil
		}},
		remediator.PlannedStep{Name: "verify", Risk: remediator.RiskReadOnly, Run: ok("healthy")},
	)
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	if err := f.execute(t, id); err == nil {
		t.Fatal("the broken run succeeded")
	}
	if inc := f.only(t); inc.State != remediator.StateFailed {
		t.Fatalf("incident %s, want failed", inc.State)
	}
	broken = false
	inc, err := f.w.Retry(context.Background(), id, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if inc.State != remediator.StatePending || inc.Attempt != 2 || inc.Reason != "retry by carol: attempt 2, from step compact" {
		t.Fatalf("after the retry: %s (%q), attempt %d", inc.State, inc.Reason, inc.Attempt)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc = f.only(t)
	if want := []string{"snapshot=succeeded", "compact=succeeded", "verify=succeeded"}; inc.State != remediator.StateSucceeded || !slices.Equal(stepStates(inc), want) {
		t.Errorf("incident %s (%q), steps %v; want succeeded, %v", inc.State, inc.Reason, stepStates(inc), want)
	}
	if f.rem.ran("snapshot") != 1 || f.rem.ran("compact") != 2 {
		t.Errorf("snapshot ran %d times, compact %d; want 1 and 2", f.rem.ran("snapshot"), f.rem.ran("compact"))
	}
	if !slices.ContainsFunc(inc.Timeline, func(e remediator.Event) bool {
		return e.Kind == remediator.EventRetry && e.Message == "retry by carol: attempt 2 runs from step compact"
	}) {
		t.Errorf("no retry in the timeline: %+v", inc.Timeline)
	}
	_, err = f.w.Retry(context.Background(), id, "carol")
	if want := "incident " + id + " is succeeded: only a failed or cancelled incident can be retried"; err == nil || err.Error() != want {
		t.Errorf("a retry of a succeeded incident: %v, want %q", err, want)
	}
}

// A retry goes through the same gates as a first run: where the policy asks for approval, it
// asks again.
func TestRetryAsksForApprovalAgain(t *testing.T) {
	f := newFixtureWith(t, retryPolicies, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: ok("")})
	f.correlate(t, alert("a1", "prod", "firing", "mode", "approve"))
	id := f.only(t).ID
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Cancel(context.Background(), id, "carol", "not now"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Retry(context.Background(), id, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateAwaitingApproval || f.rem.ran("touch") != 0 {
		t.Errorf("the retried incident is %s and its step ran %d times; want awaiting approval, not run", inc.State, f.rem.ran("touch"))
	}
}

// A retry needs the problem's slot: an incident opened for the same cluster and remediation
// since the failure is the one to follow.
func TestRetryRefusedWhileAnotherIncidentIsOpenForTheSameProblem(t *testing.T) {
	f := newFixtureWith(t, retryPolicies, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no")
	}})
	f.correlate(t, alert("a1", "prod", "firing"))
	first := f.only(t).ID
	_ = f.execute(t, first)
	later := time.Now().Add(3 * time.Hour) // past the window in which a new alert rejoins the failed incident
	f.w.Now = func() time.Time { return later }
	a2 := alert("a2", "prod", "firing")
	a2.ReceivedAt = later
	f.correlate(t, a2)
	var second string
	for _, inc := range f.incidents(t) {
		if inc.ID != first {
			second = inc.ID
		}
	}
	if second == "" {
		t.Fatal("no second incident opened")
	}
	_, err := f.w.Retry(context.Background(), first, "carol")
	want := "incident " + second + " is open for test-remediation on cluster prod since: follow that one (remediator show " + second + ")"
	if remediator.ErrorCode(err) != remediator.EREFUSED || err.Error() != want {
		t.Errorf("retry: %v, want %q", err, want)
	}
	if inc, _ := f.q.Incidents.Get(context.Background(), first); inc.State != remediator.StateFailed || inc.Attempt != 0 {
		t.Errorf("the refused retry changed the incident: %s, attempt %d", inc.State, inc.Attempt)
	}
}

// A paused cluster starts no step: its incidents wait, saying who paused it and why, while
// other clusters' run; on resume they go on.
func TestPauseHoldsEveryStepOfAClusterUntilResumed(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: ok("")})
	ctx := context.Background()
	if _, err := f.w.Pause(ctx, "prod", "carol", "etcd upgrade in progress"); err != nil {
		t.Fatal(err)
	}
	f.correlate(t, alert("a1", "prod", "firing"), alert("c1", "canary", "firing"))
	ids := map[string]string{}
	for _, inc := range f.incidents(t) {
		ids[inc.Cluster] = inc.ID
	}
	err := f.execute(t, ids["prod"])
	var later *remediator.Later
	if !errors.As(err, &later) || later.After != DefaultPauseRecheck {
		t.Fatalf("a run on the paused cluster: %v, want it back in %s", err, DefaultPauseRecheck)
	}
	inc, _ := f.q.Incidents.Get(ctx, ids["prod"])
	if inc.State != remediator.StatePending || !strings.HasPrefix(inc.Reason, "paused: carol paused cluster prod at ") ||
		!strings.HasSuffix(inc.Reason, ": etcd upgrade in progress; no step starts until `remediator resume`") || f.rem.ran("touch") != 0 {
		t.Fatalf("on the paused cluster: %s (%q), the step ran %d times", inc.State, inc.Reason, f.rem.ran("touch"))
	}
	if err := f.execute(t, ids["canary"]); err != nil {
		t.Fatal(err)
	}
	if inc, _ := f.q.Incidents.Get(ctx, ids["canary"]); inc.State != remediator.StateSucceeded {
		t.Errorf("another cluster's incident is %s, want succeeded", inc.State)
	}
	if err := f.w.Resume(ctx, "prod", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, ids["prod"]); err != nil {
		t.Fatal(err)
	}
	if inc, _ := f.q.Incidents.Get(ctx, ids["prod"]); inc.State != remediator.StateSucceeded {
		t.Errorf("after resume the incident is %s, want succeeded", inc.State)
	}
	if err := f.w.Resume(ctx, "prod", "carol"); remediator.ErrorCode(err) != remediator.ENOTFOUND || err.Error() != "cluster prod is not paused" {
		t.Errorf("resuming a cluster not paused: %v", err)
	}
}

// A pause of every cluster holds a run between its steps too, clean-up included.
func TestPauseOfEveryClusterHoldsARunBetweenSteps(t *testing.T) {
	first := newBlocking()
	f := newFixture(t,
		remediator.PlannedStep{Name: "first", Risk: remediator.RiskHigh, Run: first.run},
		remediator.PlannedStep{Name: "second", Risk: remediator.RiskHigh, Run: ok("")},
	)
	ctx := context.Background()
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	done := f.executeAsync(t, id)
	waitStarted(t, first)
	p, err := f.w.Pause(ctx, remediator.AllClusters, "carol", "change freeze")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := f.w.Pause(ctx, remediator.AllClusters, "dave", "other"); again.By != p.By || again.Reason != p.Reason || !again.At.Equal(p.At) {
		t.Errorf("a second pause replaced the first: %+v, want %+v", again, p)
	}
	close(first.release)
	var later *remediator.Later
	if err := <-done; !errors.As(err, &later) {
		t.Fatalf("the run after its first step: %v, want it held back", err)
	}
	inc := f.only(t)
	if inc.Steps[0].State != remediator.StepSucceeded || inc.Steps[1].State != remediator.StepPending || !strings.Contains(inc.Reason, "paused every cluster") {
		t.Fatalf("incident %q, steps %v", inc.Reason, stepStates(inc))
	}
	pauses, err := f.w.Paused(ctx)
	if err != nil || len(pauses) != 1 || pauses[0].Cluster != remediator.AllClusters {
		t.Fatalf("pauses %+v, %v", pauses, err)
	}
	if err := f.w.Resume(ctx, remediator.AllClusters, "carol"); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "the run goes on after resume", func() (bool, string) {
		err := f.execute(t, id)
		inc := f.only(t)
		return err == nil && inc.State == remediator.StateSucceeded, string(inc.State)
	})
}

// The clean-up step runs because of the cancel: the cancel never cuts it short, even when it
// waits (restoring one member's probe, then waiting for it to answer, before the next).
func TestCancelNeverCutsTheCleanupShort(t *testing.T) {
	first, cleanup := newBlocking(), newBlocking()
	f := newFixture(t,
		remediator.PlannedStep{Name: "suspend", Risk: remediator.RiskHigh, Run: first.run},
		remediator.PlannedStep{Name: "compact", Risk: remediator.RiskHigh, Run: ok("")},
		remediator.PlannedStep{Name: "restore", Risk: remediator.RiskLow, Always: true, Run: cleanup.run},
	)
	f.w.CancelPoll = 10 * time.Millisecond
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	done := f.executeAsync(t, id)
	waitStarted(t, first)
	if _, err := f.w.Cancel(context.Background(), id, "carol", "stop"); err != nil {
		t.Fatal(err)
	}
	close(first.release)
	waitStarted(t, cleanup)
	time.Sleep(200 * time.Millisecond) // twenty cancel polls: it would have been cut by now
	close(cleanup.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	inc := f.only(t)
	if s := inc.Steps[2]; s.State != remediator.StepSucceeded || s.Output != "finished" || inc.State != remediator.StateCancelled {
		t.Errorf("the clean-up step: %s %q, incident %s; want it finished, the incident cancelled", s.State, s.Output, inc.State)
	}
}

// A higher-risk step that started (a member removed, not yet added back) and was interrupted
// or waits for its retry is not abandoned by a cancel: it finishes from its saved progress,
// and the run stops after it.
func TestCancelLetsAHigherRiskStepThatStartedFinish(t *testing.T) {
	f := newFixture(t,
		remediator.PlannedStep{Name: "replace", Risk: remediator.RiskHigh, Run: func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			if in.Progress == nil {
				if err := in.SaveProgress(ctx, map[string]string{"removed": "m2"}); err != nil {
					return remediator.StepResult{}, err
				}
				return remediator.StepResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "no leader")
			}
			return remediator.StepResult{Output: "added back after " + string(in.Progress)}, nil
		}},
		remediator.PlannedStep{Name: "verify", Risk: remediator.RiskReadOnly, Run: ok("")},
		remediator.PlannedStep{Name: "cleanup", Risk: remediator.RiskLow, Always: true, Run: ok("")},
	)
	f.w.RetryDelay = func(int) time.Duration { return time.Hour }
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	var later *remediator.Later
	if err := f.execute(t, id); !errors.As(err, &later) {
		t.Fatalf("the first attempt: %v, want it back later", err)
	}
	if _, err := f.w.Cancel(context.Background(), id, "carol", "stop"); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc := f.only(t)
	want := []string{"replace=succeeded", "verify=skipped", "cleanup=succeeded"}
	if !slices.Equal(stepStates(inc), want) || inc.Steps[0].Output != `added back after {"removed":"m2"}` || inc.State != remediator.StateCancelled {
		t.Errorf("incident %s, steps %v (%q); want cancelled, %v, the replace finished", inc.State, stepStates(inc), inc.Steps[0].Output, want)
	}
}

// Once a cancel is asked for, the run takes no answer: the approval that would have let a
// riskier step run, or the rejection that would have skipped the clean-up, count for nothing.
func TestARunBeingCancelledTakesNoAnswer(t *testing.T) {
	f := newFixtureWith(t, `policies:
  - name: ask-before-compacting
    match: labels.alertname == "TestAlert"
    remediation: test-remediation
    mode: auto
    approval: {users: [bob], from_risk: destructive}
`,
		remediator.PlannedStep{Name: "suspend", Risk: remediator.RiskHigh, Run: ok("")},
		remediator.PlannedStep{Name: "compact", Risk: remediator.RiskDestructive, Run: ok("")},
		remediator.PlannedStep{Name: "restore", Risk: remediator.RiskLow, Always: true, Run: ok("")},
	)
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateAwaitingApproval {
		t.Fatalf("incident %s, want awaiting approval before compact", inc.State)
	}
	if _, err := f.w.Cancel(context.Background(), id, "carol", "stop"); err != nil {
		t.Fatal(err)
	}
	for _, approve := range []bool{true, false} {
		_, err := f.w.Answer(context.Background(), remediator.Answer{Incident: id, By: "bob", Via: remediator.ViaAPI, Approve: approve})
		if remediator.ErrorCode(err) != remediator.EREFUSED || !strings.Contains(err.Error(), "is being cancelled (cancelled by carol: stop): its clean-up runs, and it takes no answer") {
			t.Errorf("an answer (approve %v) during the cancel: %v", approve, err)
		}
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc := f.only(t)
	if want := []string{"suspend=succeeded", "compact=skipped", "restore=succeeded"}; inc.State != remediator.StateCancelled || !slices.Equal(stepStates(inc), want) || f.rem.ran("compact") != 0 {
		t.Errorf("incident %s, steps %v; want cancelled, %v", inc.State, stepStates(inc), want)
	}

	// The clean-up undid what suspend set up: a retry starts again from suspend, not compact.
	inc, err := f.w.Retry(context.Background(), id, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if inc.Reason != "retry by carol: attempt 2, from step suspend" {
		t.Errorf("the retry: %q, want it from the first step", inc.Reason)
	}
}

// recordingPublisher notes what the worker enqueues, and whether the queue took it as new.
type recordingPublisher struct {
	Publisher
	mu   sync.Mutex
	sent map[string]bool // msgID: taken as a duplicate
}

func (p *recordingPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) (bool, error) {
	dup, err := p.Publisher.Publish(ctx, subject, data, msgID)
	p.mu.Lock()
	p.sent[msgID] = dup
	p.mu.Unlock()
	return dup, err
}

// A retried incident's approval deadline and approved run are new messages, not taken by the
// queue for the first attempt's: else the new request never expires and the approved run
// never runs.
func TestARetriedAttemptsMessagesAreNotTakenForTheFirstOnes(t *testing.T) {
	broken := true
	f := newFixtureWith(t, retryPolicies, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
		if broken {
			return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no")
		}
		return remediator.StepResult{}, nil
	}})
	pub := &recordingPublisher{Publisher: f.w.Publisher, sent: map[string]bool{}}
	f.w.Publisher = pub
	f.correlate(t, alert("a1", "prod", "firing", "mode", "approve"))
	id := f.only(t).ID
	approveAndRun := func() {
		t.Helper()
		if err := f.execute(t, id); err != nil {
			t.Fatal(err)
		}
		if _, err := f.w.Answer(context.Background(), remediator.Answer{Incident: id, By: "bob", Via: remediator.ViaAPI, Approve: true}); err != nil {
			t.Fatal(err)
		}
		_ = f.execute(t, id)
	}
	approveAndRun()
	if inc := f.only(t); inc.State != remediator.StateFailed {
		t.Fatalf("the first attempt: %s", inc.State)
	}
	broken = false
	if _, err := f.w.Retry(context.Background(), id, "carol"); err != nil {
		t.Fatal(err)
	}
	approveAndRun()
	if inc := f.only(t); inc.State != remediator.StateSucceeded {
		t.Errorf("the retried attempt: %s (%q)", inc.State, inc.Reason)
	}
	for _, key := range []string{"expire-" + id + "-touch-a2", "run-" + id + "-approved-touch-a2", "run-" + id + "-retry-2"} {
		if dup, ok := pub.sent[key]; !ok || dup {
			t.Errorf("message %s: sent %v, duplicate %v; want sent once, as new (all sent: %v)", key, ok, dup, pub.sent)
		}
	}
}

// A retry is a run: the incident's own earlier attempts count towards max_attempts, so that
// retrying cannot run a remediation more often than the policy allows without asking.
func TestRetriesCountTowardsMaxAttempts(t *testing.T) {
	f := newFixtureWith(t, `policies:
  - name: once-an-hour
    match: labels.alertname == "TestAlert"
    remediation: test-remediation
    mode: auto
    max_attempts: 1
    approval: {users: [bob], from_risk: destructive}
`, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no")
	}})
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	_ = f.execute(t, id)
	if _, err := f.w.Retry(context.Background(), id, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc := f.only(t)
	if inc.State != remediator.StateAwaitingApproval || !strings.HasPrefix(inc.Reason, "max_attempts: test-remediation ran 1 times on prod in the last ") || f.rem.ran("touch") != 1 {
		t.Errorf("the retry: %s (%q), the step ran %d times; want it to wait for approval past max_attempts", inc.State, inc.Reason, f.rem.ran("touch"))
	}
}
