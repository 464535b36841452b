package etcdops

import (
	"context"
	"fmt"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
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
	// MovedTo is the member this one, the leader until then, handed leadership to before its
	// defragmentation (move_leader); Leader is whether it led while defragmented.
	MovedTo string `json:"moved_leadership_to,omitempty"`
}

// String says what defragmenting the member gave, as step outputs show it.
func (d Defragmented) String() string {
	role := "follower"
	if d.Leader {
		role = "leader"
	}
	if d.MovedTo != "" {
		role = "the leader, which handed leadership to " + d.MovedTo + " first"
	}
	return fmt.Sprintf("%s (%s, %s): %s -> %s in %s", d.Name, d.ID, role,
		remediator.HumanBytes(d.Before), remediator.HumanBytes(d.After), d.Took.Round(time.Millisecond))
}

// DefragOptions tune Defragment.
type DefragOptions struct {
	DefragParams
	// Only, if set, picks the members to defragment; the others are left as they are but
	// still checked with the rest of the cluster before each member.
	Only func(remediator.MemberStatus) bool
}

// DefragParams are the parameters of a rolling defragmentation, declared once for every
// remediation that runs one (package params reads them from an embedded field).
type DefragParams struct {
	// Pause waits between members, to let the last one settle.
	Pause time.Duration `param:"pause_between_members" default:"0s" doc:"wait between two members' defragmentation"`
	// DefragTimeout bounds one member's defragmentation.
	DefragTimeout time.Duration `param:"defrag_timeout" default:"5m" min:"1s" doc:"longest one member's defragmentation may take"`
	// HealthTimeout is how long a member may take to be healthy again afterwards.
	HealthTimeout time.Duration `param:"health_timeout" default:"30s" min:"1s" doc:"longest a member may take to be healthy after it"`
	// MoveLeader hands leadership to the most caught-up follower before the leader is
	// defragmented, as etcd-defrag's --move-leader does.
	MoveLeader bool `param:"move_leader" default:"true" doc:"hand leadership to the most caught-up follower before defragmenting the leader, so that the cluster keeps a leader that is not blocked"`
}

// defragProgress is what a defragmentation step saves after each member.
type defragProgress struct {
	Done []Defragmented `json:"done"`
}

// Defragment defragments the members one at a time, followers first and the leader last, as
// the etcd maintainers' own tools do: defragmentation blocks a member while it runs, and the
// leader blocking is what costs the cluster most. Before each member it checks that the
// cluster is Safe, and after it that the member is healthy again; otherwise it stops with an
// EPRECONDITION error and touches no further member. It runs as the step in does: it resumes
// from what an interrupted attempt saved (those members are not defragmented again, and are
// returned as earlier), saves after each member, and fences each member's defragmentation
// with its deadline, which goes on on the server if this process stops.
func Defragment(ctx context.Context, in remediator.StepInput, cl *clientv3.Client, members []Member, opts DefragOptions) (done, earlier []Defragmented, err error) {
	p, _, err := remediator.Progress[defragProgress](in) // none yet: start from the first member
	if err != nil {
		return nil, nil, err
	}
	done, err = defragment(ctx, in, cl, members, opts, p.Done)
	return done, p.Done, err
}

func defragment(ctx context.Context, in remediator.StepInput, cl *clientv3.Client, members []Member, opts DefragOptions, earlier []Defragmented) ([]Defragmented, error) {
	mt := clientv3.Maintenance(cl)
	done := slices.Clone(earlier)
	isDone := func(m Member) bool {
		return slices.ContainsFunc(done, func(d Defragmented) bool { return d.ID == fmt.Sprintf("%x", m.ID) })
	}
	for {
		statuses, err := Status(ctx, mt, members, nil)
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
		var movedTo string
		if st.Leader && opts.MoveLeader {
			if movedTo, err = handOff(ctx, cl, members, statuses, next); err != nil {
				return done, err
			}
			if movedTo != "" {
				// Read afresh: next is a follower now, defragmented as one.
				if statuses, err = Status(ctx, mt, members, nil); err != nil {
					return done, err
				}
				i := slices.IndexFunc(members, func(m Member) bool { return m.ID == next.ID })
				st = statuses[i]
			}
		}
		start := time.Now()
		unfence := func() {}
		if in.Fence != nil {
			if unfence, err = in.Fence(ctx, fmt.Sprintf("defragment %s", next), start.Add(opts.DefragTimeout)); err != nil {
				return done, err
			}
		}
		dctx, cancel := context.WithTimeout(ctx, opts.DefragTimeout)
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
		done = append(done, Defragmented{ID: st.ID, Name: next.Name, Leader: st.Leader, MovedTo: movedTo,
			Before: st.DBSize, After: after.DBSize, Took: took, At: time.Now()})
		if in.SaveProgress != nil {
			if err := in.SaveProgress(ctx, defragProgress{Done: done}); err != nil {
				return done, err
			}
		}
		if _, _, more := nextToDefragment(members, statuses, isDone, opts.Only); opts.Pause > 0 && more {
			if err := poll.Sleep(ctx, opts.Pause); err != nil {
				return done, Classify(err, "pause after %s", next)
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

// handOff moves leadership from the leader to the most caught-up voting follower, and returns
// that follower's name; with no follower to take it (a one-member cluster), it returns "" and
// the leader is defragmented as the leader. Only the leader can hand its leadership over, so
// the request goes to its endpoint.
func handOff(ctx context.Context, cl *clientv3.Client, members []Member, statuses []remediator.MemberStatus, leader Member) (string, error) {
	to := -1
	for i, st := range statuses {
		if members[i].ID == leader.ID || st.Learner || st.Error != "" {
			continue
		}
		if to < 0 || st.RaftIndex > statuses[to].RaftIndex {
			to = i
		}
	}
	if to < 0 {
		return "", nil
	}
	conn, err := cl.Dial(leader.Endpoint)
	if err != nil {
		return "", Classify(err, "dial the leader %s", leader)
	}
	defer conn.Close()
	mctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := clientv3.NewMaintenanceFromMaintenanceClient(pb.NewMaintenanceClient(conn), cl).MoveLeader(mctx, members[to].ID); err != nil {
		return "", Classify(err, "move leadership from %s to %s", leader, members[to])
	}
	return members[to].Name, nil
}

// waitHealthy polls a member until it answers with a leader, or the timeout passes.
func waitHealthy(ctx context.Context, mt clientv3.Maintenance, m Member, timeout time.Duration) (remediator.MemberStatus, error) {
	var st remediator.MemberStatus
	err := poll.Looks(ctx, timeout, 250*time.Millisecond, func(ctx context.Context) (bool, error) {
		st = memberStatus(ctx, mt, m)
		return st.Error == "", nil
	})
	switch {
	case err == nil:
		return st, nil
	case ctx.Err() != nil:
		return st, Classify(ctx.Err(), "wait for %s to be healthy", m)
	}
	return st, remediator.Errorf(remediator.EPRECONDITION,
		"member %s is not healthy %s after its defragmentation (%s); stopping before the other members", m, timeout, st.Error)
}
