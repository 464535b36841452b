package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/polltest"
)

func openQueue(t *testing.T, opts Options) *Queue {
	t.Helper()
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	q, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func TestPublishStoresAMessageIDOnce(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	for i, want := range []bool{false, true, true} {
		dup, err := q.Publish(ctx, SubjectAlerts, []byte(`{}`), "am-1")
		if err != nil || dup != want {
			t.Errorf("publish %d: duplicate %v (%v), want %v", i, dup, err, want)
		}
	}
	if dup, _ := q.Publish(ctx, SubjectAlerts, []byte(`{}`), "am-2"); dup {
		t.Error("another message ID was taken for a duplicate")
	}
}

func TestPublishOverMaxPayloadIsTooLarge(t *testing.T) {
	q := openQueue(t, Options{})
	_, err := q.Publish(context.Background(), SubjectAlerts, make([]byte, embeddedMaxPayload+1), "big")
	if remediator.ErrorCode(err) != remediator.ETOOLARGE {
		t.Errorf("error %v, want too_large", err)
	}
}

// consumeAll runs a consumer until stop is closed, returning every delivery it saw.
func consumeAll(t *testing.T, q *Queue, c Consumer, h Handler) (seen func() []Delivery, stop func() []Delivery) {
	t.Helper()
	var (
		mu         sync.Mutex
		deliveries []Delivery
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Consume(ctx, c, 2, time.Second, func(ctx context.Context, d Delivery) error {
			mu.Lock()
			deliveries = append(deliveries, d)
			mu.Unlock()
			return h(ctx, d)
		}, nil)
	}()
	seen = func() []Delivery {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(deliveries)
	}
	return seen, func() []Delivery {
		cancel()
		<-done
		return seen()
	}
}

func TestConsumeActsOnWhetherRetryingMakesSense(t *testing.T) {
	q := openQueue(t, Options{Backoff: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}})
	ctx := context.Background()
	for _, id := range []string{"ok", "flaky", "broken", "hopeless"} {
		if _, err := q.Publish(ctx, SubjectRun, []byte(id), id); err != nil {
			t.Fatal(err)
		}
	}
	seen, stop := consumeAll(t, q, Executor, func(ctx context.Context, d Delivery) error {
		switch string(d.Data) {
		case "flaky": // fails once in a way that may pass
			if d.Attempt == 1 {
				return remediator.Errorf(remediator.EUNAVAILABLE, "etcd is slow")
			}
		case "broken":
			return remediator.Errorf(remediator.EPRECONDITION, "a member is down")
		case "hopeless":
			return remediator.Errorf(remediator.EUNAVAILABLE, "etcd is still slow")
		}
		return nil
	})
	attempts := func(ds []Delivery) map[string][]int {
		got := map[string][]int{}
		for _, d := range ds {
			got[string(d.Data)] = append(got[string(d.Data)], d.Attempt)
		}
		return got
	}
	// A retriable failure is never given up by the queue: about every 100ms, on and on.
	polltest.Until(t, 20*time.Second, "flaky to succeed on its second attempt and hopeless to be retried 5 times", func() (bool, string) {
		got := attempts(seen())
		return len(got["flaky"]) >= 2 && len(got["hopeless"]) >= 5, fmt.Sprint(got)
	})
	got := attempts(stop())
	want := map[string]string{"ok": "[1]", "flaky": "[1 2]", "broken": "[1]"}
	for id, w := range want {
		if fmt.Sprint(got[id]) != w {
			t.Errorf("%s deliveries %v, want %s", id, got[id], w)
		}
	}
}

func TestLongWorkIsNotRedeliveredWhileItRuns(t *testing.T) {
	q := openQueue(t, Options{AckWait: time.Second})
	if _, err := q.Publish(context.Background(), SubjectRun, []byte("slow"), "slow"); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int32
	finished := make(chan struct{}, 1)
	_, stop := consumeAll(t, q, Executor, func(ctx context.Context, d Delivery) error {
		runs.Add(1)
		select { // work that lasts three ack waits
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
		}
		select {
		case finished <- struct{}{}:
		default:
		}
		return nil
	})
	polltest.Receive(t, 20*time.Second, "the first delivery's work to finish", finished)
	stop()
	if n := runs.Load(); n != 1 {
		t.Errorf("the message was delivered %d times while its handler ran, want once", n)
	}
}

func newIncident(id string) *remediator.Incident {
	return remediator.NewIncident(id, "prod", remediator.Decision{Policy: "p", Remediation: "r", Mode: remediator.ModeAuto}, time.Now())
}

func TestStoreCompareAndSetKeepsEveryConcurrentChange(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	s := q.Incidents
	if err := s.Create(ctx, newIncident("inc-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, newIncident("inc-1")); remediator.ErrorCode(err) != remediator.ECONFLICT {
		t.Errorf("second create: %v, want conflict", err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				_, err := s.Update(ctx, "inc-1", func(inc *remediator.Incident) error {
					inc.AddEvidence([]remediator.Alert{{Fingerprint: fmt.Sprintf("w%d-%d", w, i), Status: remediator.AlertFiring}})
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	inc, err := s.Get(ctx, "inc-1")
	if err != nil || len(inc.Evidence) != 40 {
		t.Errorf("evidence %d (%v), want all 40 concurrent additions", len(inc.Evidence), err)
	}
	if _, err := s.Get(ctx, "nope"); remediator.ErrorCode(err) != remediator.ENOTFOUND {
		t.Errorf("get unknown: %v, want not_found", err)
	}
	stop := errors.New("stop")
	if _, err := s.Update(ctx, "inc-1", func(*remediator.Incident) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("update whose function fails: %v, want its error", err)
	}
}

func TestOneOpenIncidentPerClusterAndRemediation(t *testing.T) {
	q := openQueue(t, Options{})
	ctx := context.Background()
	s := q.Incidents
	if id, err := s.ClaimOpen(ctx, "prod", "r", "inc-1"); err != nil || id != "inc-1" {
		t.Fatalf("first claim: %q %v", id, err)
	}
	if err := s.Create(ctx, newIncident("inc-1")); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.ClaimOpen(ctx, "prod", "r", "inc-2"); id != "inc-1" {
		t.Errorf("second claim got %q, want the open inc-1", id)
	}
	if id, _ := s.ClaimOpen(ctx, "staging", "r", "inc-3"); id != "inc-3" {
		t.Errorf("claim on another cluster got %q, want inc-3", id)
	}
	if _, err := s.Update(ctx, "inc-1", func(inc *remediator.Incident) error {
		inc.SetState(remediator.StateSucceeded, "", time.Now())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.ClaimOpen(ctx, "prod", "r", "inc-4"); id != "inc-4" {
		t.Errorf("claim after inc-1 finished got %q, want inc-4", id)
	}
}
