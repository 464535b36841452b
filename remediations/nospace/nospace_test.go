package nospace

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/remediations/etcdops"
)

// runPlan runs the plan's steps in order, as the worker would, and returns the first error.
func runPlan(t *testing.T, r *Remediation, params map[string]string) (map[string]remediator.StepResult, string, error) {
	t.Helper()
	plan, err := r.Plan(params)
	if err != nil {
		t.Fatal(err)
	}
	inc := remediator.Incident{ID: "test-incident", Cluster: "test"}
	results := map[string]remediator.StepResult{}
	for _, s := range plan {
		res, err := s.Run(context.Background(), remediator.StepInput{
			Incident:     inc,
			SaveProgress: func(context.Context, any) error { return nil },
		})
		results[s.Name] = res
		if err != nil {
			return results, s.Name, err
		}
	}
	return results, "", nil
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

	_, failed, err := runPlan(t, r, nil)
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

	res, failed, err := runPlan(t, r, nil)
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
	res, failed, err := runPlan(t, r, map[string]string{"probe_prefix": "ops/probe/"})
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
