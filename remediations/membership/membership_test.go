package membership_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agenttest"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/membership"
	"github.com/remediator/remediator/remediations/nodeops"
)

// env is a cluster of three etcd static pods, each node with its agent on a real NATS.
type env struct {
	etcd      *etcdtest.StaticCluster
	cl        *clientv3.Client
	replace   *membership.Replace
	restore   *membership.QuorumRestore
	backupDir string
}

func start(t *testing.T) *env {
	t.Helper()
	return startAt(t, etcdtest.DefaultVersion)
}

// startAt is start on the given etcd version.
func startAt(t *testing.T, v etcdtest.Version) *env {
	t.Helper()
	etcd := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: 3, Template: filepath.Join("..", "..", "testdata", "manifests", "etcd.yaml"), Version: v})
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	nodes := &nodeops.Nodes{Agents: agenttest.Start(t, q, "test", etcd, nil)}
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: etcd.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	cl, err := clients.Get("test")
	if err != nil {
		t.Fatal(err)
	}
	backupDir := t.TempDir()
	return &env{etcd: etcd, cl: cl, backupDir: backupDir,
		replace: membership.NewReplace(clients, nodes, backupDir), restore: membership.NewQuorumRestore(clients, nodes, backupDir)}
}

func (e *env) node(name string) *etcdtest.Node {
	for _, n := range e.etcd.Nodes {
		if n.Name == name {
			return n
		}
	}
	panic("no node " + name)
}

// kill stops a node's etcd behind remediator's back, as a lost node or an operator would:
// its manifest moved out of the manifests folder by hand.
func (e *env) kill(t *testing.T, name string) {
	t.Helper()
	n := e.node(name)
	if err := os.MkdirAll(n.StoppedDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(n.Manifest(), filepath.Join(n.StoppedDir, "etcd.yaml")); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(n.ClientURL, "http://")
	for i := 0; ; i++ {
		conn, err := net.DialTimeout("tcp", host, 200*time.Millisecond)
		if err != nil {
			return
		}
		conn.Close()
		if i == 100 {
			t.Fatalf("%s still answers after its manifest was moved out", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wipe deletes what a stopped node's data dir holds, as seed 001 does with rm -rf.
func (e *env) wipe(t *testing.T, name string) {
	t.Helper()
	dir := e.node(name).DataDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if err := os.RemoveAll(filepath.Join(dir, en.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// revive puts a killed node's manifest back, so that the kubelet runs its etcd again.
func (e *env) revive(t *testing.T, name string) {
	t.Helper()
	n := e.node(name)
	if err := os.Rename(filepath.Join(n.StoppedDir, "etcd.yaml"), n.Manifest()); err != nil {
		t.Fatal(err)
	}
}

// manifests reads every node's etcd manifest, wherever it is.
func (e *env) manifests(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range e.etcd.Nodes {
		for _, p := range []string{n.Manifest(), filepath.Join(n.StoppedDir, "etcd.yaml")} {
			if b, err := os.ReadFile(p); err == nil {
				out[p] = string(b)
			}
		}
	}
	return out
}

// backups lists every file the agents and the remediation saved.
func (e *env) backups(t *testing.T) []string {
	t.Helper()
	var out []string
	dirs := []string{e.backupDir}
	for _, n := range e.etcd.Nodes {
		dirs = append(dirs, n.BackupDir)
	}
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
			if err == nil && !de.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func (e *env) flags(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(e.node(name).Manifest())
	if err != nil {
		t.Fatal(err)
	}
	pod, err := manifest.ParsePod(b)
	if err != nil {
		t.Fatal(err)
	}
	return pod.Flags()
}

// client is a client of one member only.
func client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// member is a member as a member list shows it.
type member struct {
	ID      uint64
	Learner bool
}

// members lists the members as the member at endpoint knows them, by name.
func members(t *testing.T, endpoint string) map[string]member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client(t, endpoint).MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		t.Fatalf("member list from %s: %v", endpoint, err)
	}
	out := map[string]member{}
	for _, m := range resp.Members {
		out[m.Name] = member{ID: m.ID, Learner: m.IsLearner}
	}
	return out
}

func put(t *testing.T, cl *clientv3.Client, keys ...string) {
	t.Helper()
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Put(ctx, k, "value of "+k)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// assertWhole checks that every member votes, answers with a leader, reads every key from its
// own data, and comes to the raft index of the others.
func (e *env) assertWhole(t *testing.T, keys ...string) {
	t.Helper()
	got := members(t, e.etcd.Nodes[0].ClientURL)
	if len(got) != 3 {
		t.Fatalf("members %v, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clients := map[string]*clientv3.Client{}
	for _, n := range e.etcd.Nodes {
		clients[n.Name] = client(t, n.ClientURL)
		if m, ok := got[n.Name]; !ok || m.Learner {
			t.Errorf("%s: %+v, want a voting member", n.Name, m)
		}
		for _, k := range keys {
			resp, err := clients[n.Name].Get(ctx, k, clientv3.WithSerializable())
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "value of "+k {
				t.Errorf("%s: %s reads %v (%v), want the value written before", n.Name, k, resp, err)
			}
		}
	}
	// A follower learns of the newest commit with the next heartbeat: the indexes may take a
	// moment to agree.
	var indexes []uint64
	for ctx.Err() == nil {
		indexes = indexes[:0]
		for _, n := range e.etcd.Nodes {
			st, err := clients[n.Name].Status(ctx, n.ClientURL)
			if err != nil || st.Leader == 0 {
				t.Fatalf("%s: status %v (%v), want healthy", n.Name, st, err)
			}
			indexes = append(indexes, st.RaftIndex)
		}
		if slices.Max(indexes)-slices.Min(indexes) <= 2 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("raft indexes %v, want them equal within 2", indexes)
}

// Seed 001 for real: cp-3's data dir is wiped and its etcd restarted, and it keeps failing
// while the others still have it as a member. The member is replaced by a new one, under a
// new ID, that holds the data.
func TestReplaceAWipedMember(t *testing.T) {
	etcdtest.EachVersion(t, testReplaceAWipedMember)
}

func testReplaceAWipedMember(t *testing.T, v etcdtest.Version) {
	e := startAt(t, v)
	keys := []string{"app/1", "app/2", "app/3"}
	put(t, e.cl, keys...)
	before := members(t, e.etcd.Nodes[0].ClientURL)

	e.kill(t, "cp-3")
	e.wipe(t, "cp-3")
	e.revive(t, "cp-3")
	cp3 := e.node("cp-3")
	deadline := time.Now().Add(30 * time.Second)
	for cp3.Kubelet.Restarts("etcd.yaml") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("cp-3 does not crash-loop with an empty data dir:\n%s", cp3.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("cp-3 crash-loops: %s", lastError(cp3.Log()))

	rn := steptest.New(t, e.replace.Plan, "test", nil)
	// The member is not named: the alert says which, by its instance label.
	rn.Incident.Evidence = []remediator.Alert{{Status: remediator.AlertFiring,
		Labels: map[string]string{"alertname": "etcdMembersDown", "instance": strings.TrimPrefix(cp3.ClientURL, "http://")}}}
	start := time.Now()
	res, failed, err := rn.All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	t.Logf("replaced in %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(res["preflight"].Output, "replacing member cp-3") || len(res["preflight"].Before) != 3 {
		t.Errorf("preflight: %q, before %v", res["preflight"].Output, res["preflight"].Before)
	}
	if len(res["verify"].After) != 3 {
		t.Errorf("verify after: %+v, want 3 members", res["verify"].After)
	}

	// Steps repeated after an interruption find their work done.
	if again, err := rn.Step("remove"); err != nil || !strings.Contains(again.Output, "already removed") {
		t.Errorf("remove again: %q (%v)", again.Output, err)
	}
	if again, err := rn.Step("add-learner"); err != nil || !strings.Contains(again.Output, "already added back") {
		t.Errorf("add-learner again: %q (%v)", again.Output, err)
	}

	after := members(t, e.etcd.Nodes[0].ClientURL)
	for _, name := range []string{"cp-1", "cp-2"} {
		if after[name].ID != before[name].ID {
			t.Errorf("%s changed ID from %x to %x", name, before[name].ID, after[name].ID)
		}
	}
	if after["cp-3"].ID == before["cp-3"].ID || after["cp-3"].ID == 0 {
		t.Errorf("cp-3 is %x, was %x: want a new member", after["cp-3"].ID, before["cp-3"].ID)
	}
	e.assertWhole(t, keys...)
	flags := e.flags(t, "cp-3")
	if flags["initial-cluster-state"] != "existing" || strings.Count(flags["initial-cluster"], "=") != 3 {
		t.Errorf("cp-3 flags: initial-cluster-state=%q initial-cluster=%q", flags["initial-cluster-state"], flags["initial-cluster"])
	}
	if _, err := os.Stat(filepath.Join(e.backupDir, "test", "test-incident.db")); err != nil {
		t.Errorf("no snapshot: %v", err)
	}
}

// A member with a CORRUPT alarm is replaced although it runs and answers: the alarm stops every
// write in the cluster, and it goes with the member.
func TestReplaceACorruptMember(t *testing.T) {
	e := start(t)
	keys := []string{"app/1", "app/2"}
	put(t, e.cl, keys...)
	before := members(t, e.etcd.Nodes[0].ClientURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := pb.NewMaintenanceClient(e.cl.ActiveConnection()).Alarm(ctx,
		&pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: before["cp-3"].ID, Alarm: pb.AlarmType_CORRUPT})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.Put(ctx, "app/3", "x"); !errors.Is(rpctypes.Error(err), rpctypes.ErrCorrupt) {
		t.Fatalf("write under a CORRUPT alarm: %v, want it refused", err)
	}

	rn := steptest.New(t, e.replace.Plan, "test", nil)
	rn.Incident.Evidence = []remediator.Alert{{Status: remediator.AlertFiring,
		Labels: map[string]string{"alertname": "etcdMemberCorrupt", "pod": "etcd-cp-3"}}}
	res, failed, err := rn.All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	if !strings.Contains(res["preflight"].Output, "CORRUPT alarm") || !strings.Contains(res["remove"].Output, "disarmed the CORRUPT alarm") {
		t.Errorf("preflight: %q\nremove: %q", res["preflight"].Output, res["remove"].Output)
	}
	after := members(t, e.etcd.Nodes[0].ClientURL)
	if after["cp-3"].ID == before["cp-3"].ID {
		t.Errorf("cp-3 kept its ID %x", before["cp-3"].ID)
	}
	alarms, err := e.cl.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) > 0 {
		t.Errorf("alarms %v (%v), want none", alarms, err)
	}
	put(t, e.cl, "app/3")
	e.assertWhole(t, "app/1", "app/2", "app/3")
}

// Every refusal, and every preflight that finds the problem is not there, leaves the cluster
// as it was: no manifest moved or edited, no member removed, no data moved.
func TestRefusals(t *testing.T) {
	e := start(t)
	before := members(t, e.etcd.Nodes[0].ClientURL)
	unchanged := func(t *testing.T, manifests map[string]string) {
		t.Helper()
		if got := e.manifests(t); fmt.Sprint(got) != fmt.Sprint(manifests) {
			t.Errorf("manifests changed:\n%v\nwant\n%v", got, manifests)
		}
		if got := members(t, e.etcd.Nodes[0].ClientURL); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("members %v, want %v", got, before)
		}
		if b := e.backups(t); len(b) > 0 {
			t.Errorf("backups made: %v", b)
		}
	}
	tests := []struct {
		name    string
		kill    string
		plan    func(map[string]string) ([]remediator.PlannedStep, error)
		params  map[string]string
		nothing bool // nothing to do rather than a refusal
		want    string
	}{
		{"replace a healthy member", "", e.replace.Plan, map[string]string{"member": "cp-1"}, true,
			"is healthy and has no CORRUPT alarm: it needs no replacing"},
		{"restore with a majority up", "cp-3", e.restore.Plan, nil, true,
			"the cluster has a quorum, and there is none to restore"},
		{"replace with a second member down", "cp-2", e.replace.Plan, map[string]string{"member": "cp-3"}, false,
			"without member cp-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.kill != "" {
				e.kill(t, tt.kill)
			}
			manifests := e.manifests(t)
			_, failed, err := steptest.New(t, tt.plan, "test", tt.params).All()
			var nothing *remediator.NothingToDo
			switch {
			case failed != "preflight" || err == nil || !strings.Contains(err.Error(), tt.want):
				t.Errorf("step %q: %v; want preflight to stop with %q", failed, err, tt.want)
			case tt.nothing && !errors.As(err, &nothing):
				t.Errorf("preflight: %v (%s); want nothing to do", err, remediator.ErrorCode(err))
			case !tt.nothing && remediator.ErrorCode(err) != remediator.EPRECONDITION:
				t.Errorf("preflight: %v (%s); want a refusal", err, remediator.ErrorCode(err))
			}
			unchanged(t, manifests)
		})
	}
}

// Seed 003's quorum loss: two of three nodes are lost with their data (one gone, one back
// empty and crash-looping). The survivor is restarted alone with --force-new-cluster, the
// flag removed, and the two members added back; the keys written before the loss are there.
func TestRestoreALostQuorum(t *testing.T) {
	e := start(t)
	keys := []string{"app/1", "app/2", "app/3"}
	put(t, e.cl, keys...)
	before := members(t, e.etcd.Nodes[0].ClientURL)
	for _, name := range []string{"cp-2", "cp-3"} {
		e.kill(t, name)
		e.wipe(t, name)
	}
	e.revive(t, "cp-3")
	survivor := client(t, e.etcd.Nodes[0].ClientURL)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := survivor.Status(ctx, e.etcd.Nodes[0].ClientURL)
		cancel()
		if err == nil && st.Leader == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cp-1 still has a leader or does not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	rn := steptest.New(t, e.restore.Plan, "test", nil)
	start := time.Now()
	res, failed, err := rn.All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	t.Logf("restored in %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(res["preflight"].Output, "Survivor: cp-1") {
		t.Errorf("preflight: %q, want cp-1 as the survivor", res["preflight"].Output)
	}
	// Steps repeated after an interruption find their work done; the quorum, back now, is
	// not lost again.
	for step, want := range map[string]string{"backup": "by an earlier attempt", "re-add": "by an earlier attempt", "snapshot": "by an earlier attempt"} {
		if again, err := rn.Step(step); err != nil || !strings.Contains(again.Output, want) {
			t.Errorf("%s again: %q (%v), want %q", step, again.Output, err, want)
		}
	}
	if _, err := rn.Step("fence"); remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "has a quorum") {
		t.Errorf("fence of a whole cluster: %v, want a refusal", err)
	}

	after := members(t, e.etcd.Nodes[0].ClientURL)
	if after["cp-1"].ID != before["cp-1"].ID {
		t.Errorf("the survivor changed ID from %x to %x", before["cp-1"].ID, after["cp-1"].ID)
	}
	for _, name := range []string{"cp-2", "cp-3"} {
		if after[name].ID == before[name].ID {
			t.Errorf("%s kept its ID %x: want it added back as a new member", name, before[name].ID)
		}
		if f := e.flags(t, name); f["initial-cluster-state"] != "existing" {
			t.Errorf("%s: initial-cluster-state=%q", name, f["initial-cluster-state"])
		}
	}
	e.assertWhole(t, keys...)
	if _, ok := e.flags(t, "cp-1")["force-new-cluster"]; ok {
		t.Error("cp-1's manifest still has --force-new-cluster")
	}
	copies, _ := filepath.Glob(filepath.Join(e.node("cp-1").BackupDir, "test-incident", "etcd-data.*", "member", "wal"))
	if len(copies) != 1 {
		t.Errorf("copies of the survivor's data: %v, want one", copies)
	}
}

// lastError is the last line of a member's log that says why it failed.
func lastError(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"level":"fatal"`) || strings.Contains(lines[i], `"level":"panic"`) || strings.Contains(lines[i], `"level":"error"`) {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}
