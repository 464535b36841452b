package queue

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/remediator/remediator"
)

// A stream at its limit refuses what comes with a reason the sender can act on, and keeps
// everything it took before.
func TestAFullStreamRefusesWithTheReasonAndLosesNothing(t *testing.T) {
	q := openQueue(t, Options{Limits: map[string]Limit{"events": {MaxBytes: 64 << 10}}})
	ctx := context.Background()
	data := make([]byte, 4<<10)
	var stored int
	var err error
	for i := range 100 {
		if _, err = q.Publish(ctx, SubjectAlerts, data, fmt.Sprint("m", i)); err != nil {
			break
		}
		stored++
	}
	if err == nil || remediator.ErrorCode(err) != remediator.EUNAVAILABLE || !strings.Contains(err.Error(), "is full") || !strings.Contains(err.Error(), "nats.limits") {
		t.Fatalf("publish past the limit: %v, want unavailable, saying the stream is full and what to raise", err)
	}
	info, ierr := q.js.Stream(ctx, streamEvents)
	if ierr != nil {
		t.Fatal(ierr)
	}
	if st := info.CachedInfo().State; int(st.Msgs) != stored || st.FirstSeq != 1 {
		t.Errorf("stream holds %d messages from %d, want the %d it accepted, none dropped", st.Msgs, st.FirstSeq, stored)
	}
	if _, err := Open(ctx, Options{StoreDir: t.TempDir(), Limits: map[string]Limit{"event": {MaxBytes: 1}}}); err == nil || !strings.Contains(err.Error(), "nats.limits.event: no such stream or bucket") {
		t.Errorf("a limit of an unknown name: %v", err)
	}
}

// A message that keeps failing is given up after MaxDeliver deliveries, recorded as a dead
// letter and counted; it does not come back forever.
func TestAPoisonMessageBecomesADeadLetter(t *testing.T) {
	q := openQueue(t, Options{MaxDeliver: 3, Backoff: []time.Duration{50 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := q.Publish(ctx, SubjectRun, []byte(`{"incident":"poison"}`), "poison"); err != nil {
		t.Fatal(err)
	}
	var deliveries atomic.Int32
	go func() {
		_ = q.Consume(ctx, Executor, 1, time.Second, func(ctx context.Context, d Delivery) error {
			deliveries.Add(1)
			return remediator.Errorf(remediator.EUNAVAILABLE, "etcd unreachable")
		}, nil)
	}()
	deadline := time.Now().Add(20 * time.Second)
	var dead []DeadLetter
	for len(dead) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		var err error
		if dead, err = q.DeadLetters(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(dead) != 1 || dead[0].Deliveries != 3 || dead[0].Subject != SubjectRun || !strings.Contains(dead[0].Error, "etcd unreachable") || string(dead[0].Data) != `{"incident":"poison"}` {
		t.Fatalf("dead letters %+v, want the message after 3 deliveries with its error", dead)
	}
	if n := testutil.ToFloat64(q.deadLetters.WithLabelValues("executor")); n != 1 {
		t.Errorf("dead letters counted %v, want 1", n)
	}
	time.Sleep(500 * time.Millisecond) // the backoff is 50ms: a redelivery would come well within this
	if n := deliveries.Load(); n != 3 {
		t.Errorf("%d deliveries, want 3 and no more", n)
	}
}

// A message that must wait is parked apart: its consumer holds nothing pending while it
// waits, and the message comes back when due.
func TestAWaitIsParkedApartAndComesBackWhenDue(t *testing.T) {
	q := openQueue(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = q.RunWaits(ctx, time.Second) }()
	if _, err := q.Publish(ctx, SubjectRun, []byte(`{"incident":"later"}`), "later"); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	back := make(chan time.Time, 1)
	parked := time.Now()
	go func() {
		_ = q.Consume(ctx, Executor, 1, time.Second, func(ctx context.Context, d Delivery) error {
			if calls.Add(1) == 1 {
				return remediator.RetryLater(2*time.Second, "waiting for the cluster lock")
			}
			back <- time.Now()
			return nil
		}, nil)
	}()
	deadline := time.Now().Add(time.Second)
	for calls.Load() == 0 || time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if time.Now().After(parked.Add(10 * time.Second)) {
			t.Fatal("never delivered")
		}
	}
	cons, err := q.js.Consumer(ctx, streamWork, Executor.name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("while the message waits, the executor holds %d pending acks and %d pending messages, want none", info.NumAckPending, info.NumPending)
	}
	select {
	case at := <-back:
		if at.Sub(parked) < 2*time.Second {
			t.Errorf("back after %s, before it was due", at.Sub(parked))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the parked message did not come back")
	}
}

// An incident update that could never fit a NATS message is refused as too large, which the
// queue does not retry, and the incident stays as it was.
func TestAnUpdateThatCannotFitIsPermanent(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	if err := q.Incidents.Create(ctx, remediator.NewIncident("big", "prod", remediator.Decision{Remediation: "r"}, time.Now())); err != nil {
		t.Fatal(err)
	}
	_, err := q.Incidents.Update(ctx, "big", func(inc *remediator.Incident) error {
		inc.RootCause = strings.Repeat("x", embeddedMaxPayload)
		return nil
	})
	if remediator.ErrorCode(err) != remediator.ETOOLARGE || remediator.Retriable(err) || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("update: %v, want too_large, not retriable, naming max_payload", err)
	}
	if inc, err := q.Incidents.Get(ctx, "big"); err != nil || inc.RootCause != "" {
		t.Errorf("incident after the refused update: %v", err)
	}
}
