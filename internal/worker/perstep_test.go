package worker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// perStepPolicies gate from high risk on, and each destructive step on its own.
const perStepPolicies = `policies:
  - name: per-step
    match: labels.alertname == "TestAlert"
    remediation: test-remediation
    mode: auto
    approval:
      users: [U01ALICE, bob]
      required: 2
      timeout: 30m
      from_risk: high
      per_step_from: destructive
`

// highThenDestructive is a run with two gated steps, a high one and a destructive one after
// it, a check after both and a clean-up step; each step's effect is counted by its name.
func highThenDestructive() []remediator.PlannedStep {
	return []remediator.PlannedStep{
		{Name: "look", Risk: remediator.RiskReadOnly, Run: ok("looked")},
		{Name: "stop", Risk: remediator.RiskHigh, Run: ok("stopped the member")},
		{Name: "wipe", Risk: remediator.RiskDestructive, Run: ok("wiped the member's data")},
		{Name: "check", Risk: remediator.RiskHigh, Run: ok("checked")},
		{Name: "restart", Risk: remediator.RiskLow, Always: true, Run: ok("restarted")},
	}
}

// approveBoth has alice and bob approve the open request.
func (f *fixture) approveBoth(t *testing.T) {
	t.Helper()
	for _, by := range []string{"U01ALICE", "bob"} {
		if err := f.answer(t, by, true); err != nil {
			t.Fatalf("approval by %s: %v", by, err)
		}
	}
}

// A step at or above per_step_from waits for an approval of its own, even after an earlier
// gate was granted; a lesser step after it is covered by the grant before it.
func TestEachDestructiveStepWaitsForAFreshApproval(t *testing.T) {
	f := newFixtureWith(t, perStepPolicies, highThenDestructive()...)
	pub := &recordingPublisher{Publisher: f.w.Publisher, sent: map[string]bool{}}
	f.w.Publisher = pub
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateAwaitingApproval || inc.Approval.Gate != "stop" || f.rem.ran("stop") != 0 {
		t.Fatalf("first run: %s before %q, stop ran %d; want it waiting before stop", inc.State, inc.Approval.Gate, f.rem.ran("stop"))
	}
	f.approveBoth(t)
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc := f.only(t)
	if inc.Steps[1].State != remediator.StepSucceeded || inc.Steps[1].Output != "stopped the member" || f.rem.ran("stop") != 1 {
		t.Fatalf("after the first approval: stop %s (%q), ran %d; want it done", inc.Steps[1].State, inc.Steps[1].Output, f.rem.ran("stop"))
	}
	if inc.State != remediator.StateAwaitingApproval || inc.Approval.Gate != "wipe" || inc.Approval.Granted || len(inc.Approval.Approvals) != 0 || f.rem.ran("wipe") != 0 {
		t.Fatalf("after stop: %s, request %+v, wipe ran %d; want a new request before wipe", inc.State, inc.Approval, f.rem.ran("wipe"))
	}
	if !strings.Contains(inc.Reason, "step wipe is destructive risk, and policy \"per-step\" asks for a fresh approval of each step from destructive risk on") {
		t.Errorf("reason %q does not say why wipe asks again", inc.Reason)
	}
	if len(inc.PastApprovals) != 1 || inc.PastApprovals[0].Gate != "stop" || !inc.PastApprovals[0].Granted || len(inc.PastApprovals[0].Approvals) != 2 {
		t.Errorf("past approvals %+v, want stop's, granted by two", inc.PastApprovals)
	}

	// The same people approve again, each once: the rules hold per request.
	if err := f.answer(t, "U01ALICE", true); err != nil {
		t.Fatalf("alice, who approved stop, approving wipe: %v", err)
	}
	if err := f.answer(t, "U01ALICE", true); remediator.ErrorCode(err) != remediator.EREFUSED {
		t.Fatalf("alice twice on wipe: %v, want refused", err)
	}
	if err := f.answer(t, "bob", true); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	inc = f.only(t)
	if want := []string{"look=succeeded", "stop=succeeded", "wipe=succeeded", "check=succeeded", "restart=succeeded"}; inc.State != remediator.StateSucceeded || !slices.Equal(stepStates(inc), want) {
		t.Fatalf("after the second approval: %s, steps %v; want succeeded, %v", inc.State, stepStates(inc), want)
	}
	if f.rem.ran("stop") != 1 || f.rem.ran("wipe") != 1 || f.rem.ran("check") != 1 {
		t.Errorf("stop ran %d times, wipe %d, check %d; want each once", f.rem.ran("stop"), f.rem.ran("wipe"), f.rem.ran("check"))
	}
	if got, want := kinds(inc), "approval_requested,approved,approved,approval_requested,approved,refused,approved"; got != want {
		t.Errorf("timeline %s, want %s", got, want)
	}
	// Each gate's deadline and approved run are messages of their own, neither taken for the
	// other's duplicate.
	for _, key := range []string{"expire-" + id + "-stop", "expire-" + id + "-wipe", "run-" + id + "-approved-stop", "run-" + id + "-approved-wipe"} {
		if dup, ok := pub.sent[key]; !ok || dup {
			t.Errorf("message %s: sent %v, duplicate %v; want sent once, as new (all sent: %v)", key, ok, dup, pub.sent)
		}
	}
}

// A rejection or an expiry at the second gate ends the run there: what the first gate
// allowed stays done, the destructive step never runs, the clean-up still does (the member
// stopped is started again), and both requests stay on record.
func TestARefusalAtTheSecondGateKeepsTheFirstStepsWork(t *testing.T) {
	for _, how := range []string{"rejected", "expired"} {
		t.Run(how, func(t *testing.T) {
			f := newFixtureWith(t, perStepPolicies, highThenDestructive()...)
			c := &clock{now: time.Now()}
			f.w.Now = c.Now
			f.correlate(t, alert("a1", "prod", "firing"))
			id := f.only(t).ID
			_ = f.execute(t, id)
			f.approveBoth(t)
			if err := f.execute(t, id); err != nil {
				t.Fatal(err)
			}
			expire := func(gate string) error {
				data, _ := json.Marshal(expireRequest{Incident: id, Gate: gate, ExpiresAt: c.Now().Add(30 * time.Minute)})
				return f.w.Expire(context.Background(), data)
			}
			// The first gate's deadline finds its request granted: it is done, not put off.
			if err := expire("stop"); err != nil {
				t.Fatalf("the deadline of the granted gate: %v, want it dropped", err)
			}
			switch how {
			case "rejected":
				if err := f.answer(t, "bob", false); err != nil {
					t.Fatal(err)
				}
			case "expired":
				var later *remediator.Later
				if err := expire("wipe"); !errors.As(err, &later) {
					t.Fatalf("the second gate's deadline before it passed: %v, want to look again", err)
				}
				c.Add(31 * time.Minute)
				if err := expire("wipe"); err != nil {
					t.Fatal(err)
				}
			}
			// The run changed something: its clean-up still runs, as after a cancel, and the
			// incident ends rejected after it.
			if inc := f.only(t); inc.State.Terminal() || inc.Cancel == nil || f.rem.ran("restart") != 0 {
				t.Fatalf("right after the %s: %s, cancel %+v, restart ran %d; want the clean-up still to run", how, inc.State, inc.Cancel, f.rem.ran("restart"))
			}
			if err := f.execute(t, id); err != nil {
				t.Fatal(err)
			}
			inc := f.only(t)
			want := []string{"look=succeeded", "stop=succeeded", "wipe=skipped", "check=skipped", "restart=succeeded"}
			if inc.State != remediator.StateRejected || !slices.Equal(stepStates(inc), want) || f.rem.ran("restart") != 1 {
				t.Errorf("incident %s (%q), steps %v, restart ran %d; want rejected, %v, restart once", inc.State, inc.Reason, stepStates(inc), f.rem.ran("restart"), want)
			}
			if wantWhy := map[string]string{"rejected": "rejected by bob", "expired": "expired: no approval within 30m0s"}[how]; !strings.HasPrefix(inc.Reason, wantWhy) {
				t.Errorf("reason %q, want it to start %q", inc.Reason, wantWhy)
			}
			if inc.Steps[1].Output != "stopped the member" || f.rem.ran("stop") != 1 || f.rem.ran("wipe") != 0 || f.rem.ran("check") != 0 {
				t.Errorf("stop %q ran %d times, wipe %d, check %d; want stop done once, wipe and check never", inc.Steps[1].Output, f.rem.ran("stop"), f.rem.ran("wipe"), f.rem.ran("check"))
			}
			reqs := inc.Requests()
			if len(reqs) != 2 || reqs[0].Gate != "stop" || !reqs[0].Granted || len(reqs[0].Approvals) != 2 || reqs[1].Gate != "wipe" || reqs[1].Granted {
				t.Errorf("requests %+v, want stop's granted by two, then wipe's not granted", reqs)
			}
		})
	}
}

// A retry starts with no approval: every gate asks again.
func TestARetryAsksEveryGateAgain(t *testing.T) {
	broken := true
	steps := highThenDestructive()
	steps[3].Run = func(context.Context, remediator.StepInput) (remediator.StepResult, error) {
		if broken {
			return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no")
		}
		return remediator.StepResult{}, nil
	}
	steps = steps[:4] // without the clean-up, a retry runs from the step that failed
	f := newFixtureWith(t, perStepPolicies, steps...)
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	_ = f.execute(t, id)
	f.approveBoth(t)
	_ = f.execute(t, id)
	f.approveBoth(t)
	_ = f.execute(t, id)
	if inc := f.only(t); inc.State != remediator.StateFailed || len(inc.Requests()) != 2 {
		t.Fatalf("first attempt: %s with %d requests, want failed after two", inc.State, len(inc.Requests()))
	}
	broken = false
	inc, err := f.w.Retry(context.Background(), id, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if inc.Approval != nil || inc.PastApprovals != nil {
		t.Fatalf("after the retry: approval %+v, past %+v; want none", inc.Approval, inc.PastApprovals)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateAwaitingApproval || inc.Approval.Gate != "check" || len(inc.PastApprovals) != 0 || f.rem.ran("check") != 1 {
		t.Errorf("the retried attempt: %s before %q with %d past approvals, check ran %d; want it waiting before check, afresh", inc.State, inc.Approval.Gate, len(inc.PastApprovals), f.rem.ran("check"))
	}
}

// A simulation shows each gate as the run would meet it.
func TestSimulateShowsEachPerStepGate(t *testing.T) {
	rule := &remediator.ApprovalRule{Users: []string{"alice"}, Required: 1, FromRisk: remediator.RiskHigh, PerStepFrom: remediator.RiskDestructive}
	d := remediator.Decision{Policy: "p", Remediation: "r", Mode: remediator.ModeAuto, Gates: remediator.Gates{Approval: rule}}
	plan := []remediator.PlannedStep{
		{Name: "look", Risk: remediator.RiskReadOnly},
		{Name: "stop", Risk: remediator.RiskHigh},
		{Name: "wipe", Risk: remediator.RiskDestructive},
		{Name: "start", Risk: remediator.RiskHigh},
		{Name: "re-add", Risk: remediator.RiskDestructive},
	}
	sim := Simulate(d, "prod", plan, time.Now(), false)
	fresh := "waits for a fresh approval, 1 from users alice (risk destructive is at least per_step_from destructive), whatever was approved before; the approval covers only this step of those at destructive risk or above"
	want := []string{
		"",
		"waits for 1 approval(s) from users alice (risk high is at least high); the approval covers the steps after it but those at destructive risk or above, which ask again",
		fresh,
		"",
		fresh,
	}
	for i, s := range sim.Steps {
		if s.Gate != want[i] {
			t.Errorf("step %s: gate %q, want %q", s.Name, s.Gate, want[i])
		}
	}
}
