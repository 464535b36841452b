// Package polltest is the one way a test waits for something: poll with a deadline, and fail
// with what was awaited and what was last seen. A fixed sleep never decides a test.
package polltest

import (
	"context"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/poll"
)

// Interval is how often Until checks.
const Interval = 50 * time.Millisecond

// Until polls check until it reports done, and fails the test after within with what it
// waited for and what check last said.
func Until(t testing.TB, within time.Duration, what string, check func() (done bool, saw string)) {
	t.Helper()
	var saw string
	err := poll.Until(context.Background(), within, Interval, func(context.Context) (bool, error) {
		var done bool
		done, saw = check()
		return done, nil
	})
	if err != nil {
		t.Fatalf("waited %s for %s; last saw: %s", within, what, saw)
	}
}

// NoError polls f, giving it a context that ends with the deadline, until it returns nil, and
// fails the test after within with the last error.
func NoError(t testing.TB, within time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	err := poll.Until(context.Background(), within, Interval, func(ctx context.Context) (bool, error) {
		err := f(ctx)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("waited %s for %s: %v", within, what, err)
	}
}

// Receive waits for a value on ch, and fails the test after within with what it waited for.
func Receive[T any](t testing.TB, within time.Duration, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		t.Fatalf("waited %s for %s", within, what)
		panic("unreachable")
	}
}
