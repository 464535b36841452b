package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/polltest"
)

const gatedPolicies = `policies:
  - name: gated
    match: labels.alertname == "TestAlert"
    remediation: test-remediation
    mode: auto
    approval:
      users: [U01ALICE, bob]
      required: 2
      timeout: 30m
      from_risk: high
`

// clock is a time the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func threeSteps() []remediator.PlannedStep {
	return []remediator.PlannedStep{
		{Name: "look", Risk: remediator.RiskReadOnly, Run: ok("looked")},
		{Name: "act", Risk: remediator.RiskHigh, Run: ok("acted")},
		{Name: "check", Risk: remediator.RiskLow, Run: ok("checked")},
	}
}

func (f *fixture) answer(t *testing.T, by string, approve bool) error {
	t.Helper()
	_, err := f.w.Answer(context.Background(), remediator.Answer{Incident: f.only(t).ID, By: by, Via: "api", Approve: approve})
	return err
}

func kinds(inc *remediator.Incident) string {
	var k []string
	for _, e := range inc.Timeline {
		switch e.Kind {
		case remediator.EventApprovalRequested, remediator.EventApproved, remediator.EventRefused, remediator.EventRejected, remediator.EventExpired:
			k = append(k, e.Kind)
		}
	}
	return strings.Join(k, ",")
}

func TestReadOnlyStepsRunThenTheRiskyOneWaitsForTwoApprovers(t *testing.T) {
	f := newFixtureWith(t, gatedPolicies, threeSteps()...)
	f.correlate(t, alert("a1", "prod", "firing"))
	if err := f.execute(t, f.only(t).ID); err != nil {
		t.Fatal(err)
	}
	inc := f.only(t)
	if inc.State != remediator.StateAwaitingApproval || inc.Approval.Gate != "act" || f.rem.ran("look") != 1 || f.rem.ran("act") != 0 {
		t.Fatalf("after the first run: %s before %q; look ran %d, act %d; want it waiting before act after look",
			inc.State, inc.Approval.Gate, f.rem.ran("look"), f.rem.ran("act"))
	}

	for _, tc := range []struct {
		name     string
		by       string
		approve  bool
		wantCode string
	}{
		{"no approver", "mallory", true, remediator.EFORBIDDEN},
		{"first approver", "U01ALICE", true, ""},
		{"the same approver again: the two-person rule needs someone else", "U01ALICE", true, remediator.EREFUSED},
		{"second approver", "bob", true, ""},
		{"too late: no longer waiting", "bob", false, remediator.EREFUSED},
	} {
		if err := f.answer(t, tc.by, tc.approve); remediator.ErrorCode(err) != tc.wantCode {
			t.Errorf("%s: answer by %s: %v, want code %q", tc.name, tc.by, err, tc.wantCode)
		}
	}
	inc = f.only(t)
	if inc.State != remediator.StateRunning || !inc.Approval.Granted || len(inc.Approval.Approvals) != 2 {
		t.Fatalf("after two approvals: %s, granted %v, approvals %+v", inc.State, inc.Approval.Granted, inc.Approval.Approvals)
	}
	if got := kinds(inc); got != "approval_requested,refused,approved,refused,approved,refused" {
		t.Errorf("timeline %s", got)
	}
	if err := f.execute(t, inc.ID); err != nil {
		t.Fatal(err)
	}
	inc = f.only(t)
	if inc.State != remediator.StateSucceeded || f.rem.ran("look") != 1 || f.rem.ran("act") != 1 || f.rem.ran("check") != 1 {
		t.Errorf("after approval: %s; ran look %d, act %d, check %d", inc.State, f.rem.ran("look"), f.rem.ran("act"), f.rem.ran("check"))
	}
}

func TestARejectedOrExpiredRequestRunsNothingMore(t *testing.T) {
	t.Run("rejected", func(t *testing.T) {
		f := newFixtureWith(t, gatedPolicies, threeSteps()...)
		f.correlate(t, alert("a1", "prod", "firing"))
		_ = f.execute(t, f.only(t).ID)
		if err := f.answer(t, "bob", false); err != nil {
			t.Fatal(err)
		}
		inc := f.only(t)
		if inc.State != remediator.StateRejected || inc.Reason != "rejected by bob" || inc.Steps[1].State != remediator.StepSkipped {
			t.Errorf("%s (%s), act %s", inc.State, inc.Reason, inc.Steps[1].State)
		}
	})
	t.Run("expired", func(t *testing.T) {
		f := newFixtureWith(t, gatedPolicies, threeSteps()...)
		c := &clock{now: time.Now()}
		f.w.Now = c.Now
		f.correlate(t, alert("a1", "prod", "firing"))
		data, _ := json.Marshal(expireRequest{Incident: f.only(t).ID, Gate: "act", ExpiresAt: c.Now().Add(30 * time.Minute)})
		var later *remediator.Later
		// The deadline is scheduled before the request is recorded: if it is read first, it
		// must come back, not be dropped.
		if err := f.w.Expire(context.Background(), data); !errors.As(err, &later) {
			t.Fatalf("a deadline read before its request: %v, want to look again", err)
		}
		_ = f.execute(t, f.only(t).ID)
		if err := f.w.Expire(context.Background(), data); !errors.As(err, &later) || later.After < 29*time.Minute {
			t.Fatalf("before the deadline: %v, want to look again in about 30m", err)
		}
		c.Add(31 * time.Minute)
		if err := f.w.Expire(context.Background(), data); err != nil {
			t.Fatal(err)
		}
		inc := f.only(t)
		if inc.State != remediator.StateRejected || !strings.HasPrefix(inc.Reason, "expired: no approval within 30m0s (0 of 2 given)") || f.rem.ran("act") != 0 {
			t.Errorf("after the deadline: %s (%s), act ran %d", inc.State, inc.Reason, f.rem.ran("act"))
		}
		if err := f.answer(t, "bob", true); remediator.ErrorCode(err) != remediator.EREFUSED {
			t.Errorf("approval after expiry: %v, want a refusal", err)
		}
	})
}

func TestAWaitingIncidentWhoseAlertsResolveIsCancelled(t *testing.T) {
	f := newFixtureWith(t, gatedPolicies, threeSteps()...)
	f.correlate(t, alert("a1", "prod", "firing"), alert("a2", "prod", "firing"))
	_ = f.execute(t, f.only(t).ID)
	f.correlate(t, alert("a1", "prod", "resolved"))
	if s := f.only(t).State; s != remediator.StateAwaitingApproval {
		t.Fatalf("one of two alerts resolved: %s, want still waiting", s)
	}
	f.correlate(t, alert("a2", "prod", "resolved"))
	inc := f.only(t)
	if inc.State != remediator.StateCancelled || !strings.Contains(inc.Reason, "every alert resolved") || inc.Steps[1].State != remediator.StepSkipped {
		t.Errorf("all alerts resolved: %s (%s)", inc.State, inc.Reason)
	}
}

const historyPolicies = `policies:
  - name: cooldown-ask
    match: has(labels.gate) && labels.gate == "cooldown-ask"
    remediation: test-remediation
    mode: auto
    cooldown: 1h
    approval: {users: [bob]}
  - name: cooldown-skip
    match: has(labels.gate) && labels.gate == "cooldown-skip"
    remediation: test-remediation
    mode: auto
    cooldown: 1h
  - name: twice-a-day
    match: has(labels.gate) && labels.gate == "max-attempts"
    remediation: test-remediation
    mode: auto
    max_attempts: 1
  - name: nights
    match: has(labels.gate) && labels.gate == "window"
    remediation: test-remediation
    mode: auto
    maintenance:
      windows: [{days: [mon], start: "02:00", end: "03:00"}]
`

// runTwice opens, runs and resolves one incident, then opens another for the same cluster
// and remediation an hour later minus delay, and runs it.
func runTwice(t *testing.T, gate string, delay time.Duration) *fixture {
	t.Helper()
	f := newFixtureWith(t, historyPolicies, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh, Run: ok("")})
	c := &clock{now: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	f.w.Now = c.Now
	at := func(a remediator.Alert) remediator.Alert { a.ReceivedAt = c.Now(); return a }
	f.correlate(t, at(alert("a1", "prod", "firing", "gate", gate)))
	if err := f.execute(t, f.only(t).ID); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour - delay)
	f.correlate(t, at(alert("a2", "prod", "firing", "gate", gate)))
	_ = f.execute(t, f.incidents(t)[0].ID)
	return f
}

func TestAProblemThatComesBackIsReportedNotBlindlyRemediated(t *testing.T) {
	for _, tc := range []struct {
		name, gate, wantState, wantReason string
		delay                             time.Duration
	}{
		{"within the cooldown, with approvers", "cooldown-ask", "awaiting_approval", "cooldown: test-remediation last ran on prod 50m0s ago", 10 * time.Minute},
		{"within the cooldown, no approvers", "cooldown-skip", "skipped", "within the 1h0m0s cooldown: the problem came back; not run", 10 * time.Minute},
		{"after the cooldown", "cooldown-skip", "succeeded", "", -time.Minute},
		{"over max_attempts", "max-attempts", "skipped", "max_attempts: test-remediation ran 1 times on prod in the last 24h0m0s", 0},
	} {
		f := runTwice(t, tc.gate, tc.delay)
		all := f.incidents(t)
		if len(all) != 2 || string(all[0].State) != tc.wantState || !strings.Contains(all[0].Reason, tc.wantReason) {
			t.Errorf("%s: %s (%s), want %s with %q", tc.name, all[0].State, all[0].Reason, tc.wantState, tc.wantReason)
		}
		if want := map[bool]int{true: 2, false: 1}[tc.wantState == "succeeded"]; f.rem.ran("act") != want {
			t.Errorf("%s: act ran %d times, want %d", tc.name, f.rem.ran("act"), want)
		}
	}
}

func TestOutsideItsMaintenanceWindowAnIncidentWaits(t *testing.T) {
	f := newFixtureWith(t, historyPolicies, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh, Run: ok("")})
	c := &clock{now: time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)} // Sunday night
	f.w.Now = c.Now
	f.correlate(t, alert("a1", "prod", "firing", "gate", "window"))
	var later *remediator.Later
	if err := f.execute(t, f.only(t).ID); !errors.As(err, &later) || later.After != 3*time.Hour {
		t.Fatalf("on Sunday 23:00: %v, want to wait 3h for Monday 02:00", err)
	}
	if inc := f.only(t); inc.State != remediator.StatePending || !strings.Contains(inc.Reason, "2026-11-23T02:00:00Z") || f.rem.ran("act") != 0 {
		t.Fatalf("while waiting: %s (%s), act ran %d", inc.State, inc.Reason, f.rem.ran("act"))
	}
	c.Add(3*time.Hour + time.Minute)
	if err := f.execute(t, f.only(t).ID); err != nil || f.only(t).State != remediator.StateSucceeded {
		t.Errorf("in the window: %v, %s", err, f.only(t).State)
	}
}

func TestGlobalDryRunRunsNothing(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh, Run: ok("")})
	f.w.DryRun = true
	f.correlate(t, alert("a1", "prod", "firing"))
	if err := f.execute(t, f.only(t).ID); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateSkipped || !strings.Contains(inc.Reason, "dry_run on") || f.rem.ran("act") != 0 {
		t.Errorf("%s (%s), act ran %d", inc.State, inc.Reason, f.rem.ran("act"))
	}
}

const twoRemediations = `policies:
  - name: first
    match: labels.alertname == "First"
    remediation: test-remediation
    mode: auto
  - name: second
    match: labels.alertname == "Second"
    remediation: other-remediation
    mode: auto
`

func TestOneRemediationPerClusterAtATime(t *testing.T) {
	release := make(chan struct{})
	f := newFixtureWith(t, twoRemediations, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh,
		Run: func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			if in.Incident.Remediation == "test-remediation" {
				select {
				case <-release:
				case <-ctx.Done():
					return remediator.StepResult{}, ctx.Err()
				}
			}
			return remediator.StepResult{}, nil
		}})
	f.correlate(t, remediator.Alert{Fingerprint: "f1", Status: "firing", Cluster: "prod", Labels: map[string]string{"alertname": "First"}})
	first := f.only(t).ID
	done := make(chan error, 1)
	go func() { done <- f.execute(t, first) }()
	polltest.Until(t, 10*time.Second, "the first incident's step to start", func() (bool, string) {
		return f.rem.ran("act") > 0, "act not started"
	})

	f.correlate(t, remediator.Alert{Fingerprint: "f2", Status: "firing", Cluster: "prod", Labels: map[string]string{"alertname": "Second"}})
	second := f.incidents(t)[0].ID
	var later *remediator.Later
	if err := f.execute(t, second); !errors.As(err, &later) {
		t.Fatalf("second incident while the first runs: %v, want to wait", err)
	}
	if inc, _ := f.q.Incidents.Get(context.Background(), second); inc.State != remediator.StatePending || !strings.Contains(inc.Reason, "held by incident "+first) {
		t.Fatalf("second incident: %s (%s)", inc.State, inc.Reason)
	}
	close(release)
	if err := polltest.Receive(t, 10*time.Second, "the first run to end", done); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, second); err != nil {
		t.Fatalf("second incident once the first finished: %v", err)
	}
	if inc, _ := f.q.Incidents.Get(context.Background(), second); inc.State != remediator.StateSucceeded {
		t.Errorf("second incident: %s", inc.State)
	}
}

func TestTheLockOfACrashedWorkerExpires(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh, Run: ok("")})
	// A worker took the lock and died: nobody refreshes it.
	if owner, err := f.q.Locks.Acquire(context.Background(), "prod", "20261121-000000-dead00@crashed"); err != nil || owner != "20261121-000000-dead00@crashed" {
		t.Fatal(owner, err)
	}
	f.correlate(t, alert("a1", "prod", "firing"))
	var later *remediator.Later
	if err := f.execute(t, f.only(t).ID); !errors.As(err, &later) {
		t.Fatalf("with the crashed worker's lock: %v, want to wait", err)
	}
	polltest.NoError(t, 10*time.Second, "the crashed worker's lock to expire and the run to go on", func(context.Context) error {
		err := f.execute(t, f.only(t).ID)
		if err != nil && !errors.As(err, &later) {
			t.Fatalf("while the lock expires: %v, want to wait", err)
		}
		return err
	})
	if inc := f.only(t); inc.State != remediator.StateSucceeded {
		t.Errorf("after the lock expired: %s", inc.State)
	}
}

func TestTheSharedOperatorTokenCountsOnce(t *testing.T) {
	f := newFixtureWith(t, gatedPolicies, threeSteps()...)
	f.correlate(t, alert("a1", "prod", "firing"))
	_ = f.execute(t, f.only(t).ID)
	id := f.only(t).ID
	shared := func(by string) error {
		_, err := f.w.Answer(context.Background(), remediator.Answer{Incident: id, By: by, Via: remediator.ViaSharedAPI, Approve: true})
		return err
	}
	if err := shared("U01ALICE"); err != nil {
		t.Fatal(err)
	}
	if err := shared("bob"); remediator.ErrorCode(err) != remediator.EREFUSED || !strings.Contains(err.Error(), "shared operator token") {
		t.Fatalf("a second approval with the shared token: %v, want refused", err)
	}
	if _, err := f.w.Answer(context.Background(), remediator.Answer{Incident: id, By: "bob", Via: remediator.ViaAPI, Approve: true}); err != nil {
		t.Fatalf("bob with a token of his own: %v", err)
	}
	if inc := f.only(t); inc.State != remediator.StateRunning {
		t.Errorf("after two people approved: %s", inc.State)
	}
}

func TestADuplicateRunWaitsInsteadOfRunningTwice(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh,
		Run: func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return remediator.StepResult{}, ctx.Err()
			}
			return remediator.StepResult{}, nil
		}})
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	done := make(chan error, 1)
	go func() { done <- f.execute(t, id) }()
	polltest.Until(t, 10*time.Second, "the first delivery's step to start", func() (bool, string) {
		return f.rem.ran("act") > 0, "act not started"
	})
	var later *remediator.Later
	if err := f.execute(t, id); !errors.As(err, &later) {
		t.Fatalf("a second delivery while the first runs: %v, want to wait", err)
	}
	close(release)
	if err := polltest.Receive(t, 10*time.Second, "the first run to end", done); err != nil {
		t.Fatal(err)
	}
	if err := f.execute(t, id); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateSucceeded || inc.Steps[0].Attempts != 1 || f.rem.ran("act") != 1 {
		t.Errorf("%s; act attempts %d, ran %d; want it run once", inc.State, inc.Steps[0].Attempts, f.rem.ran("act"))
	}
	for _, e := range f.only(t).Timeline {
		if e.Kind == remediator.EventWaiting {
			t.Errorf("the incident says it waits for itself: %s", e.Message)
		}
	}
}

// The built-in policies cannot name the operators: "*" lets anyone who can answer approve,
// still one approval per person.
func TestAnyApproverStillNeedsDistinctPeople(t *testing.T) {
	f := newFixtureWith(t, strings.Replace(gatedPolicies, "users: [U01ALICE, bob]", `users: ["*"]`, 1), threeSteps()...)
	f.correlate(t, alert("a1", "prod", "firing"))
	if err := f.execute(t, f.only(t).ID); err != nil {
		t.Fatal(err)
	}
	if err := f.answer(t, "carol", true); err != nil {
		t.Fatal(err)
	}
	if err := f.answer(t, "carol", true); remediator.ErrorCode(err) != remediator.EREFUSED {
		t.Fatalf("second approval by carol: %v", err)
	}
	if inc := f.only(t); inc.State != remediator.StateAwaitingApproval {
		t.Fatalf("one person approved twice and the incident is %s", inc.State)
	}
	if err := f.answer(t, "dave", true); err != nil {
		t.Fatal(err)
	}
	if inc := f.only(t); inc.State != remediator.StateRunning || !inc.Approval.Granted {
		t.Fatalf("after carol and dave: %s", inc.State)
	}
}

// members answers who is a full member of the workspace, as Slack's users.info would.
type members map[string]remediator.ChatMember

func (m members) Member(_ context.Context, id string) (remediator.ChatMember, error) {
	if mm, ok := m[id]; ok {
		return mm, nil
	}
	return remediator.ChatMember{ID: id}, nil
}

// One person, one vote: alice's click in Slack and alice's operator token are the same
// person, however the policy names her.
func TestAPersonApprovesOnceWhereverTheyAnswer(t *testing.T) {
	for _, named := range []string{"U01ALICE", "alice"} {
		t.Run("the policy names "+named, func(t *testing.T) {
			f := newFixtureWith(t, strings.Replace(gatedPolicies, "users: [U01ALICE, bob]", "users: ["+named+", bob]", 1), threeSteps()...)
			f.w.People = map[string]string{"U01ALICE": "alice"}
			f.correlate(t, alert("a1", "prod", "firing"))
			_ = f.execute(t, f.only(t).ID)
			id := f.only(t).ID
			ctx := context.Background()
			if _, err := f.w.Answer(ctx, remediator.Answer{Incident: id, By: "U01ALICE", Name: "alice.s", Via: remediator.ViaSlack, Approve: true}); err != nil {
				t.Fatalf("alice in Slack: %v", err)
			}
			_, err := f.w.Answer(ctx, remediator.Answer{Incident: id, By: "alice", Via: remediator.ViaAPI, Approve: true})
			if remediator.ErrorCode(err) != remediator.EREFUSED || !strings.Contains(err.Error(), "approved already") {
				t.Fatalf("alice over the API after her click: %v, want refused", err)
			}
			inc := f.only(t)
			if inc.State != remediator.StateAwaitingApproval || len(inc.Approval.Approvals) != 1 || inc.Approval.Approvals[0].By != "alice" || inc.Approval.Approvals[0].ChatID != "U01ALICE" {
				t.Fatalf("%s with approvals %+v, want one, alice's", inc.State, inc.Approval.Approvals)
			}
			if _, err := f.w.Answer(ctx, remediator.Answer{Incident: id, By: "bob", Via: remediator.ViaAPI, Approve: true}); err != nil {
				t.Fatalf("bob: %v", err)
			}
			if inc := f.only(t); !inc.Approval.Granted {
				t.Errorf("not granted after alice and bob: %+v", inc.Approval.Approvals)
			}
		})
	}
}

// With users: ["*"], a guest of the workspace or a user of another one in a shared channel
// is not "anyone": they approve only where a policy names them.
func TestAnyApproverMeansAFullMemberOfTheWorkspace(t *testing.T) {
	f := newFixtureWith(t, strings.Replace(gatedPolicies, "users: [U01ALICE, bob]", `users: ["*", U0NAMEDGUEST]`, 1), threeSteps()...)
	f.w.Members = members{
		"U0GUEST":      {ID: "U0GUEST", Guest: true},
		"U0NAMEDGUEST": {ID: "U0NAMEDGUEST", Guest: true},
		"U0PARTNER":    {ID: "U0PARTNER", External: true},
		"B0BOT":        {ID: "B0BOT", Bot: true},
	}
	f.correlate(t, alert("a1", "prod", "firing"))
	_ = f.execute(t, f.only(t).ID)
	id := f.only(t).ID
	for _, tc := range []struct {
		by, via, want string
	}{
		{"U0GUEST", remediator.ViaSlack, remediator.EFORBIDDEN},
		{"U0PARTNER", remediator.ViaSlack, remediator.EFORBIDDEN},
		{"B0BOT", remediator.ViaSlack, remediator.EFORBIDDEN},
		{"U0NAMEDGUEST", remediator.ViaSlack, ""},
		{"U0MEMBER", remediator.ViaSlack, ""},
	} {
		_, err := f.w.Answer(context.Background(), remediator.Answer{Incident: id, By: tc.by, Via: tc.via, Approve: true})
		if remediator.ErrorCode(err) != tc.want {
			t.Errorf("%s via %s: %v, want %q", tc.by, tc.via, err, tc.want)
		}
	}
	if inc := f.only(t); !inc.Approval.Granted || len(inc.Approval.Approvals) != 2 {
		t.Errorf("approvals %+v, want the named guest and the member", inc.Approval.Approvals)
	}
}

// An answer that reached the queue without the intake's signature approves nothing, and the
// incident says it was refused, a few times at most.
func TestAForgedAnswerIsRecordedAndApprovesNothing(t *testing.T) {
	f := newFixtureWith(t, gatedPolicies, threeSteps()...)
	f.correlate(t, alert("a1", "prod", "firing"))
	_ = f.execute(t, f.only(t).ID)
	id := f.only(t).ID
	forged, _ := json.Marshal(remediator.Answer{Incident: id, By: "U01ALICE", Via: remediator.ViaSlack, Approve: true})
	for range 8 {
		if err := f.w.RefuseForgedAnswer(context.Background(), forged, errors.New("unsigned: no Remediator-Signature header")); err != nil {
			t.Fatal(err)
		}
	}
	inc := f.only(t)
	if inc.State != remediator.StateAwaitingApproval || len(inc.Approval.Approvals) != 0 {
		t.Fatalf("%s with approvals %+v after forged answers", inc.State, inc.Approval.Approvals)
	}
	refused := 0
	for _, e := range inc.Timeline {
		if e.Kind == remediator.EventRefused && strings.Contains(e.Message, "without the signature of remediator's intake") && strings.Contains(e.Message, "U01ALICE") {
			refused++
		}
	}
	if refused != forgedRecorded {
		t.Errorf("%d refusals in the timeline, want %d", refused, forgedRecorded)
	}
}
