package etcdops

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/remediator/remediator"
)

// Classify gives an etcd call's error the code that says whether trying again makes sense:
// a member that is down, slow or between leaders may answer later; anything else will not.
func Classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = noAnswer{err}
	}
	args = append(args, err)
	format += ": %w"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return remediator.Errorf(remediator.EUNAVAILABLE, format, args...)
	}
	if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
		// Out of space stays so until a recovery frees it: trying again changes nothing.
		return remediator.Errorf(remediator.EPRECONDITION, format, args...)
	}
	// A known etcd error (no leader, leader changed, request timed out) converts to an
	// EtcdError, which carries its gRPC code but is no gRPC status.
	code := status.Code(err)
	var known rpctypes.EtcdError
	if errors.As(rpctypes.Error(err), &known) {
		code = known.Code()
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled,
		codes.Unauthenticated: // an expired auth token, which the client renews
		return remediator.Errorf(remediator.EUNAVAILABLE, format, args...)
	}
	return remediator.Errorf(remediator.EINTERNAL, format, args...)
}

// noAnswer is a call that ran out of time, said as an operator reads it: the member did not
// answer; errors.Is still sees the deadline.
type noAnswer struct{ err error }

func (e noAnswer) Error() string {
	return "no answer in time (etcd down, overloaded, or not reachable from here)"
}

func (e noAnswer) Unwrap() error { return e.err }
