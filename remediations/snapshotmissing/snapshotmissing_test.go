package snapshotmissing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/agenttest"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/polltest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/internal/testproc"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/nodeops"
	"github.com/remediator/remediator/remediations/params"
)

// The seed's panic, as etcd logs it.
const (
	panicMsg   = "failed to recover v3 backend from snapshot"
	panicCause = "failed to find database snapshot file (snap: snapshot file doesn't exist)"
)

// newRunner runs the plan for an incident whose firing alert has the given labels.
func newRunner(t *testing.T, r *Remediation, params map[string]string, labels map[string]string) *steptest.Runner {
	t.Helper()
	rn := steptest.New(t, r.Plan, "test", params)
	rn.Incident.Evidence = []remediator.Alert{{Status: remediator.AlertFiring, Labels: labels}}
	return rn
}

type env struct {
	t  *testing.T
	c  *etcdtest.StaticCluster
	cl *clientv3.Client
	r  *Remediation
}

// startEnv runs a cluster of etcd static pods at version v that cut a raft snapshot every 20
// entries, their manifests' image tag naming v's release, an agent per node over real NATS
// with v's real restore tool (and none of the other kind, so that a wrong choice fails), and
// the remediation.
func startEnv(t *testing.T, v etcdtest.Version, members int, quota int64) *env {
	t.Helper()
	restorer, err := v.Restorer()
	if err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(t.TempDir(), "absent")
	configure := func(cfg *agent.Config) {
		cfg.Etcdutl, cfg.Etcdctl = absent, absent
		if restorer.Tool == etcdtest.ToolEtcdctl {
			cfg.Etcdctl = restorer.Path
		} else {
			cfg.Etcdutl = restorer.Path
		}
	}
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	c := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: members, QuotaBytes: quota, Version: v,
		Template: filepath.Join("..", "..", "testdata", "manifests", "etcd.yaml"),
		Flags:    map[string]string{"snapshot-count": "20"}})
	agents := agenttest.Start(t, q, "test", c, configure)
	cl, err := c.Cluster().Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: c.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	return &env{t: t, c: c, cl: cl, r: New(clients, &nodeops.Nodes{Agents: agents})}
}

func (e *env) put(prefix string, n int) {
	e.t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := e.cl.Put(ctx, fmt.Sprintf("%s/%d", prefix, i), "kept")
		cancel()
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// down takes the node's etcd pod away, as an operator does by moving its manifest out, and
// waits until nothing answers on its client port.
func (e *env) down(n *etcdtest.Node) {
	e.t.Helper()
	if err := os.MkdirAll(n.StoppedDir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(n.Manifest(), filepath.Join(n.StoppedDir, "etcd.yaml")); err != nil {
		e.t.Fatal(err)
	}
	u, _ := url.Parse(n.ClientURL)
	polltest.Until(e.t, 10*time.Second, "etcd of "+n.Name+" to stop answering once its manifest was moved out", func() (bool, string) {
		conn, err := net.DialTimeout("tcp", u.Host, 200*time.Millisecond)
		if err != nil {
			return true, ""
		}
		conn.Close()
		return false, "it answers on " + u.Host
	})
}

func (e *env) up(n *etcdtest.Node) {
	e.t.Helper()
	if err := os.Rename(filepath.Join(n.StoppedDir, "etcd.yaml"), n.Manifest()); err != nil {
		e.t.Fatal(err)
	}
}

func backend(n *etcdtest.Node) string { return filepath.Join(n.DataDir, "member", "snap", "db") }

func snapFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "member", "snap", "*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		paths[i] = filepath.Base(p)
	}
	return paths
}

// sparseCopy copies a file leaving its zero blocks as holes, as bbolt leaves its backend file
// and cp --sparse does, so that the copy takes the room on disk the original does.
func sparseCopy(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, 4096)
	for off := 0; off < len(data); off += len(zero) {
		block := data[off:min(off+len(zero), len(data))]
		if bytes.Equal(block, zero[:len(block)]) {
			continue
		}
		if _, err := f.WriteAt(block, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// copyBackend stops the member, copies its backend aside and starts it again.
func (e *env) copyBackend(n *etcdtest.Node) string {
	e.t.Helper()
	e.down(n)
	old := filepath.Join(e.t.TempDir(), "db")
	sparseCopy(e.t, backend(n), old)
	e.up(n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.c.Cluster().WaitReady(ctx, 30*time.Second); err != nil {
		e.t.Fatal(err)
	}
	return old
}

// newSnapshot makes every member cut a raft snapshot past everything so far: 30 entries (deletes
// of absent keys, which etcd takes even under NOSPACE) with a snapshot every 20.
func (e *env) newSnapshot(n *etcdtest.Node) {
	e.t.Helper()
	before := snapFiles(e.t, n.DataDir)
	for i := range 30 {
		if _, err := e.cl.Delete(context.Background(), fmt.Sprintf("absent/%d", i)); err != nil {
			e.t.Fatal(err)
		}
	}
	after := snapFiles(e.t, n.DataDir)
	if len(after) == 0 || slices.Contains(before, after[len(after)-1]) {
		e.t.Fatalf("%s cut no new raft snapshot: %v, then %v", n.Name, before, after)
	}
}

// crash puts the member's old backend back under its newer WAL and starts it, as in seed 003:
// the WAL's latest snapshot is past the backend, and no <index>.snap.db is there to catch up
// from, so etcd panics on every start.
func (e *env) crash(n *etcdtest.Node, old string) {
	e.t.Helper()
	e.down(n)
	sparseCopy(e.t, old, backend(n))
	e.up(n)
	polltest.Until(e.t, 10*time.Second, n.Name+" to panic with "+panicMsg, func() (bool, string) {
		log := n.Log()
		return strings.Contains(log, panicMsg) && strings.Contains(log, panicCause), testproc.Tail(log, 3)
	})
}

// tree reads every file under dir, by path relative to it.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sameTree(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

func (e *env) get(prefix string) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.cl.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		e.t.Fatalf("reading %s: %v", prefix, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

func backups(t *testing.T, n *etcdtest.Node) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(n.BackupDir, "test-incident", "etcd-data.*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(dirs)
	return dirs
}

// snapFilesCure says whether removing its raft snapshot files alone cures etcd v of the panic:
// every version before 3.7 then replays its WAL onto its old backend; 3.7 takes the snapshot
// from the WAL's records, reads no .snap file, and panics as before.
func snapFilesCure(v etcdtest.Version) bool { return v != etcdtest.Version37 }

// The seed's single master: etcd filled its quota, restarted, and panics because its WAL's
// snapshot is past its backend. Before 3.7 removing the raft snapshot files cures it, and it
// comes back with every write and its NOSPACE alarm, which is disarmed; on 3.7 that does not
// help, so the member is rebuilt from its own backend with etcdutl.
func TestRecoversALoneMemberThatHitItsQuota(t *testing.T) {
	etcdtest.EachVersion(t, func(t *testing.T, v etcdtest.Version) { loneMember(t, v) })
}

func loneMember(t *testing.T, v etcdtest.Version) {
	e := startEnv(t, v, 1, 4<<20)
	n := e.c.Nodes[0]
	e.put("app", 10)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := etcdtest.Fill(ctx, e.cl); err != nil {
		t.Fatal(err)
	}
	old := e.copyBackend(n)
	// A delete past the copied backend (NOSPACE takes deletes): only the WAL holds it.
	if _, err := e.cl.Delete(ctx, "app/9"); err != nil {
		t.Fatal(err)
	}
	e.newSnapshot(n)
	oldSnaps := snapFiles(t, n.DataDir)
	e.crash(n, old)

	rn := newRunner(t, e.r, map[string]string{"health_timeout": "5s"}, map[string]string{"alertname": "EtcdPanics", "pod": "etcd-" + n.Name})
	res, failed, err := rn.Until("stop")
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	stopped := tree(t, n.DataDir) // what the member had, still now that nothing runs it
	// In a pod the data dir is the agent's hostPath mount: it can be emptied and filled, not
	// removed or replaced.
	dirBefore, err := os.Stat(n.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	rest, failed, err := rn.All()
	maps.Copy(res, rest)
	for _, p := range rn.Plan {
		t.Logf("%s: %s", p.Name, res[p.Name].Output)
	}
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	if dirAfter, err := os.Stat(n.DataDir); err != nil || !os.SameFile(dirBefore, dirAfter) {
		t.Errorf("the data dir %s was removed and made again (%v): a mount point cannot be", n.DataDir, err)
	}
	if !strings.Contains(res["preflight"].Output, "the quota was the cause; it goes to 8.0 MiB") {
		t.Errorf("preflight said %q, want the quota found to be the cause", res["preflight"].Output)
	}
	manifest, err := os.ReadFile(n.Manifest())
	if err != nil || !strings.Contains(string(manifest), fmt.Sprintf("--quota-backend-bytes=%d", 8<<20)) {
		t.Errorf("manifest (%v) does not run with the doubled quota:\n%s", err, manifest)
	}
	for _, s := range snapFiles(t, n.DataDir) {
		if slices.Contains(oldSnaps, s) {
			t.Errorf("raft snapshot file %s is still there", s)
		}
	}
	dirs := backups(t, n)
	if len(dirs) == 0 {
		t.Fatal("no backup of the data dir")
	}
	if saved := tree(t, dirs[0]); !sameTree(saved, stopped) || len(snapFiles(t, dirs[0])) != len(oldSnaps) {
		t.Errorf("the first backup (%d files) is not the data dir as the member had it (%d files, raft snapshots %v)", len(saved), len(stopped), oldSnaps)
	}
	if keys := e.get("fill/"); len(keys) != 4 {
		t.Errorf("keys under fill/: %v, want the 4 the backend held", keys)
	}
	// The path the version took: the WAL replayed, with every write, or a restore that keeps
	// only what the backend held.
	app := e.get("app/")
	if snapFilesCure(v) {
		if !strings.Contains(res["start"].Output, "serves again") || !strings.Contains(res["restore"].Output, "not needed") {
			t.Errorf("start said %q, restore %q: want etcd %s cured by the removal of its raft snapshot files, and no restore", res["start"].Output, res["restore"].Output, v)
		}
		if !strings.Contains(res["disarm"].Output, "disarmed NOSPACE of member "+n.Name) {
			t.Errorf("disarm said %q, want the NOSPACE alarm the member came back with disarmed", res["disarm"].Output)
		}
		// etcd 3.4's health check says only {"health":"false"} under the alarm: its status
		// names it.
		if v == etcdtest.Version34 && !strings.Contains(res["start"].Output, "and its status reports memberID:") {
			t.Errorf("start said %q, want the alarm taken from etcd 3.4's status", res["start"].Output)
		}
		if len(app) != 9 || slices.Contains(app, "app/9") || len(dirs) != 1 {
			t.Errorf("keys under app/: %v, backups %v: want app/9's delete, which only the WAL held, replayed, and only the copy before the changes", app, dirs)
		}
	} else {
		if !strings.Contains(res["start"].Output, "still does not serve") || !strings.Contains(res["restore"].Output, "serves again") {
			t.Errorf("start said %q, restore %q: want the restore to have been needed and to have worked", res["start"].Output, res["restore"].Output)
		}
		if !strings.Contains(res["restore"].Output, "with etcdutl snapshot restore --skip-hash-check (image registry.k8s.io/etcd:"+v.String()+".") {
			t.Errorf("restore said %q, want etcdutl chosen from the image tag", res["restore"].Output)
		}
		if len(app) != 10 || len(dirs) != 2 {
			t.Errorf("keys under app/: %v, backups %v: want the 10 the backend held (app/9's delete, only in the WAL, lost), and the copy before the changes and the data dir moved aside by the restore", app, dirs)
		}
	}
	if len(res["verify"].After) != 1 || len(res["verify"].After[0].Alarms) != 0 || res["verify"].After[0].Quota != 8<<20 {
		t.Errorf("after: %+v, want the member without alarms, at its new quota", res["verify"].After)
	}
	if !strings.Contains(res["defragment"].Output, "defragmented "+n.Name+" (") {
		t.Errorf("defragment said %q", res["defragment"].Output)
	}

	// Repeated, the steps that changed something find their work done.
	if again, err := rn.Step("backup"); err != nil || !strings.Contains(again.Output, "by an earlier attempt") {
		t.Errorf("backup again: %q (%v)", again.Output, err)
	}
	want := "serves again"
	if snapFilesCure(v) {
		want = "not needed: member " + n.Name + " serves since its start"
	}
	if again, err := rn.Step("restore"); err != nil || !strings.Contains(again.Output, want) || len(backups(t, n)) != len(dirs) {
		t.Errorf("restore again: %q (%v), backups %v: want %q, and no restore again", again.Output, err, backups(t, n), want)
	}

	// A restore leaves no alarm behind, nor does the disarm step; one the member raises later,
	// while its backend is well within the new quota, is disarmed.
	st, err := e.cl.Status(context.Background(), n.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewMaintenanceClient(e.cl.ActiveConnection()).Alarm(context.Background(),
		&pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE})
	if err != nil {
		t.Fatal(err)
	}
	if disarm, err := rn.Step("disarm"); err != nil || !strings.Contains(disarm.Output, "disarmed NOSPACE of member "+n.Name) {
		t.Errorf("disarm: %q (%v)", disarm.Output, err)
	}
	if alarms, err := e.cl.AlarmList(context.Background()); err != nil || len(alarms.Alarms) != 0 {
		t.Errorf("alarms after disarm: %v (%v)", alarms, err)
	}
}

// One member of three panics the same way. Before 3.7 removing its raft snapshot files cures
// it, and it rejoins with its data. On 3.7 it still panics; restoring it from its own backend
// would split it off, so the restore step refuses, names the remediation that applies, and
// leaves it as it is.
func TestAMemberOfSeveralIsCuredOrLeftToBeReplaced(t *testing.T) {
	etcdtest.EachVersion(t, func(t *testing.T, v etcdtest.Version) { memberOfSeveral(t, v) })
}

func memberOfSeveral(t *testing.T, v etcdtest.Version) {
	e := startEnv(t, v, 3, 0)
	n := e.c.Nodes[2]
	e.put("app", 10)

	// While it is healthy there is nothing to recover, and nothing is touched.
	healthy, failed, err := newRunner(t, e.r, map[string]string{"member": n.Name}, nil).All()
	var nothing *remediator.NothingToDo
	if failed != "preflight" || !errors.As(err, &nothing) || !strings.Contains(err.Error(), "nothing to recover") {
		t.Fatalf("step %q: %v; want preflight to find nothing to do for a healthy member", failed, err)
	}
	if pre := healthy["preflight"]; len(pre.Before) != 3 || !strings.Contains(pre.Output, "member "+n.Name+" on node") {
		t.Errorf("preflight output %q, figures %+v: want what it found as evidence", pre.Output, pre.Before)
	}
	if dirs := backups(t, n); len(dirs) != 0 {
		t.Errorf("backups %v of a healthy member, want none", dirs)
	}

	old := e.copyBackend(n)
	e.put("late", 5) // past the copied backend: only the member's WAL holds them
	e.newSnapshot(n)
	manifest, err := os.ReadFile(n.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	e.crash(n, old)

	rn := newRunner(t, e.r, map[string]string{"health_timeout": "3s"}, map[string]string{"alertname": "EtcdPanics", "node": n.Name})
	res, failed, err := rn.All()
	for _, p := range rn.Plan {
		t.Logf("%s: %s", p.Name, res[p.Name].Output)
	}
	if !strings.Contains(res["raise-quota"].Output, "the quota stays") {
		t.Errorf("raise-quota said %q, want the quota left alone", res["raise-quota"].Output)
	}
	if now, err := os.ReadFile(n.Manifest()); err != nil || !bytes.Equal(now, manifest) {
		t.Errorf("the manifest (%v) changed:\n%s", err, now)
	}
	dirs := backups(t, n)
	if len(dirs) != 1 {
		t.Fatalf("backups %v, want only the copy made before any change", dirs)
	}
	mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err2 := e.cl.MemberList(mctx)
	if err2 != nil || len(list.Members) != 3 {
		t.Fatalf("member list %v (%v), want the three members", list, err2)
	}
	if keys := e.get("app/"); len(keys) != 10 {
		t.Errorf("keys under app/: %v, want the 10 written", keys)
	}

	if snapFilesCure(v) {
		if err != nil {
			t.Fatalf("step %s: %v; want etcd %s cured by the removal of its raft snapshot files", failed, err, v)
		}
		if !strings.Contains(res["start"].Output, "serves again") || !strings.Contains(res["restore"].Output, "not needed") {
			t.Errorf("start said %q, restore %q: want the member serving again, and no restore", res["start"].Output, res["restore"].Output)
		}
		// verify read a probe back on every member: the cured one holds what the others do.
		if after := res["verify"].After; len(after) != 3 || slices.ContainsFunc(after, func(s remediator.MemberStatus) bool { return s.Error != "" }) {
			t.Errorf("after: %+v, want the three members healthy", after)
		}
		st, err := e.cl.Status(mctx, n.ClientURL)
		if err != nil || len(st.Errors) != 0 {
			t.Errorf("the cured member's status %v (%v)", st, err)
		}
		return
	}
	if failed != "restore" || remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "etcd-member-replace") {
		t.Fatalf("step %q: %v; want the restore refused, pointing at etcd-member-replace", failed, err)
	}
	t.Log(err)
	// The member keeps failing to start as it did, with its WAL and backend where they were.
	wal := filepath.Join("member", "wal")
	if now, saved := tree(t, filepath.Join(n.DataDir, wal)), tree(t, filepath.Join(dirs[0], wal)); len(now) == 0 || !sameTree(now, saved) {
		t.Errorf("the member's WAL (%d files) is not as it was (%d files)", len(now), len(saved))
	}
	if _, err := os.Stat(backend(n)); err != nil {
		t.Errorf("the member's backend is gone: %v", err)
	}
	if restarts := n.Kubelet.Restarts("etcd.yaml"); restarts < 2 {
		t.Errorf("the kubelet started the member %d times, want it left crash-looping", restarts)
	}
	if keys := e.get("late/"); len(keys) != 5 {
		t.Errorf("keys under late/: %v, want the 5 the other members hold", keys)
	}
}

func TestParamsAreChecked(t *testing.T) {
	tests := map[string]struct {
		params map[string]string
		want   string
	}{
		"quota above the maximum": {map[string]string{"quota_bytes": "17179869184"}, "params.quota_bytes: 17179869184 is above params.max_quota_bytes (8589934592)"},
		"short health timeout":    {map[string]string{"health_timeout": "10ms"}, "params.health_timeout: must be at least 1s"},
		"unknown":                 {map[string]string{"probe_prefix": "x"}, "params.probe_prefix: unknown parameter"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(nil, nil).Plan(tt.params)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || remediator.ErrorCode(err) != remediator.EINVALID {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// nodeNames maps members to nodes as nodeops.Nodes does, without agents.
type nodeNames map[string]string

func (n nodeNames) Node(_, member string) string {
	if node, ok := n[member]; ok {
		return node
	}
	return member
}

func (n nodeNames) Do(context.Context, string, string, remediator.NodeAction) (remediator.NodeResult, error) {
	return remediator.NodeResult{}, io.ErrUnexpectedEOF
}

func TestTheMemberIsFoundFromTheAlerts(t *testing.T) {
	nodes := nodeNames{"etcd-a": "cp-1"}
	known := []string{"etcd-a", "cp-2"}
	tests := map[string]struct {
		params map[string]string
		labels []map[string]string
		want   string
	}{
		"param wins":          {map[string]string{"member": "cp-2"}, []map[string]string{{"member": "etcd-a"}}, "cp-2"},
		"member label":        {nil, []map[string]string{{"member": "etcd-a"}}, "etcd-a"},
		"node label, mapped":  {nil, []map[string]string{{"node": "cp-1"}}, "etcd-a"},
		"pod label":           {nil, []map[string]string{{"pod": "etcd-cp-2"}, {"alertname": "x"}}, "cp-2"},
		"other pod":           {nil, []map[string]string{{"pod": "kube-apiserver-cp-1"}}, "no alert names the failing member"},
		"none":                {nil, []map[string]string{{"alertname": "x"}}, "no alert names the failing member"},
		"two members":         {nil, []map[string]string{{"node": "cp-1"}, {"member": "cp-2"}}, "the alerts name several members (etcd-a, cp-2)"},
		"same member, twice":  {nil, []map[string]string{{"node": "cp-1"}, {"member": "etcd-a"}}, "etcd-a"},
		"unknown node itself": {nil, []map[string]string{{"node": "cp-9"}}, "cp-9"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := params.Of[Params](tt.params)
			if err != nil {
				t.Fatal(err)
			}
			r := &run{Remediation: New(nil, nodes), Params: s}
			var in remediator.StepInput
			in.Incident.Cluster = "test"
			for _, l := range tt.labels {
				in.Incident.Evidence = append(in.Incident.Evidence, remediator.Alert{Labels: l})
			}
			got, err := r.memberOf(in, known)
			if err != nil {
				got = err.Error()
				if remediator.ErrorCode(err) != remediator.EPRECONDITION {
					t.Errorf("code %s", remediator.ErrorCode(err))
				}
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTheQuotaIsRaisedOnlyWhenItWasTheCause(t *testing.T) {
	const mib = 1 << 20
	tests := map[string]struct {
		params   map[string]string
		quota    string // the --quota-backend-bytes flag, "" for none
		db       int64
		newQuota int64 // 0: not the cause
		err      string
	}{
		"well within":               {nil, "4194304", 1 * mib, 0, ""},
		"full: doubled":             {nil, "4194304", 4 * mib, 8 * mib, ""},
		"over it: doubled":          {nil, "4194304", 6 * mib, 8 * mib, ""},
		"etcd's default, full":      {nil, "", 1900 * mib, 4 << 30, ""},
		"0 is etcd's default":       {nil, "0", 100 * mib, 0, ""},
		"doubling capped":           {nil, "6442450944", 6 << 30, 8 << 30, ""},
		"as asked":                  {map[string]string{"quota_bytes": "12582912"}, "4194304", 4 * mib, 12 * mib, ""},
		"already at the maximum":    {nil, "8589934592", 8 << 30, 0, "the quota can only go to 8.0 GiB"},
		"asked for too little room": {map[string]string{"quota_bytes": "6291456"}, "4194304", 6 * mib, 0, "the quota can only go to 6.0 MiB"},
		"not a number":              {nil, "4Gi", 1, 0, `--quota-backend-bytes="4Gi" is not a number of bytes`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := params.Of[Params](tt.params)
			if err != nil {
				t.Fatal(err)
			}
			flags := map[string]string{}
			if tt.quota != "" {
				flags["quota-backend-bytes"] = tt.quota
			}
			f := findings{Member: "cp-1", DBSize: tt.db}
			line, err := s.judgeQuota(&f, flags)
			switch {
			case tt.err != "":
				if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "member cp-1") {
					t.Errorf("error %v, want a refusal naming cp-1 and saying %q", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			case f.QuotaCause != (tt.newQuota != 0) || f.NewQuota != tt.newQuota:
				t.Errorf("cause %v, new quota %d (%s); want %d", f.QuotaCause, f.NewQuota, line, tt.newQuota)
			}
		})
	}
}

func TestALoneMemberIsTrustedOnlyWhenNothingSaysOtherwise(t *testing.T) {
	own := "http://10.0.0.11:2379"
	tests := map[string]struct {
		initial   string
		endpoints []string
		err       string
	}{
		"alone":                       {"cp-1=http://10.0.0.11:2380", []string{own + "/"}, ""},
		"initial cluster of three":    {"cp-1=http://10.0.0.11:2380,cp-2=http://10.0.0.12:2380", []string{own}, "names others too (cp-2)"},
		"no initial cluster":          {"", []string{own}, "does not name it"},
		"another member's endpoint":   {"cp-1=http://10.0.0.11:2380", []string{"http://10.0.0.12:2379"}, "are not member cp-1's own one"},
		"a front for several members": {"cp-1=http://10.0.0.11:2380", []string{own, "http://10.0.0.12:2379"}, "are not member cp-1's own one"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := alone("cp-1", map[string]string{"initial-cluster": tt.initial, "advertise-client-urls": own}, tt.endpoints)
			if tt.err == "" && err != nil || tt.err != "" && (remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
}
