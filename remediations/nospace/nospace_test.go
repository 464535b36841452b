package nospace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

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

func startCluster(t *testing.T, members int) (*etcdtest.Cluster, *clientv3.Client, *Remediation) {
	t.Helper()
	etcd := etcdtest.New(t, etcdtest.Options{Members: members, QuotaBytes: 4 << 20})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: etcd.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	return etcd, cl, New(clients, t.TempDir())
}

func alarms(t *testing.T, cl *clientv3.Client) []string {
	t.Helper()
	resp, err := cl.AlarmList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range resp.Alarms {
		out = append(out, a.Alarm.String())
	}
	return out
}

func TestDisarmRefusesWhenTheLiveDataFillsTheQuota(t *testing.T) {
	_, cl, r := startCluster(t, 1)
	// Distinct keys: compaction and defragmentation cannot make room, only a bigger quota can.
	value := strings.Repeat("v", 100<<10)
	for i := 0; ; i++ {
		_, err := cl.Put(context.Background(), fmt.Sprintf("live/%d", i), value)
		if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
			break
		}
		if err != nil || i > 1000 {
			t.Fatalf("filling: write %d: %v", i, err)
		}
	}

	_, failed, err := newRunner(t, r, nil).All()
	if failed != "disarm" || remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "raise --quota-backend-bytes") {
		t.Fatalf("step %q: %v; want disarm to refuse and say the quota must grow", failed, err)
	}
	if a := alarms(t, cl); len(a) != 1 || a[0] != "NOSPACE" {
		t.Errorf("alarms %v, want NOSPACE still armed", a)
	}
}

func TestPreflightRefusesACorruptCluster(t *testing.T) {
	_, cl, r := startCluster(t, 1)
	st, err := cl.Status(context.Background(), cl.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewMaintenanceClient(cl.ActiveConnection()).Alarm(context.Background(),
		&pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_CORRUPT})
	if err != nil {
		t.Fatal(err)
	}

	res, failed, err := newRunner(t, r, nil).All()
	if failed != "preflight" || remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "CORRUPT alarm") {
		t.Fatalf("step %q: %v; want preflight to refuse a CORRUPT member", failed, err)
	}
	if len(res["preflight"].Before) != 1 || res["preflight"].Before[0].Alarms[0] != "CORRUPT" {
		t.Errorf("preflight figures %+v, want the member with its CORRUPT alarm", res["preflight"].Before)
	}
}

// sizes returns each member's db size once two looks in a row agree: a write reaches the
// backend's size at its batch commit, a moment after it is acknowledged.
func sizes(t *testing.T, etcd *etcdtest.Cluster, cl *clientv3.Client) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last map[string]int64
	for {
		now := map[string]int64{}
		for _, m := range etcd.Members {
			st, err := cl.Status(ctx, m.ClientURL)
			if err != nil {
				t.Fatalf("status of %s: %v", m.Name, err)
			}
			now[m.Name] = st.DbSize
		}
		if fmt.Sprint(now) == fmt.Sprint(last) {
			return now
		}
		last = now
		select {
		case <-ctx.Done():
			t.Fatalf("the members' db sizes never settled: %v", last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// A cluster without an alarm and far below its quota has nothing to recover: preflight says
// so with its figures, and nothing is compacted, defragmented or written.
func TestAClusterFarBelowItsQuotaIsLeftAlone(t *testing.T) {
	etcd, cl, r := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old, err := cl.Put(ctx, "app/key", "old")
	if err != nil {
		t.Fatal(err)
	}
	latest, err := cl.Put(ctx, "app/key", "kept")
	if err != nil {
		t.Fatal(err)
	}
	before := sizes(t, etcd, cl)

	rn := newRunner(t, r, map[string]string{"probe_prefix": "ops/probe/"})
	res, failed, err := rn.All()
	var nothing *remediator.NothingToDo
	// Errorf, not Fatalf: what a run that went on did to the cluster is checked below.
	if failed != "preflight" || !errors.As(err, &nothing) {
		t.Errorf("step %q: %v; want preflight to find nothing to do", failed, err)
	} else {
		for _, want := range []string{"no member has a NOSPACE alarm, and the fullest, m", "% of its 4.0 MiB quota (acts from 95%)"} {
			if !strings.Contains(nothing.Reason, want) {
				t.Errorf("reason %q does not say %q", nothing.Reason, want)
			}
		}
		if pre := res["preflight"]; len(pre.Before) != 3 || !strings.Contains(pre.Output, nothing.Reason) || !strings.Contains(pre.Output, "m3 (") {
			t.Errorf("preflight output %q, figures %+v: want the reason and every member as evidence", pre.Output, pre.Before)
		}
	}
	if s := rn.Incident.Steps[rn.Index("preflight")]; s.State != remediator.StepSucceeded {
		t.Errorf("preflight is %s, want succeeded: finding nothing to do is its job done", s.State)
	}
	for _, name := range []string{"snapshot", "compact", "defragment", "disarm", "verify"} {
		if s := rn.Incident.Steps[rn.Index(name)]; s.State != remediator.StepSkipped || !strings.Contains(s.Output, "nothing to do") {
			t.Errorf("%s is %s (%q), want skipped for nothing to do", name, s.State, s.Output)
		}
	}

	// Not compacted: the revision written before the run is still there.
	got, err := cl.Get(ctx, "app/key", clientv3.WithRev(old.Header.Revision))
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "old" {
		t.Errorf("app/key at revision %d: %v (%v), want the old value, not compacted away", old.Header.Revision, got, err)
	}
	// Nothing written: no probe, no revision since the test's own writes.
	now, err := cl.Get(ctx, "", clientv3.WithPrefix())
	if err != nil || now.Header.Revision != latest.Header.Revision || len(now.Kvs) != 1 {
		t.Errorf("keyspace %v at revision %d (%v), want only app/key at revision %d", now.Kvs, now.Header.Revision, err, latest.Header.Revision)
	}
	// Not defragmented: every member's db is as it was, and no member logged a defragmentation.
	if after := sizes(t, etcd, cl); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("db sizes went from %v to %v, want them untouched", before, after)
	}
	for _, m := range etcd.Members {
		if ts, err := m.LogLines("finished defragment"); err != nil || len(ts) > 0 {
			t.Errorf("%s was defragmented %d times (%v)", m.Name, len(ts), err)
		}
	}
}

// A member at min_quota_ratio of its quota is recovered before NOSPACE is raised: preflight
// goes on without an alarm, and the history is compacted and defragmented away.
func TestAClusterNearItsQuotaIsRecoveredBeforeNOSPACE(t *testing.T) {
	etcd, cl, r := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.Put(ctx, "app/key", "kept"); err != nil {
		t.Fatal(err)
	}
	// History, not live data: one key overwritten until the fullest member holds half of its
	// 4 MiB quota.
	value := strings.Repeat("h", 64<<10)
	first, err := cl.Put(ctx, "app/history", value)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := cl.Put(ctx, "app/history", value); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		fullest := 0.0
		for _, m := range etcd.Members {
			st, err := cl.Status(ctx, m.ClientURL)
			if err != nil {
				t.Fatal(err)
			}
			fullest = max(fullest, float64(st.DbSize)/float64(st.DbSizeQuota))
		}
		if fullest >= 0.5 {
			break
		}
		if i == 200 {
			t.Fatalf("after %d writes the fullest member is at %.0f%% of its quota", i, fullest*100)
		}
	}
	if a := alarms(t, cl); len(a) != 0 {
		t.Fatalf("alarms %v before the run, want none", a)
	}
	before := sizes(t, etcd, cl)

	rn := newRunner(t, r, map[string]string{"min_quota_ratio": "0.5", "probe_prefix": "ops/probe/"})
	if _, err := rn.Step("preflight"); err != nil {
		t.Fatalf("preflight: %v, want it to go on", err)
	}
	if out := rn.Output("preflight"); !strings.Contains(out, "no member has a NOSPACE alarm yet, but the fullest, m") || !strings.Contains(out, "(acts from 50%)") {
		t.Errorf("preflight said %q, want why it goes on", out)
	}
	res, failed, err := rn.All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	if !strings.Contains(res["disarm"].Output, "no NOSPACE alarm was armed") || !strings.Contains(res["verify"].Output, "ops/probe/test-incident") {
		t.Errorf("disarm said %q, verify said %q", res["disarm"].Output, res["verify"].Output)
	}
	if _, err := cl.Get(ctx, "app/history", clientv3.WithRev(first.Header.Revision)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("app/history at revision %d: %v, want it compacted away", first.Header.Revision, err)
	}
	after := sizes(t, etcd, cl)
	for name, size := range before {
		if after[name] >= size {
			t.Errorf("%s: db %d bytes, was %d: want it defragmented", name, after[name], size)
		}
	}
	got, err := cl.Get(ctx, "", clientv3.WithPrefix())
	if err != nil || len(got.Kvs) != 2 || string(got.Kvs[0].Value) != value || string(got.Kvs[1].Value) != "kept" {
		t.Errorf("keyspace after the remediation: %d keys (%v), want app/history and app/key, the probe deleted", len(got.Kvs), err)
	}
}

func TestFullness(t *testing.T) {
	const mib = 1 << 20
	st := func(name string, db, quota int64, alarms ...string) remediator.MemberStatus {
		return remediator.MemberStatus{ID: name + "id", Name: name, Version: "3.6.0", DBSize: db, Quota: quota, Alarms: alarms}
	}
	old := func(name string, db int64) remediator.MemberStatus {
		s := st(name, db, 0)
		s.Version = "3.5.17"
		return s
	}
	for _, tc := range []struct {
		name     string
		params   map[string]string
		statuses []remediator.MemberStatus
		act      bool
		why      string
	}{
		{"an alarm", nil, []remediator.MemberStatus{st("m1", mib, 8*mib), st("m2", mib, 8*mib, "NOSPACE")}, true,
			"NOSPACE is armed on m2 (m2id)"},
		{"an alarm, quota unknown", nil, []remediator.MemberStatus{old("m1", mib), {ID: "m2id", Name: "m2", DBSize: mib, Alarms: []string{"NOSPACE"}}}, true,
			"NOSPACE is armed on m2 (m2id)"},
		{"far below", nil, []remediator.MemberStatus{st("m1", mib, 8*mib), st("m2", mib/2, 8*mib)}, false,
			"no member has a NOSPACE alarm, and the fullest, m1, is at 12% of its 8.0 MiB quota (acts from 95%)"},
		{"just below", nil, []remediator.MemberStatus{st("m1", 9499*mib/100, 100*mib)}, false,
			"no member has a NOSPACE alarm, and the fullest, m1, is at 94% of its 100.0 MiB quota (acts from 95%)"},
		{"at the ratio", nil, []remediator.MemberStatus{st("m1", mib, 100*mib), st("m2", 95*mib, 100*mib)}, true,
			"no member has a NOSPACE alarm yet, but the fullest, m2, is at 95% of its 100.0 MiB quota (acts from 95%)"},
		{"over a ratio of the params", map[string]string{"min_quota_ratio": "0.1"}, []remediator.MemberStatus{st("m1", mib, 8*mib)}, true,
			"no member has a NOSPACE alarm yet, but the fullest, m1, is at 12% of its 8.0 MiB quota (acts from 10%)"},
		{"quota unknown", nil, []remediator.MemberStatus{old("m1", 7*mib), old("m2", 7*mib)}, false,
			"no member has a NOSPACE alarm, and no member's quota is known (m1 (etcd 3.5.17), m2 (etcd 3.5.17) tell it neither in their status nor at /metrics), so how full they are is unknown: set params.quota_bytes to the members' --quota-backend-bytes"},
		{"quota from the params", map[string]string{"quota_bytes": fmt.Sprint(7 * mib)}, []remediator.MemberStatus{old("m1", 7*mib)}, true,
			"no member has a NOSPACE alarm yet, but the fullest, m1, is at 100% of its 7.0 MiB quota (acts from 95%)"},
		{"reported quota before the params", map[string]string{"quota_bytes": fmt.Sprint(mib)}, []remediator.MemberStatus{st("m1", mib, 8*mib)}, false,
			"no member has a NOSPACE alarm, and the fullest, m1, is at 12% of its 8.0 MiB quota (acts from 95%)"},
		{"some quotas unknown", nil, []remediator.MemberStatus{st("m1", mib, 8*mib), old("m2", 7*mib)}, false,
			"no member has a NOSPACE alarm, and the fullest, m1, is at 12% of its 8.0 MiB quota (acts from 95%); the quota of m2 (etcd 3.5.17) is unknown (set params.quota_bytes to judge them too)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := params.Of[Params](tc.params)
			if err != nil {
				t.Fatal(err)
			}
			act, why := s.fullness(tc.statuses)
			if act != tc.act || why != tc.why {
				t.Errorf("fullness: %v, %q\nwant       %v, %q", act, why, tc.act, tc.why)
			}
		})
	}
}

func TestParamsAreChecked(t *testing.T) {
	_, err := New(nil, "").Plan(map[string]string{"health_timeout": "0s", "probe_prefix": "x"})
	want := "params.health_timeout: must be at least 1s"
	if err == nil || err.Error() != want || remediator.ErrorCode(err) != remediator.EINVALID {
		t.Errorf("error %v, want %q", err, want)
	}
	_, err = New(nil, "").Plan(map[string]string{"min_quota_ratio": "1.5"})
	want = `params.min_quota_ratio: "1.5" must be a number above 0 and at most 1`
	if err == nil || err.Error() != want || remediator.ErrorCode(err) != remediator.EINVALID {
		t.Errorf("error %v, want %q", err, want)
	}
}

// fillNOSPACE drives the cluster into NOSPACE with history (so that compaction makes room).
func fillNOSPACE(t *testing.T, cl *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := etcdtest.Fill(ctx, cl); err != nil {
		t.Fatal(err)
	}
}

func TestRepeatedStepsDoNotRepeatTheirWork(t *testing.T) {
	_, cl, r := startCluster(t, 1)
	fillNOSPACE(t, cl)
	rn := newRunner(t, r, nil)
	for _, name := range []string{"preflight", "snapshot"} {
		if _, err := rn.Step(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A change after the snapshot (under NOSPACE only deletes are taken) makes a newer
	// revision, which the compaction must leave alone.
	if _, err := cl.Delete(context.Background(), "fill/0"); err != nil {
		t.Fatal(err)
	}
	again, err := rn.Step("snapshot")
	if err != nil || !strings.Contains(again.Output, "by an earlier attempt") {
		t.Errorf("snapshot again: %q (%v), want the saved snapshot reused", again.Output, err)
	}
	first, err := rn.Step("compact")
	if err != nil || !strings.Contains(first.Output, "compacted to revision") {
		t.Fatalf("compact: %q (%v)", first.Output, err)
	}
	var snap struct{ Revision int64 }
	_ = json.Unmarshal(rn.Incident.Steps[1].Progress, &snap)
	if !strings.Contains(first.Output, fmt.Sprintf("revision %d,", snap.Revision)) {
		t.Errorf("compact said %q, want the snapshot's revision %d", first.Output, snap.Revision)
	}
	second, err := rn.Step("compact")
	if err != nil || !strings.Contains(second.Output, "already compacted") {
		t.Errorf("compact again: %q (%v), want it to see the compaction done", second.Output, err)
	}
	// Compacted to the snapshot's revision, not to the newer one of the delete: the
	// snapshot's revision is still readable.
	resp, err := cl.Get(context.Background(), "fill/0", clientv3.WithRev(snap.Revision))
	if err != nil || resp.Count != 1 {
		t.Errorf("reading at the snapshot's revision %d: %v, want the key as the snapshot has it", snap.Revision, err)
	}
}

func TestDisarmRefusesWhileAMemberIsDown(t *testing.T) {
	etcd, cl, r := startCluster(t, 3)
	fillNOSPACE(t, cl)
	rn := newRunner(t, r, nil)
	for _, name := range []string{"preflight", "snapshot", "compact", "defragment"} {
		if _, err := rn.Step(name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	etcd.Members[2].Kill()
	_, err := rn.Step("disarm")
	if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "not disarming") || !strings.Contains(err.Error(), "member m3") {
		t.Fatalf("disarm with m3 down: %v, want a refusal naming m3", err)
	}
	if a := alarms(t, cl); !slices.Contains(a, "NOSPACE") {
		t.Errorf("alarms %v, want NOSPACE left armed", a)
	}
}

func TestPreflightRefusesEndpointsOfAnotherCluster(t *testing.T) {
	a := etcdtest.New(t, etcdtest.Options{})
	b := etcdtest.New(t, etcdtest.Options{})
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: append(a.Endpoints(), b.Endpoints()...)}})
	t.Cleanup(func() { clients.Close() })

	_, failed, err := newRunner(t, New(clients, t.TempDir()), nil).All()
	if failed != "preflight" || remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "are not client URLs of this cluster's members") {
		t.Fatalf("step %q: %v; want preflight to refuse a configuration that mixes two clusters", failed, err)
	}
}

func TestFindingsTellHistoryFromLiveData(t *testing.T) {
	st := func(name string, db, inUse int64) remediator.MemberStatus {
		return remediator.MemberStatus{ID: name, Name: name, DBSize: db, DBSizeInUse: inUse, Quota: 8 << 20}
	}
	for _, tc := range []struct {
		name          string
		before, after []remediator.MemberStatus
		wantCause     string
		wantFollowUp  string
	}{
		{"history", []remediator.MemberStatus{st("m1", 8<<20, 7<<20), st("m2", 9<<20, 8<<20)}, []remediator.MemberStatus{st("m1", 1<<20, 1<<20), st("m2", 1<<20, 900<<10)},
			"History, not live data, filled the database: m2 reached 9.0 MiB of its 8.0 MiB quota with only 900.0 KiB in use", "turn on auto-compaction"},
		{"live data", []remediator.MemberStatus{st("m1", 9<<20, 8<<20)}, []remediator.MemberStatus{st("m1", 7<<20, 7<<20)},
			"Live data fills the quota: after compaction and defragmentation 7.0 MiB of the 8.0 MiB quota is still in use on m1", "raise --quota-backend-bytes above 8.0 MiB"},
		{"no figures before", nil, []remediator.MemberStatus{st("m1", 1<<20, 1<<20)}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cause, followUps := findings(tc.before, tc.after)
			if (tc.wantCause == "") != (cause == "") || !strings.HasPrefix(cause, tc.wantCause) || (tc.wantFollowUp == "") != (len(followUps) == 0) ||
				(len(followUps) > 0 && !strings.HasPrefix(followUps[0], tc.wantFollowUp)) {
				t.Errorf("cause %q, follow-ups %q; want %q and %q first", cause, followUps, tc.wantCause, tc.wantFollowUp)
			}
		})
	}
}
