package etcdops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator/internal/poll"
)

// compactTimeout bounds a compaction whose caller set no deadline: a physical compaction of
// a multi-gigabyte backend takes minutes.
const compactTimeout = 10 * time.Minute

// Compact compacts the keyspace to rev and waits until every member has applied it to its
// backend (so the space is free for defragmentation to reclaim). It reports already when a
// compaction at or after rev had happened, as it will when an interrupted attempt is repeated.
func Compact(ctx context.Context, kv clientv3.KV, rev int64) (already bool, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, compactTimeout)
		defer cancel()
	}
	_, err = kv.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted) {
		return true, nil
	}
	return false, Classify(err, "compact to revision %d", rev)
}

// CompactAndWait compacts the keyspace to rev (see Compact) and waits until every member has
// finished compacting: a compaction is applied by each member in the background, in batches,
// after the request returned, and a member defragmented before it finished gives back less
// space. Finished is each member's count of finished compactions (from its metrics) going up;
// where that cannot tell (a member's metrics unreadable, a repeated attempt whose compaction
// had happened, a member restarted meanwhile), it is no member's space in use changing
// between two looks half a second apart. After timeout it gives up waiting and says so;
// defragmentation is still safe, only less thorough.
func CompactAndWait(ctx context.Context, v View, rev int64, timeout time.Duration) (already bool, settled string, err error) {
	before, known := compactions(ctx, v)
	if already, err = Compact(ctx, v.Client, rev); err != nil || already || !known {
		if err == nil {
			settled, err = waitInUseSettled(ctx, v.Client, v.Members, timeout)
		}
		return already, settled, err
	}
	start := time.Now()
	restarted := false
	err = poll.Until(ctx, timeout, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		now, ok := compactions(ctx, v)
		if !ok {
			return false, nil
		}
		for i := range now {
			restarted = restarted || now[i] < before[i]
			if now[i] <= before[i] {
				return restarted, nil
			}
		}
		return true, nil
	})
	switch {
	case ctx.Err() != nil:
		return false, "", Classify(ctx.Err(), "wait for compaction")
	case restarted:
		settled, err = waitInUseSettled(ctx, v.Client, v.Members, max(timeout-time.Since(start), 0))
		return false, settled, err
	case errors.Is(err, poll.ErrTimeout):
		return false, fmt.Sprintf("members were still compacting after %s; defragmenting anyway", timeout), nil
	case err != nil:
		return false, "", err
	}
	return false, fmt.Sprintf("every member finished compacting within %s", time.Since(start).Round(time.Millisecond)), nil
}

// compactions reads every member's count of finished compactions; ok is false unless every
// member's metrics answered.
func compactions(ctx context.Context, v View) ([]uint64, bool) {
	if v.Metrics == nil {
		return nil, false
	}
	out := make([]uint64, len(v.Members))
	for i, m := range v.Members {
		n, err := Compactions(ctx, v.Metrics, m.Endpoint)
		if err != nil {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// waitInUseSettled waits until no member's space in use changes between two looks.
func waitInUseSettled(ctx context.Context, mt clientv3.Maintenance, members []Member, timeout time.Duration) (string, error) {
	start := time.Now()
	var last []int64
	var out string
	err := poll.Until(ctx, 0, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		statuses, err := Status(ctx, mt, members, nil)
		if err != nil {
			return false, poll.Stop(err)
		}
		if err := Safe(statuses); err != nil {
			return false, poll.Stop(err)
		}
		inUse := make([]int64, len(statuses))
		for i, s := range statuses {
			inUse[i] = s.DBSizeInUse
		}
		switch {
		case slices.Equal(inUse, last):
			out = fmt.Sprintf("every member finished compacting within %s", time.Since(start).Round(100*time.Millisecond))
		case time.Since(start) > timeout:
			out = fmt.Sprintf("members were still compacting after %s; defragmenting anyway", timeout)
		}
		last = inUse
		return out != "", nil
	})
	if ctx.Err() != nil {
		return "", Classify(ctx.Err(), "wait for compaction")
	}
	return out, err
}
