// Package poll waits for a condition with a deadline: the one loop that steps, the agent and
// tests use instead of writing their own.
package poll

import (
	"context"
	"errors"
	"time"
)

// ErrTimeout is what Until returns, joined with the last error check saw, when the deadline
// passes before check is satisfied.
var ErrTimeout = errors.New("timed out")

// Until calls check at once and then every interval until it reports done, returns an error
// wrapped in Stop, or within has passed (within <= 0: until ctx ends). A plain error from check
// is the condition not yet met; the last one is returned with ErrTimeout. The context each check
// gets ends with the deadline, so a check that blocks cannot outlive it.
func Until(ctx context.Context, within, interval time.Duration, check func(ctx context.Context) (done bool, err error)) error {
	if within > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, within)
		defer cancel()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) && within > 0 {
				return errors.Join(ErrTimeout, last)
			}
			return errors.Join(context.Cause(ctx), last)
		case <-t.C:
		}
		done, err := check(ctx)
		var stop *stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		t.Reset(interval)
	}
}

// Stop marks an error from a check as final: Until returns it at once instead of trying again.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err: err}
}

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// Sleep waits for d, or until ctx ends, whose error it then returns.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Looks polls check as Until does, except that within bounds when a look may start, not the
// looks themselves: each runs with ctx to its end, and a look that ends past the deadline is
// the last. It returns ErrTimeout when that one was not done either. It is for looks that take
// long (a health request, the status of every member) and that a wait must not cut short: a
// wait shorter than one look still gets that look's answer.
func Looks(ctx context.Context, within, interval time.Duration, check func(ctx context.Context) (done bool, err error)) error {
	deadline := time.Now().Add(within)
	return Until(ctx, 0, interval, func(ctx context.Context) (bool, error) {
		done, err := check(ctx)
		var stop *stopError
		if !done && !errors.As(err, &stop) && time.Now().After(deadline) {
			return false, Stop(errors.Join(ErrTimeout, err))
		}
		return done, err
	})
}
