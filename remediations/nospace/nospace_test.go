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

func TestAHealthyClusterIsLeftHealthy(t *testing.T) {
	_, cl, r := startCluster(t, 3)
	if _, err := cl.Put(context.Background(), "app/key", "kept"); err != nil {
		t.Fatal(err)
	}
	res, failed, err := newRunner(t, r, map[string]string{"probe_prefix": "ops/probe/"}).All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	if !strings.Contains(res["disarm"].Output, "no NOSPACE alarm was armed") || !strings.Contains(res["verify"].Output, "ops/probe/test-incident") {
		t.Errorf("disarm said %q, verify said %q", res["disarm"].Output, res["verify"].Output)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := cl.Get(ctx, "", clientv3.WithPrefix())
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "kept" {
		t.Errorf("keyspace after the remediation: %v (%v), want only app/key, the probe deleted", got.Kvs, err)
	}
}

func TestParamsAreChecked(t *testing.T) {
	_, err := New(nil, "").Plan(map[string]string{"health_timeout": "0s", "probe_prefix": "x"})
	want := "params.health_timeout: must be at least 1s"
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
