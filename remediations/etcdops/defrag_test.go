package etcdops

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
)

// threeMembers starts a 3-member cluster for the test, and lists its members.
func threeMembers(ctx context.Context, t *testing.T) (*clientv3.Client, []Member) {
	t.Helper()
	etcd := etcdtest.New(t, etcdtest.Options{Members: 3})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	members, _, err := Members(ctx, cl, cl.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	return cl, members
}

// TestDefragmentHandsLeadershipOver defragments a 3-member cluster with and without
// move_leader: with it, the leader hands leadership to a follower first and is defragmented
// as a follower; without it, the leader is defragmented last, still leading.
func TestDefragmentHandsLeadershipOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, members := threeMembers(ctx, t)
	leader := func() string {
		t.Helper()
		statuses, err := Status(ctx, cl, members, nil)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(statuses, func(s remediator.MemberStatus) bool { return s.Leader })
		if i < 0 {
			t.Fatalf("no leader: %s", Describe(statuses))
		}
		return statuses[i].Name
	}
	in := remediator.StepInput{Log: slog.New(slog.DiscardHandler)}
	params := DefragParams{DefragTimeout: time.Minute, HealthTimeout: 30 * time.Second}

	for _, move := range []bool{false, true} {
		before := leader()
		params.MoveLeader = move
		done, _, err := Defragment(ctx, in, cl, members, DefragOptions{DefragParams: params})
		if err != nil {
			t.Fatalf("move_leader %v: %v", move, err)
		}
		if len(done) != 3 || done[2].Name != before {
			t.Fatalf("move_leader %v: defragmented %v, want all 3 with the leader %s last", move, done, before)
		}
		last, after := done[2], leader()
		switch {
		case !move && (after != before || !last.Leader || last.MovedTo != ""):
			t.Errorf("without move_leader: leader %s -> %s, last %+v; want %s leading throughout", before, after, last, before)
		case move && (after == before || after != last.MovedTo || last.Leader):
			t.Errorf("with move_leader: leader %s -> %s, last %+v; want %s defragmented as a follower of %s", before, after, last, before, last.MovedTo)
		}
		t.Logf("move_leader %v: %s", move, last)
	}
}
