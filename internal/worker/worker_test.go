package worker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/polltest"
	"github.com/remediator/remediator/policies"
	"github.com/remediator/remediator/queue"
)

// testRemediation is a remediation whose steps the test writes, to drive the worker through
// every outcome; the queue and the policies around it are the real ones.
type testRemediation struct {
	mu    sync.Mutex
	runs  map[string]int
	steps []remediator.PlannedStep
}

func (r *testRemediation) Plan(name string, params map[string]string) ([]remediator.PlannedStep, error) {
	if name != "test-remediation" && name != "other-remediation" {
		return nil, remediator.Errorf(remediator.ENOTFOUND, "remediation %q does not exist", name)
	}
	out := make([]remediator.PlannedStep, len(r.steps))
	for i, s := range r.steps {
		run := s.Run
		s.Run = func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			r.mu.Lock()
			r.runs[s.Name]++
			r.mu.Unlock()
			return run(ctx, in)
		}
		out[i] = s
	}
	return out, nil
}

func (r *testRemediation) Title(name string) string { return "the test's " + name }

func (r *testRemediation) Validate(name string, params map[string]string) error {
	_, err := r.Plan(name, params)
	return err
}

func (r *testRemediation) ran(step string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[step]
}

func ok(out string) remediator.StepFunc {
	return func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
		return remediator.StepResult{Output: out}, nil
	}
}

const testPolicies = `policies:
  - name: deny-staging
    match: cluster == "staging"
    mode: deny
  - name: dry-run
    match: has(labels.mode) && labels.mode == "dry-run"
    remediation: test-remediation
    mode: dry-run
  - name: approve
    match: has(labels.mode) && labels.mode == "approve"
    remediation: test-remediation
    mode: approve
    approval:
      users: [U01ALICE, bob]
  - name: auto
    match: labels.alertname == "TestAlert"
    remediation: test-remediation
    mode: auto
`

type fixture struct {
	w   *Worker
	q   *queue.Queue
	rem *testRemediation
}

func newFixture(t *testing.T, steps ...remediator.PlannedStep) *fixture {
	return newFixtureWith(t, testPolicies, steps...)
}

func newFixtureWith(t *testing.T, policyFile string, steps ...remediator.PlannedStep) *fixture {
	t.Helper()
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir(), AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	rem := &testRemediation{runs: map[string]int{}, steps: steps}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(policyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	pols, err := policies.LoadDir(dir, rem)
	if err != nil {
		t.Fatal(err)
	}
	w := New(Config{Store: q.Incidents, Publisher: q, Locks: q.Locks, RunSubject: queue.SubjectRun,
		ExpireSubject: queue.SubjectExpire, NotifySubject: queue.SubjectNotify, Policies: pols,
		Remediations: rem, Pauses: q.Pauses, Registry: prometheus.NewRegistry()})
	return &fixture{w: w, q: q, rem: rem}
}

func alert(fp, cluster string, status remediator.AlertStatus, labels ...string) remediator.Alert {
	l := map[string]string{"alertname": "TestAlert"}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return remediator.Alert{Source: "alertmanager", Fingerprint: fp, Status: status, Cluster: cluster, Labels: l, ReceivedAt: time.Now()}
}

func (f *fixture) correlate(t *testing.T, alerts ...remediator.Alert) {
	t.Helper()
	data, _ := json.Marshal(remediator.Batch{ID: "b", Source: "alertmanager", ReceivedAt: time.Now(), Alerts: alerts})
	if err := f.w.Correlate(context.Background(), data); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) incidents(t *testing.T) []*remediator.Incident {
	t.Helper()
	page, err := f.q.Incidents.List(context.Background(), remediator.Query{Limit: remediator.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return page.Incidents
}

// only returns the one incident there must be.
func (f *fixture) only(t *testing.T) *remediator.Incident {
	t.Helper()
	all := f.incidents(t)
	if len(all) != 1 {
		t.Fatalf("%d incidents, want 1", len(all))
	}
	return all[0]
}

func (f *fixture) execute(t *testing.T, id string) error {
	t.Helper()
	data, _ := json.Marshal(runRequest{Incident: id})
	return f.w.Execute(context.Background(), data)
}

func TestAlertsForOneClusterAndRemediationMakeOneIncident(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("a1", "prod", "firing"), alert("a2", "prod", "firing"))
	f.correlate(t, alert("a3", "prod", "firing"))
	f.correlate(t, alert("a1", "prod", "firing"), alert("a2", "prod", "firing")) // redelivered
	f.correlate(t, alert("s1", "staging", "firing"))                             // denied
	f.correlate(t, remediator.Alert{Fingerprint: "x", Status: "firing", Cluster: "prod", Labels: map[string]string{"alertname": "Other"}})

	inc := f.only(t)
	if inc.Cluster != "prod" || inc.State != remediator.StatePending || len(inc.Evidence) != 3 || inc.Policy != "auto" {
		t.Errorf("incident %s on %s: %s, %d alerts, policy %s; want pending on prod with 3 alerts", inc.ID, inc.Cluster, inc.State, len(inc.Evidence), inc.Policy)
	}
	f.correlate(t, alert("c1", "canary", "firing"))
	if n := len(f.incidents(t)); n != 2 {
		t.Errorf("%d incidents after an alert for another cluster, want 2", n)
	}
}

func TestResolvedAlertsJoinTheIncidentTheyFiredInto(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "one", Run: ok("")})
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	f.correlate(t, alert("a1", "prod", "resolved"))
	f.correlate(t, alert("never-fired", "prod", "resolved"))
	inc := f.only(t)
	if inc.State != remediator.StateSucceeded || len(inc.Evidence) != 2 || inc.Evidence[1].Status != remediator.AlertResolved {
		t.Errorf("incident: %s with evidence %+v; want succeeded with the firing and the resolved alert", inc.State, inc.Evidence)
	}
}

func TestModesDryRunAndApproveRunNothing(t *testing.T) {
	for _, tc := range []struct {
		mode      string
		wantState remediator.State
		wantStep  remediator.StepState
	}{
		{"dry-run", remediator.StateSkipped, remediator.StepSkipped},
		{"approve", remediator.StateAwaitingApproval, remediator.StepPending},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f := newFixture(t, remediator.PlannedStep{Name: "touch", Risk: remediator.RiskHigh, Run: ok("")})
			f.correlate(t, alert("a1", "prod", "firing", "mode", tc.mode))
			if err := f.execute(t, f.only(t).ID); err != nil {
				t.Fatal(err)
			}
			inc := f.only(t)
			if inc.State != tc.wantState || inc.Steps[0].State != tc.wantStep || f.rem.ran("touch") != 0 {
				t.Errorf("incident %s (%s), step %s, ran %d times; want %s, step %s, never run",
					inc.State, inc.Reason, inc.Steps[0].State, f.rem.ran("touch"), tc.wantState, tc.wantStep)
			}
		})
	}
}

func TestARetriableFailureIsRetriedAndResumesFromItsProgress(t *testing.T) {
	f := newFixture(t,
		remediator.PlannedStep{Name: "first", Run: ok("done")},
		remediator.PlannedStep{Name: "flaky", Run: func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			if in.Progress == nil {
				if err := in.SaveProgress(ctx, map[string]int{"done": 1}); err != nil {
					return remediator.StepResult{}, err
				}
				return remediator.StepResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "etcd is slow")
			}
			return remediator.StepResult{Output: "resumed from " + string(in.Progress)}, nil
		}},
	)
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID

	err := f.execute(t, id)
	if !remediator.Retriable(err) {
		t.Fatalf("first run: %v, want a retriable error", err)
	}
	if inc := f.only(t); inc.State != remediator.StateRunning || inc.Steps[1].State != remediator.StepRunning || !strings.Contains(inc.Steps[1].Error, "attempt 1: etcd is slow") {
		t.Fatalf("after the first run: %s, step %s (%s)", inc.State, inc.Steps[1].State, inc.Steps[1].Error)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatalf("second run: %v", err)
	}
	inc := f.only(t)
	if inc.State != remediator.StateSucceeded || inc.Steps[1].Attempts != 2 || inc.Steps[1].Output != `resumed from {"done":1}` || inc.Steps[1].Error != "" {
		t.Errorf("incident %s; flaky step after %d attempts: %q (%s)", inc.State, inc.Steps[1].Attempts, inc.Steps[1].Output, inc.Steps[1].Error)
	}
	if n := f.rem.ran("first"); n != 1 {
		t.Errorf("the step that had succeeded ran %d times, want once", n)
	}
}

func TestFailuresEndTheIncidentAndSkipTheRest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		attempts   int
		wantReason string
	}{
		{"safety check", remediator.Errorf(remediator.EPRECONDITION, "member m2 is down"), 1, "step check failed: member m2 is down"},
		{"retriable until its attempts are spent", remediator.Errorf(remediator.EUNAVAILABLE, "etcd is slow"), 3, "step check failed on its last attempt (3 of 3): etcd is slow"},
		{"panic", nil, 1, "step check failed: step panicked: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t,
				remediator.PlannedStep{Name: "check", Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
					if tc.err == nil {
						panic("boom")
					}
					return remediator.StepResult{Output: "saw it"}, tc.err
				}},
				remediator.PlannedStep{Name: "act", Run: ok("")},
			)
			f.w.StepAttempts = 3
			f.correlate(t, alert("a1", "prod", "firing"))
			for range tc.attempts {
				if err := f.execute(t, f.only(t).ID); err == nil {
					t.Fatal("no error")
				}
			}
			inc := f.only(t)
			if inc.State != remediator.StateFailed || !strings.HasPrefix(inc.Reason, tc.wantReason) {
				t.Errorf("incident %s: %q, want failed: %q", inc.State, inc.Reason, tc.wantReason)
			}
			if inc.Steps[0].State != remediator.StepFailed || inc.Steps[0].Attempts != tc.attempts || inc.Steps[1].State != remediator.StepSkipped || f.rem.ran("act") != 0 {
				t.Errorf("steps %s, %s; act ran %d times", inc.Steps[0].State, inc.Steps[1].State, f.rem.ran("act"))
			}
			// The problem goes on: an alert right after joins the failed incident rather
			// than run the remediation that failed again. Once the alerts stop for a while,
			// a new alert is a new problem: it opens an incident.
			f.correlate(t, alert("a2", "prod", "firing"))
			if all := f.incidents(t); len(all) != 1 || all[0].EvidenceCount != 2 {
				t.Errorf("%d incidents after a new alert, want the failed one with both alerts", len(all))
			}
			later := alert("a3", "prod", "firing")
			later.ReceivedAt = later.ReceivedAt.Add(11 * time.Minute)
			f.correlate(t, later)
			if n := len(f.incidents(t)); n != 2 {
				t.Errorf("%d incidents after an alert 11 minutes later, want 2", n)
			}
		})
	}
}

func TestAnInterruptedStepIsNotAFailure(t *testing.T) {
	f := newFixture(t,
		remediator.PlannedStep{Name: "long", Run: func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			if in.Progress != nil {
				return remediator.StepResult{Output: "finished"}, nil
			}
			if err := in.SaveProgress(ctx, "half"); err != nil {
				return remediator.StepResult{}, err
			}
			<-ctx.Done() // the service shuts down mid-step
			return remediator.StepResult{}, ctx.Err()
		}},
	)
	f.w.StepAttempts = 1 // an interruption must not spend the only attempt
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	data, _ := json.Marshal(runRequest{Incident: id})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.w.Execute(ctx, data) }()
	polltest.Until(t, 10*time.Second, "the step to save its progress", func() (bool, string) {
		inc := f.only(t)
		return len(inc.Steps) > 0 && inc.Steps[0].Progress != nil, "incident " + string(inc.State) + ", no progress saved"
	})
	cancel()
	if err := polltest.Receive(t, 10*time.Second, "the interrupted run to return", done); !remediator.Retriable(err) {
		t.Fatalf("interrupted run: %v, want a retriable error", err)
	}
	if inc := f.only(t); inc.State != remediator.StateRunning || inc.Steps[0].State != remediator.StepRunning || !strings.Contains(inc.Steps[0].Error, "interrupted") {
		t.Fatalf("after the interruption: %s, step %s (%s); want it still running", inc.State, inc.Steps[0].State, inc.Steps[0].Error)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateSucceeded || inc.Steps[0].Output != "finished" {
		t.Errorf("after the next delivery: %s, step said %q", inc.State, inc.Steps[0].Output)
	}
}

func TestCleanupStepsRunAfterAFailure(t *testing.T) {
	f := newFixture(t,
		remediator.PlannedStep{Name: "suspend", Run: ok("suspended")},
		remediator.PlannedStep{Name: "repair", Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
			return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "member m2 is down")
		}},
		remediator.PlannedStep{Name: "verify", Run: ok("")},
		remediator.PlannedStep{Name: "restore", Always: true, Run: ok("restored")},
	)
	f.correlate(t, alert("a1", "prod", "firing"))
	if err := f.execute(t, f.only(t).ID); remediator.ErrorCode(err) != remediator.EPRECONDITION {
		t.Fatalf("execute: %v", err)
	}
	inc := f.only(t)
	if inc.State != remediator.StateFailed || !strings.Contains(inc.Reason, "step repair failed: member m2 is down") {
		t.Fatalf("incident %s: %q", inc.State, inc.Reason)
	}
	want := []remediator.StepState{remediator.StepSucceeded, remediator.StepFailed, remediator.StepSkipped, remediator.StepSucceeded}
	for i, s := range inc.Steps {
		if s.State != want[i] {
			t.Errorf("step %s is %s, want %s", s.Name, s.State, want[i])
		}
	}
	if f.rem.ran("restore") != 1 || f.rem.ran("verify") != 0 || inc.Steps[3].Output != "restored" {
		t.Fatalf("restore ran %d times, verify %d", f.rem.ran("restore"), f.rem.ran("verify"))
	}
	// Run again (a redelivery): nothing more runs.
	_ = f.execute(t, inc.ID)
	if f.rem.ran("restore") != 1 {
		t.Fatal("the clean-up step ran twice")
	}
}

func TestAStepThatFindsNothingToDoSkipsTheIncident(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cleanup bool
	}{{"no clean-up", false}, {"clean-up runs", true}} {
		t.Run(tc.name, func(t *testing.T) {
			steps := []remediator.PlannedStep{
				{Name: "preflight", Run: func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
					return remediator.StepResult{Output: "every member is below its quota, no alarm"}, remediator.NothingToDof("no NOSPACE alarm and no member over 90%% of its quota")
				}},
				{Name: "compact", Risk: remediator.RiskDestructive, Run: ok("")},
			}
			if tc.cleanup {
				steps = append(steps, remediator.PlannedStep{Name: "restore", Always: true, Risk: remediator.RiskLow, Run: ok("restored")})
			}
			f := newFixture(t, steps...)
			f.correlate(t, alert("a1", "prod", "firing"))
			if err := f.execute(t, f.only(t).ID); err != nil {
				t.Fatal(err)
			}
			inc := f.only(t)
			if inc.State != remediator.StateSkipped || inc.Reason != "nothing to do: no NOSPACE alarm and no member over 90% of its quota" {
				t.Errorf("incident %s: %q, want skipped: nothing to do", inc.State, inc.Reason)
			}
			if inc.Steps[0].State != remediator.StepSucceeded || inc.Steps[0].Output == "" || inc.Steps[1].State != remediator.StepSkipped || f.rem.ran("compact") != 0 {
				t.Errorf("steps %s (%q), %s; compact ran %d times", inc.Steps[0].State, inc.Steps[0].Output, inc.Steps[1].State, f.rem.ran("compact"))
			}
			if tc.cleanup && (f.rem.ran("restore") != 1 || inc.Steps[2].State != remediator.StepSucceeded) {
				t.Errorf("clean-up ran %d times, state %s", f.rem.ran("restore"), inc.Steps[2].State)
			}
		})
	}
}
