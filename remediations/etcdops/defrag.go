package etcdops

import (
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
)

// Defragmented is the record of one member's defragmentation.
type Defragmented struct {
	ID     string        `json:"id"`
	Name   string        `json:"name"`
	Leader bool          `json:"leader"`
	Before int64         `json:"db_size_before"`
	After  int64         `json:"db_size_after"`
	Took   time.Duration `json:"took_ns"`
	At     time.Time     `json:"at"`
}

// String says what defragmenting the member gave, as step outputs show it.
func (d Defragmented) String() string {
	role := "follower"
	if d.Leader {
		role = "leader"
	}
	return fmt.Sprintf("%s (%s, %s): %s -> %s in %s", d.Name, d.ID, role,
		remediator.HumanBytes(d.Before), remediator.HumanBytes(d.After), d.Took.Round(time.Millisecond))
}

// DefragOptions tune Defragment.
type DefragOptions struct {
	// Timeout bounds one member's defragmentation.
	Timeout time.Duration
	// HealthTimeout is how long a member may take to be healthy again afterwards.
	HealthTimeout time.Duration
	// Pause waits between members, to let the last one settle.
	Pause time.Duration
	// Done holds the members an earlier, interrupted attempt finished; they are not
	// defragmented again.
	Done []Defragmented
	// Only, if set, picks the members to defragment; the others are left as they are but
	// still checked with the rest of the cluster before each member.
	Only func(remediator.MemberStatus) bool
	// Fence, if set, records each member's defragmentation and its deadline while it runs:
	// it goes on on the server if this process stops, and nobody else may start meanwhile.
	Fence func(ctx context.Context, op string, deadline time.Time) (done func(), err error)
	// OnDone is called after each member with every member done so far, to save progress.
	OnDone func(ctx context.Context, done []Defragmented) error
}

// Defragment defragments the members one at a time, followers first and the leader last, as
// the etcd maintainers' own tools do: defragmentation blocks a member while it runs, and the
// leader blocking is what costs the cluster most. Before each member it checks that the
// cluster is Safe, and after it that the member is healthy again; otherwise it stops with an
// EPRECONDITION error and touches no further member.
func Defragment(ctx context.Context, mt clientv3.Maintenance, members []Member, opts DefragOptions) ([]Defragmented, error) {
	done := slices.Clone(opts.Done)
	isDone := func(m Member) bool {
		return slices.ContainsFunc(done, func(d Defragmented) bool { return d.ID == fmt.Sprintf("%x", m.ID) })
	}
	for {
		statuses, err := Status(ctx, mt, members)
		if err != nil {
			return done, err
		}
		next, st, ok := nextToDefragment(members, statuses, isDone, opts.Only)
		if !ok {
			return done, nil
		}
		if err := Safe(statuses); err != nil {
			return done, remediator.Errorf(remediator.EPRECONDITION, "not defragmenting %s: %w", next, err)
		}
		start := time.Now()
		unfence := func() {}
		if opts.Fence != nil {
			if unfence, err = opts.Fence(ctx, fmt.Sprintf("defragment %s", next), start.Add(opts.Timeout)); err != nil {
				return done, err
			}
		}
		dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		_, err = mt.Defragment(dctx, next.Endpoint)
		cancel()
		if err == nil || ctx.Err() == nil {
			// Over on the server too; cut short by our context, it may still run there.
			unfence()
		}
		if err != nil {
			return done, Classify(err, "defragment %s", next)
		}
		took := time.Since(start)
		after, err := waitHealthy(ctx, mt, next, opts.HealthTimeout)
		if err != nil {
			return done, err
		}
		done = append(done, Defragmented{ID: st.ID, Name: next.Name, Leader: st.Leader, Before: st.DBSize, After: after.DBSize, Took: took, At: time.Now()})
		if opts.OnDone != nil {
			if err := opts.OnDone(ctx, done); err != nil {
				return done, err
			}
		}
		if _, _, more := nextToDefragment(members, statuses, isDone, opts.Only); opts.Pause > 0 && more {
			select {
			case <-ctx.Done():
				return done, Classify(ctx.Err(), "pause after %s", next)
			case <-time.After(opts.Pause):
			}
		}
	}
}

// nextToDefragment picks the first follower not done yet, or the leader once it is the only
// one left; leadership is read afresh before every member, so a leader change is followed.
func nextToDefragment(members []Member, statuses []remediator.MemberStatus, isDone func(Member) bool, only func(remediator.MemberStatus) bool) (Member, remediator.MemberStatus, bool) {
	leader := -1
	for i, m := range members {
		if isDone(m) || only != nil && !only(statuses[i]) {
			continue
		}
		if statuses[i].Leader {
			leader = i
			continue
		}
		return m, statuses[i], true
	}
	if leader >= 0 {
		return members[leader], statuses[leader], true
	}
	return Member{}, remediator.MemberStatus{}, false
}

// waitHealthy polls a member until it answers with a leader, or the timeout passes.
func waitHealthy(ctx context.Context, mt clientv3.Maintenance, m Member, timeout time.Duration) (remediator.MemberStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st := memberStatus(ctx, mt, m)
		if st.Error == "" {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, remediator.Errorf(remediator.EPRECONDITION,
				"member %s is not healthy %s after its defragmentation (%s); stopping before the other members", m, timeout, st.Error)
		}
		select {
		case <-ctx.Done():
			return st, Classify(ctx.Err(), "wait for %s to be healthy", m)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
