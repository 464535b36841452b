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
