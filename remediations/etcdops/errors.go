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
	args = append(args, err)
	format += ": %w"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return remediator.Errorf(remediator.EUNAVAILABLE, format, args...)
	}
	switch status.Code(rpctypes.Error(err)) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled,
		codes.Unauthenticated: // an expired auth token, which the client renews
		return remediator.Errorf(remediator.EUNAVAILABLE, format, args...)
	}
	return remediator.Errorf(remediator.EINTERNAL, format, args...)
}
