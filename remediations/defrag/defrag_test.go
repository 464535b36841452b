package defrag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

func newRunner(t *testing.T, r *Remediation, params map[string]string) *steptest.Runner {
	t.Helper()
	return steptest.New(t, r.Plan, "test", params)
}

// done is what the defragment step saved as done.
func done(t *testing.T, rn *steptest.Runner) []etcdops.Defragmented {
	t.Helper()
	var p struct {
		Done []etcdops.Defragmented `json:"done"`
	}
	if err := json.Unmarshal(rn.Incident.Steps[rn.Index("defragment")].Progress, &p); err != nil {
		t.Fatalf("defragment progress %s: %v", rn.Incident.Steps[rn.Index("defragment")].Progress, err)
	}
	return p.Done
}

// testParams defragment the few MiB a test can fragment quickly.
var testParams = map[string]string{"min_reclaim_bytes": fmt.Sprint(1 << 20)}

func startCluster(t *testing.T, members int) (*etcdtest.Cluster, *clientv3.Client, *Remediation) {
	t.Helper()
	return startClusterAt(t, members, etcdtest.DefaultVersion)
}

// startClusterAt is startCluster on the given etcd version.
func startClusterAt(t *testing.T, members int, v etcdtest.Version) (*etcdtest.Cluster, *clientv3.Client, *Remediation) {
	t.Helper()
	etcd := etcdtest.New(t, etcdtest.Options{Members: members, Version: v})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: etcd.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	return etcd, cl, New(clients)
}

// fragment leaves every member's database mostly free pages, as data that was deleted and
// compacted does: it writes large values, deletes them, compacts physically, and waits until
// every member has freed the pages. Some data stays, so that a defragmented database is mostly
// data rather than bbolt's fixed overhead.
func fragment(t *testing.T, etcd *etcdtest.Cluster, cl *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	value := strings.Repeat("x", 64<<10)
	for i := range 176 {
		key := fmt.Sprintf("junk/%d", i)
		if i%11 == 0 {
			key = fmt.Sprintf("live/%d", i)
		}
		if _, err := cl.Put(ctx, key, value); err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
	}
	del, err := cl.Delete(ctx, "junk/", clientv3.WithPrefix())
	if err != nil || del.Deleted != 160 {
		t.Fatalf("deleted %v (%v), want 160 keys", del, err)
	}
	if _, err := cl.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for _, m := range etcd.Members {
		for {
			// bbolt counts the pages a commit frees as free only at a later commit, and etcd
			// commits only when there is something to write.
			if _, err := cl.Put(ctx, "tick", "tock"); err != nil {
				t.Fatal(err)
			}
			st, err := cl.Status(ctx, m.ClientURL)
			if err != nil {
				t.Fatalf("status of %s: %v", m.Name, err)
			}
			if frag := 1 - float64(st.DbSizeInUse)/float64(st.DbSize); frag >= 0.8 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: db %d bytes, %d in use: not fragmented", m.Name, st.DbSize, st.DbSizeInUse)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// lead moves the leadership to the member, so that a test can tell leader last from the
// members' order by name.
func lead(t *testing.T, etcd *etcdtest.Cluster, cl *clientv3.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := map[string]uint64{}
	var leader, leaderURL string
	for _, m := range etcd.Members {
		st, err := cl.Status(ctx, m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.Name] = st.Header.MemberId
		if st.Leader == st.Header.MemberId {
			leader, leaderURL = m.Name, m.ClientURL
		}
	}
	if leader == name {
		return
	}
	// MoveLeader is only taken by the leader.
	lc, err := clientv3.New(clientv3.Config{Endpoints: []string{leaderURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if _, err := lc.MoveLeader(ctx, ids[name]); err != nil {
		t.Fatalf("move the leadership to %s: %v", name, err)
	}
	for _, m := range etcd.Members {
		for {
			st, err := cl.Status(ctx, m.ClientURL)
			if err == nil && st.Leader == ids[name] {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s does not see %s as its leader: %v", m.Name, name, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// defragTimes returns when each member finished defragmenting, from the members' own logs.
func defragTimes(t *testing.T, etcd *etcdtest.Cluster) map[string][]time.Time {
	t.Helper()
	times := map[string][]time.Time{}
	for _, m := range etcd.Members {
		ts, err := m.LogLines("finished defragment")
		if err != nil {
			t.Fatal(err)
		}
		times[m.Name] = ts
	}
	return times
}

func TestDefragmentsTheFragmentedMembersLeaderLast(t *testing.T) {
	etcdtest.EachVersion(t, testDefragmentsTheFragmentedMembersLeaderLast)
}

func testDefragmentsTheFragmentedMembersLeaderLast(t *testing.T, v etcdtest.Version) {
	etcd, cl, r := startClusterAt(t, 3, v)
	fragment(t, etcd, cl)
	lead(t, etcd, cl, "m1")
	rn := newRunner(t, r, testParams)

	res, failed, err := rn.All()
	if err != nil {
		t.Fatalf("step %s: %v\n%s", failed, err, res[failed].Output)
	}
	for _, step := range []string{"preflight", "defragment", "verify"} {
		t.Logf("%s:\n%s", step, res[step].Output)
	}
	if n := strings.Count(res["preflight"].Output, ": to defragment"); n != 3 {
		t.Errorf("preflight marked %d members to defragment, want 3:\n%s", n, res["preflight"].Output)
	}
	before, after := rn.Incident.Before, rn.Incident.After
	if len(before) != 3 || len(after) != 3 {
		t.Fatalf("figures of %d members before and %d after, want 3 and 3", len(before), len(after))
	}
	for _, b := range before {
		i := slices.IndexFunc(after, func(a remediator.MemberStatus) bool { return a.ID == b.ID })
		if i < 0 {
			t.Fatalf("member %s has no figures after", b.Name)
		}
		a := after[i]
		if a.DBSize >= b.DBSize {
			t.Errorf("member %s: db %d bytes after, %d before: want it smaller", b.Name, a.DBSize, b.DBSize)
		}
		if ratio := float64(a.DBSizeInUse) / float64(a.DBSize); ratio < 0.9 {
			t.Errorf("member %s: %d of %d bytes in use after (%.2f), want nearly all", b.Name, a.DBSizeInUse, a.DBSize, ratio)
		}
	}

	done := done(t, rn)
	// move_leader (the default): m1 hands leadership over, and is defragmented as a follower.
	if len(done) != 3 || done[2].Name != "m1" || done[2].MovedTo == "" || done[2].Leader || done[0].MovedTo != "" || done[1].MovedTo != "" {
		t.Fatalf("defragmented %+v, want the two followers and then the leader, m1, after it handed leadership over", done)
	}
	times := defragTimes(t, etcd)
	leader := "m1"
	for name, ts := range times {
		if len(ts) != 1 {
			t.Errorf("member %s was defragmented %d times, want once", name, len(ts))
		} else if name != leader && !ts[0].Before(times[leader][0]) {
			t.Errorf("member %s was defragmented at %s, not before the leader %s at %s", name, ts[0], leader, times[leader][0])
		}
	}
	if !strings.Contains(res["verify"].Output, "(before: ") {
		t.Errorf("verify does not compare with before:\n%s", res["verify"].Output)
	}
}

func TestRefusesWhileAMemberIsDown(t *testing.T) {
	etcd, cl, r := startCluster(t, 3)
	fragment(t, etcd, cl)
	etcd.Members[2].Kill()
	rn := newRunner(t, r, testParams)

	res, err := rn.Step("preflight")
	if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(fmt.Sprint(err), "refusing to defragment") || !strings.Contains(fmt.Sprint(err), "member m3") {
		t.Errorf("preflight with m3 down: %v, want a refusal naming m3", err)
	}
	if len(res.Before) != 3 {
		t.Errorf("preflight figures of %d members, want all 3 for the report", len(res.Before))
	}
	// The step refuses on its own as well: a member can die after the preflight, while an
	// approval is awaited.
	if _, err := rn.Step("defragment"); remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(fmt.Sprint(err), "member m3") {
		t.Errorf("defragment with m3 down: %v, want a refusal naming m3", err)
	}
	for name, ts := range defragTimes(t, etcd) {
		if len(ts) > 0 {
			t.Errorf("member %s was defragmented although m3 was down", name)
		}
	}
}

func TestDefragmentResumesFromItsProgress(t *testing.T) {
	etcd, cl, r := startCluster(t, 3)
	fragment(t, etcd, cl)
	rn := newRunner(t, r, testParams)
	pre, err := rn.Step("preflight")
	if err != nil {
		t.Fatal(err)
	}
	// An earlier attempt defragmented a follower and was interrupted before the others.
	follower := pre.Before[slices.IndexFunc(pre.Before, func(s remediator.MemberStatus) bool { return !s.Leader })]
	earlier := etcdops.Defragmented{ID: follower.ID, Name: follower.Name, Before: follower.DBSize, After: 1 << 20, At: time.Now()}
	rn.Incident.Steps[rn.Index("defragment")].Progress, _ = json.Marshal(map[string]any{"done": []etcdops.Defragmented{earlier}})

	res, err := rn.Step("defragment")
	if err != nil {
		t.Fatal(err)
	}
	for name, ts := range defragTimes(t, etcd) {
		want := 1
		if name == follower.Name {
			want = 0
		}
		if len(ts) != want {
			t.Errorf("member %s was defragmented %d times, want %d", name, len(ts), want)
		}
	}
	if done := done(t, rn); len(done) != 3 || done[0].ID != follower.ID || done[2].MovedTo == "" {
		t.Errorf("progress %+v, want the earlier member first and the leader last", done)
	}
	if !strings.Contains(res.Output, follower.Name+" ("+follower.ID+", follower): ") || !strings.Contains(res.Output, "by an earlier attempt") {
		t.Errorf("output does not report the earlier attempt's member:\n%s", res.Output)
	}
}

// A member fragmented, but with less free than min_reclaim_bytes, is not worth blocking:
// there is nothing to do, and its db keeps the free pages a defragmentation would give back.
func TestPreflightFindsNothingToDoWhenNothingIsFragmentedEnough(t *testing.T) {
	etcd, cl, r := startCluster(t, 1)
	fragment(t, etcd, cl)
	before := dbSize(t, cl, etcd.Members[0].ClientURL)
	rn := newRunner(t, r, nil)
	res, failed, err := rn.All()
	var nothing *remediator.NothingToDo
	if failed != "preflight" || !errors.As(err, &nothing) ||
		!strings.Contains(nothing.Reason, "no member is at least 50% fragmented with 100.0 MiB free") {
		t.Errorf("step %q: %v; want preflight to find nothing to do", failed, err)
	}
	if !strings.Contains(res["preflight"].Output, "m1 (") || !strings.Contains(res["preflight"].Output, "free, not worth blocking it, left alone") || len(res["preflight"].Before) != 1 {
		t.Errorf("preflight output %q, figures %+v: want the member described", res["preflight"].Output, res["preflight"].Before)
	}
	if s := rn.Incident.Steps[rn.Index("defragment")]; s.State != remediator.StepSkipped {
		t.Errorf("defragment is %s, want skipped", s.State)
	}
	if ts := defragTimes(t, etcd)["m1"]; len(ts) > 0 {
		t.Errorf("m1 was defragmented")
	}
	if after := dbSize(t, cl, etcd.Members[0].ClientURL); after != before {
		t.Errorf("m1's db went from %d to %d bytes, want it untouched", before, after)
	}
}

// dbSize is the member's db size once two looks in a row agree: a write reaches it at the
// backend's batch commit, a moment after it is acknowledged.
func dbSize(t *testing.T, cl *clientv3.Client, endpoint string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := int64(-1)
	for {
		st, err := cl.Status(ctx, endpoint)
		if err != nil {
			t.Fatalf("status of %s: %v", endpoint, err)
		}
		if st.DbSize == last {
			return last
		}
		last = st.DbSize
		select {
		case <-ctx.Done():
			t.Fatalf("%s: db size never settled", endpoint)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func TestAssess(t *testing.T) {
	const mib = 1 << 20
	st := func(size, inUse int64) remediator.MemberStatus {
		return remediator.MemberStatus{ID: "a1", Name: "m1", Version: "3.6.0", DBSize: size, DBSizeInUse: inUse}
	}
	tests := []struct {
		name   string
		status remediator.MemberStatus
		worth  bool
		say    string
	}{
		{"fragmented", st(400*mib, 100*mib), true, "m1 (a1): 75% fragmented, 300.0 MiB of its 400.0 MiB db free: to defragment"},
		{"just at the ratio", st(400*mib, 200*mib), true, "m1 (a1): 50% fragmented, 200.0 MiB of its 400.0 MiB db free: to defragment"},
		{"under the ratio", st(400*mib, 300*mib), false, "m1 (a1): 25% fragmented, 100.0 MiB of its 400.0 MiB db free: under 50%, left alone"},
		{"too little to give back", st(20*mib, 2*mib), false,
			"m1 (a1): 90% fragmented, 18.0 MiB of its 20.0 MiB db free: under 100.0 MiB free, not worth blocking it, left alone"},
		{"no space in use reported", st(400*mib, 0), false, "m1 (a1): does not report its space in use (etcd 3.6.0): left alone"},
		{"unreachable", remediator.MemberStatus{ID: "a1", Name: "m1", Error: "connection refused"}, false, "m1 (a1): no status: connection refused"},
	}
	s, err := params.Of[Params](nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := s.assess(tt.status)
			if a.worth != tt.worth || a.String() != tt.say {
				t.Errorf("assess = %v, %q\nwant %v, %q", a.worth, a.String(), tt.worth, tt.say)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		err    string
	}{
		{"defaults", nil, ""},
		{"all set", map[string]string{"min_fragmentation_ratio": "0.3", "min_reclaim_bytes": "1073741824",
			"pause_between_members": "10s", "defrag_timeout": "10m", "health_timeout": "1m"}, ""},
		{"ratio over one", map[string]string{"min_fragmentation_ratio": "1.5"},
			`params.min_fragmentation_ratio: "1.5" must be a number above 0 and at most 1`},
		{"negative bytes", map[string]string{"min_reclaim_bytes": "-1"},
			`params.min_reclaim_bytes: "-1" must be a positive number of bytes`},
		{"unknown", map[string]string{"ratio": "0.5"},
			"params.ratio: unknown parameter (known: [defrag_timeout health_timeout min_fragmentation_ratio min_reclaim_bytes move_leader pause_between_members])"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := New(nil).Plan(tt.params)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || remediator.ErrorCode(err) != remediator.EINVALID {
					t.Errorf("error %v, want EINVALID %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				got = append(got, s.Name+":"+string(s.Risk))
			}
			if want := []string{"preflight:read-only", "defragment:high", "verify:read-only"}; !slices.Equal(got, want) {
				t.Errorf("steps %v, want %v", got, want)
			}
		})
	}
}

// A member that is not fragmented is left alone, while the others are defragmented.
func TestOnlyTheFragmentedMembersAreDefragmented(t *testing.T) {
	etcd, cl, r := startCluster(t, 3)
	fragment(t, etcd, cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.Defragment(ctx, etcd.Members[1].ClientURL); err != nil {
		t.Fatal(err)
	}
	res, failed, err := newRunner(t, r, testParams).All()
	if err != nil {
		t.Fatalf("step %s: %v\n%s", failed, err, res[failed].Output)
	}
	times := defragTimes(t, etcd)
	for _, m := range etcd.Members {
		if len(times[m.Name]) != 1 {
			t.Errorf("member %s was defragmented %d times, want once (m2 by hand, the others by the step)", m.Name, len(times[m.Name]))
		}
	}
	out := res["defragment"].Output
	if !strings.Contains(out, "m2 (") || !strings.Contains(out, "left alone") || strings.Count(out, " -> ") != 2 {
		t.Errorf("defragment output does not say two members were defragmented and m2 left alone:\n%s", out)
	}
}
