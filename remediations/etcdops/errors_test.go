package etcdops

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/remediator/remediator"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		// Between leaders, or slow: it may answer later.
		{rpctypes.ErrGRPCTimeoutDueToLeaderFail, remediator.EUNAVAILABLE},
		{rpctypes.ErrGRPCNoLeader, remediator.EUNAVAILABLE},
		{rpctypes.ErrGRPCTimeout, remediator.EUNAVAILABLE},
		{rpctypes.ErrGRPCLeaderChanged, remediator.EUNAVAILABLE},
		{rpctypes.ErrTimeoutDueToLeaderFail, remediator.EUNAVAILABLE}, // as the client returns it
		{fmt.Errorf("status: %w", context.DeadlineExceeded), remediator.EUNAVAILABLE},
		// It will not.
		{rpctypes.ErrGRPCNoSpace, remediator.EPRECONDITION},
		{rpctypes.ErrGRPCPermissionDenied, remediator.EINTERNAL},
		{errors.New("something else"), remediator.EINTERNAL},
	}
	for _, tt := range tests {
		if got := remediator.ErrorCode(Classify(tt.err, "alarm list")); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.err, got, tt.want)
		}
	}
}
