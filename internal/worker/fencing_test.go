package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/queue"
)

// partitioned is the queue's real locks, with refreshes failing from the moment cut is set,
// as they do for a worker cut off from NATS.
type partitioned struct {
	*queue.Locks
	cut atomic.Bool
}

func (p *partitioned) Refresh(ctx context.Context, cluster, holder string) error {
	if p.cut.Load() {
		return remediator.Errorf(remediator.EUNAVAILABLE, "nats: connection lost (partitioned)")
	}
	return p.Locks.Refresh(ctx, cluster, holder)
}

// A worker that loses its cluster lock mid-step cuts the step short, starts no other, and
// says why in the incident; the run is left to the next lock holder.
func TestAWorkerThatLosesItsLockStopsBeforeTheNextStep(t *testing.T) {
	var locks *partitioned
	f := newFixture(t,
		remediator.PlannedStep{Name: "long", Risk: remediator.RiskLow, Run: func(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
			locks.cut.Store(true)
			<-ctx.Done() // the worker cuts it short once the lock is lost
			return remediator.StepResult{}, ctx.Err()
		}},
		remediator.PlannedStep{Name: "next", Risk: remediator.RiskLow, Run: ok("")},
	)
	locks = &partitioned{Locks: f.q.Locks}
	f.w.Locks = locks
	f.correlate(t, alert("a1", "prod", "firing"))
	id := f.only(t).ID
	started := time.Now()
	err := f.execute(t, id)
	var later *remediator.Later
	if !errors.As(err, &later) {
		t.Fatalf("execute: %v, want the run handed back to the queue", err)
	}
	// Two refreshes a third of the 2s TTL apart fail before the lock could expire.
	if took := time.Since(started); took >= 2*time.Second {
		t.Errorf("the step was cut short after %s, want before the lock's TTL (2s) passed", took)
	}
	inc := f.only(t)
	if f.rem.ran("next") != 0 || inc.Steps[1].State != remediator.StepPending {
		t.Errorf("step next ran %d times (%s) after the lock was lost, want never", f.rem.ran("next"), inc.Steps[1].State)
	}
	if !strings.Contains(inc.Reason, "lost the cluster lock") || inc.Steps[0].State == remediator.StepFailed {
		t.Errorf("incident %s (%s), step long %s: want the lost lock as the reason, and the step not failed", inc.State, inc.Reason, inc.Steps[0].State)
	}
}

// A defragmentation goes on on the etcd server after its worker lost the lock: its fence
// keeps every other worker from starting on the cluster until its deadline.
func TestNoNewLockHolderStartsBeforeAFencedStepsDeadline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	locks := f.q.Locks
	if owner, err := locks.Acquire(ctx, "prod", "first"); err != nil || owner != "first" {
		t.Fatalf("acquire: %s, %v", owner, err)
	}
	deadline := time.Now().Add(4 * time.Second)
	if err := locks.Fence(ctx, "prod", "first", "defragment: member m1", deadline); err != nil {
		t.Fatal(err)
	}
	// The first holder is cut off: it refreshes nothing, and its lock expires.
	var later *remediator.Later
	for {
		owner, err := locks.Acquire(ctx, "prod", "second")
		if owner == "second" {
			if time.Now().Before(deadline) {
				t.Fatalf("a second holder took the lock %s before the fenced step's deadline", time.Until(deadline))
			}
			break
		}
		switch {
		case errors.As(err, &later):
			if !strings.Contains(later.Reason, "defragment: member m1") || later.After > time.Until(deadline)+time.Second {
				t.Fatalf("wait %s: %q", later.After, later.Reason)
			}
		case err != nil:
			t.Fatal(err)
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("no second holder 10s after the fence's deadline: %s %v", owner, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if later == nil {
		t.Error("the second holder was never told to wait for the fence")
	}
}

// A storm in dry-run is one incident: each batch of new alerts joins the incident that ended
// (skipped, its alerts still firing) instead of opening another, and every alert counts.
func TestADryRunStormIsOneIncident(t *testing.T) {
	f := newFixture(t, remediator.PlannedStep{Name: "act", Risk: remediator.RiskHigh, Run: ok("")})
	for batch := range 5 {
		var alerts []remediator.Alert
		for i := range 20 {
			alerts = append(alerts, alert(fmt.Sprintf("storm-%d-%d", batch, i), "prod", "firing", "mode", "dry-run"))
		}
		f.correlate(t, alerts...)
		if all := f.incidents(t); len(all) == 1 && all[0].State == remediator.StatePending {
			_ = f.execute(t, all[0].ID)
		}
	}
	inc := f.only(t)
	if inc.State != remediator.StateSkipped || inc.EvidenceCount != 100 || f.rem.ran("act") != 0 {
		t.Errorf("incident %s with %d alerts, act ran %d times; want one skipped incident with all 100, nothing run", inc.State, inc.EvidenceCount, f.rem.ran("act"))
	}
}
