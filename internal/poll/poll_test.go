package poll_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/poll"
)

func TestUntil(t *testing.T) {
	notYet := errors.New("member m2 not healthy yet")
	final := errors.New("member m2 was removed")
	for _, tc := range []struct {
		name   string
		within time.Duration
		check  func(n int) (bool, error)
		want   []error // errors.Is targets; nil: success
		calls  int     // at least
	}{
		{name: "done at once", within: time.Second, check: func(int) (bool, error) { return true, nil }, calls: 1},
		{name: "done on the third call", within: 5 * time.Second, check: func(n int) (bool, error) { return n == 3, notYet }, calls: 3},
		{name: "deadline keeps the last error", within: 30 * time.Millisecond, check: func(int) (bool, error) { return false, notYet }, want: []error{poll.ErrTimeout, notYet}, calls: 2},
		{name: "stop ends at once", within: time.Minute, check: func(int) (bool, error) { return false, poll.Stop(final) }, want: []error{final}, calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := poll.Until(context.Background(), tc.within, time.Millisecond, func(context.Context) (bool, error) {
				n++
				return tc.check(n)
			})
			if n < tc.calls {
				t.Errorf("check called %d times, want at least %d", n, tc.calls)
			}
			if tc.want == nil && err != nil {
				t.Fatalf("Until: %v", err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Until: %v, want it to be %v", err, w)
				}
			}
			if tc.want != nil && errors.Is(err, poll.ErrTimeout) != errors.Is(tc.want[0], poll.ErrTimeout) {
				t.Errorf("Until: %v: timeout reported wrongly", err)
			}
		})
	}
}

func TestUntilEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := poll.Until(ctx, 0, time.Hour, func(context.Context) (bool, error) { return false, nil })
	if !errors.Is(err, context.Canceled) || errors.Is(err, poll.ErrTimeout) {
		t.Fatalf("Until on a cancelled context: %v, want context.Canceled and no timeout", err)
	}
}

// A wait shorter than one look still gets that look's answer: Looks does not cut it short.
func TestLooksLetsTheLastLookFinish(t *testing.T) {
	notYet := errors.New("kube-apiserver not ready")
	n := 0
	err := poll.Looks(context.Background(), time.Millisecond, time.Millisecond, func(ctx context.Context) (bool, error) {
		n++
		if err := poll.Sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatalf("the look was cut short: %v", err)
		}
		return n == 1, nil
	})
	if err != nil || n != 1 {
		t.Fatalf("Looks = %v after %d looks, want the first look's success", err, n)
	}
	err = poll.Looks(context.Background(), 10*time.Millisecond, time.Millisecond, func(context.Context) (bool, error) { return false, notYet })
	if !errors.Is(err, poll.ErrTimeout) || !errors.Is(err, notYet) {
		t.Fatalf("Looks past its deadline = %v, want ErrTimeout with the last error", err)
	}
	// A look that stops the wait past the deadline is that error, not a timeout.
	final := errors.New("the member is still in the cluster")
	err = poll.Looks(context.Background(), time.Millisecond, time.Millisecond, func(ctx context.Context) (bool, error) {
		_ = poll.Sleep(ctx, 5*time.Millisecond)
		return false, poll.Stop(final)
	})
	if !errors.Is(err, final) || errors.Is(err, poll.ErrTimeout) {
		t.Fatalf("Looks stopped past its deadline = %v, want the stop's error and no timeout", err)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := poll.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context = %v", err)
	}
	if err := poll.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
