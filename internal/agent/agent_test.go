package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/queue"
)

func template(name string) string { return filepath.Join("..", "..", "testdata", "manifests", name) }

func nodeAgent(t *testing.T, n *etcdtest.Node) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{Node: n.Name, Cluster: "test", ManifestsDir: n.ManifestsDir,
		StoppedDir: n.StoppedDir, BackupDir: n.BackupDir})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func do(t *testing.T, a *agent.Agent, act remediator.NodeAction) remediator.NodeResult {
	t.Helper()
	if act.Incident == "" {
		act.Incident = "inc1"
	}
	res, err := a.Do(context.Background(), act)
	if err != nil {
		t.Fatalf("%s: %v", act.Kind, err)
	}
	return res
}

func etcdAct(kind remediator.ActionKind) remediator.NodeAction {
	return remediator.NodeAction{Kind: kind, Component: remediator.ComponentEtcd, Incident: "inc1", Timeout: remediator.Duration(30 * time.Second)}
}

// A static pod stopped, edited while stopped and started again, as member-replace does it; the
// member's data moved aside and the member really gone and back.
func TestStaticPodStopEditStart(t *testing.T) {
	c := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: 1, Template: template("etcd.yaml")})
	n := c.Nodes[0]
	a := nodeAgent(t, n)

	res := do(t, a, etcdAct(remediator.ActionInspect))
	if !res.Running || !res.HasData || res.DataDir != n.DataDir || res.Flags["name"] != n.Name {
		t.Fatalf("inspect = %+v", res)
	}
	if res.Probe == nil || !strings.Contains(res.Probe.Target, "exclude=NOSPACE") {
		t.Fatalf("probe = %+v", res.Probe)
	}
	// Data cannot be touched while etcd runs.
	if _, err := a.Do(context.Background(), etcdAct(remediator.ActionMoveData)); remediator.ErrorCode(err) != remediator.EPRECONDITION {
		t.Fatalf("move-data while running: %v", err)
	}

	res = do(t, a, etcdAct(remediator.ActionStop))
	if res.Running {
		t.Fatal("still running after stop")
	}
	if _, err := os.Stat(n.Manifest()); !os.IsNotExist(err) {
		t.Fatalf("manifest still in the manifests folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(n.StoppedDir, "etcd.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := c.Cluster().WaitReady(context.Background(), time.Second); err == nil {
		t.Fatal("etcd still answers after stop")
	}
	// Stopping again is no error: the reply of the first may have been lost.
	do(t, a, etcdAct(remediator.ActionStop))

	moved := do(t, a, etcdAct(remediator.ActionMoveData))
	if moved.HasData || !strings.HasPrefix(moved.Backup, n.BackupDir) {
		t.Fatalf("move-data = %+v", moved)
	}
	if _, err := os.Stat(filepath.Join(moved.Backup, "member", "wal")); err != nil {
		t.Fatalf("backup has no WAL: %v", err)
	}
	again := do(t, a, etcdAct(remediator.ActionMoveData))
	if again.Backup != moved.Backup {
		t.Fatalf("second move-data made another backup: %s", again.Backup)
	}

	// Restore the data and start: the member comes back with its keys.
	if err := os.RemoveAll(n.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved.Backup, n.DataDir); err != nil {
		t.Fatal(err)
	}
	set := etcdAct(remediator.ActionSetFlags)
	set.Set = map[string]string{"initial-cluster-state": "existing"}
	res = do(t, a, set)
	if !res.Changed || res.Flags["initial-cluster-state"] != "existing" || res.Running {
		t.Fatalf("set-flags while stopped = %+v", res)
	}
	res = do(t, a, etcdAct(remediator.ActionStart))
	if !res.Running {
		t.Fatal("not running after start")
	}
	if err := c.Cluster().WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	health := do(t, a, etcdAct(remediator.ActionHealth))
	if !strings.Contains(health.HealthOutput, `"health":"true"`) {
		t.Fatalf("health = %q", health.HealthOutput)
	}
}

// Flag edits keep a backup outside the manifests folder, and roll back to the file as it was.
func TestSetFlagsBackupAndRollback(t *testing.T) {
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(manifests, 0o700); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(template("kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(manifests, "kube-apiserver.yaml")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Node: "cp-1", Cluster: "test", ManifestsDir: manifests,
		StoppedDir: filepath.Join(dir, "stopped"), BackupDir: filepath.Join(dir, "backups")})
	if err != nil {
		t.Fatal(err)
	}
	set := remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentAPIServer, Incident: "inc1",
		Set: map[string]string{"etcd-healthcheck-timeout": "4s", "etcd-readycheck-timeout": "4s"}}
	res := do(t, a, set)
	if !res.Changed || res.Flags["etcd-healthcheck-timeout"] != "4s" || res.Flags["etcd-readycheck-timeout"] != "4s" {
		t.Fatalf("set-flags = %+v", res)
	}
	entries, _ := os.ReadDir(manifests)
	if len(entries) != 1 {
		t.Fatalf("manifests folder holds %d files: a backup or temp file there would be run as a pod", len(entries))
	}
	backup, err := os.ReadFile(res.Backup)
	if err != nil || string(backup) != string(orig) {
		t.Fatalf("backup %s is not the original: %v", res.Backup, err)
	}
	if again := do(t, a, set); again.Changed {
		t.Fatal("setting the same flags again changed the file")
	}
	roll := do(t, a, remediator.NodeAction{Kind: remediator.ActionRollback, Component: remediator.ComponentAPIServer, Incident: "inc1"})
	if got, _ := os.ReadFile(path); string(got) != string(orig) || !roll.Changed {
		t.Fatalf("rollback did not restore the original (changed %v)", roll.Changed)
	}
	// A backup of another incident, one outside the backup dir, or a link from the incident's
	// folder to a file elsewhere, is refused, and the manifest stays as it is.
	if err := os.MkdirAll(filepath.Join(dir, "backups", "inc2"), 0o700); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(dir, "planted.yaml")
	evil := strings.Replace(string(orig), "- kube-apiserver", "- kube-apiserver\n    - --authorization-mode=AlwaysAllow", 1)
	if err := os.WriteFile(planted, []byte(evil), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "backups", "inc1", "kube-apiserver.yaml.20990101T000000.000000000Z")
	if err := os.Symlink(planted, link); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []remediator.NodeAction{
		{Kind: remediator.ActionRollback, Component: remediator.ComponentAPIServer, Incident: "inc2", Backup: res.Backup},
		{Kind: remediator.ActionRollback, Component: remediator.ComponentAPIServer, Incident: "inc1", Backup: planted},
		{Kind: remediator.ActionRollback, Component: remediator.ComponentAPIServer, Incident: "inc1", Backup: link},
		{Kind: remediator.ActionRollback, Component: remediator.ComponentAPIServer, Incident: "inc1", Backup: filepath.Join(dir, "backups", "inc1", "..", "..", "planted.yaml")},
	} {
		if _, err := a.Do(context.Background(), bad); remediator.ErrorCode(err) != remediator.EFORBIDDEN {
			t.Errorf("rollback of incident %s to %s: %v, want forbidden", bad.Incident, bad.Backup, err)
		}
		if got, _ := os.ReadFile(path); string(got) != string(orig) {
			t.Fatalf("a refused rollback to %s changed the manifest", bad.Backup)
		}
	}
}

// set-flags changes only the flags remediations set, to values they would set: whatever
// else it is asked leaves the file as it was.
func TestSetFlagsTakesOnlyWhatRemediationsSet(t *testing.T) {
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(manifests, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, name := range []string{"kube-apiserver.yaml", "etcd.yaml"} {
		orig, err := os.ReadFile(template(name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(orig)
		if err := os.WriteFile(filepath.Join(manifests, name), orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := agent.New(agent.Config{Node: "cp-1", Cluster: "test", ManifestsDir: manifests,
		StoppedDir: filepath.Join(dir, "stopped"), BackupDir: filepath.Join(dir, "backups")})
	if err != nil {
		t.Fatal(err)
	}
	apiserver := func(set map[string]string, remove ...string) remediator.NodeAction {
		return remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentAPIServer, Incident: "i", Set: set, Remove: remove}
	}
	etcd := func(set map[string]string, remove ...string) remediator.NodeAction {
		return remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentEtcd, Incident: "i", Set: set, Remove: remove}
	}
	for _, tc := range []struct {
		name string
		act  remediator.NodeAction
		want string
	}{
		{"anonymous cluster-admin", apiserver(map[string]string{"authorization-mode": "AlwaysAllow", "anonymous-auth": "true"}), "not a flag remediator sets"},
		{"a check timeout of an hour", apiserver(map[string]string{"etcd-healthcheck-timeout": "1h"}), "at most 1m0s"},
		{"a check timeout that is no duration", apiserver(map[string]string{"etcd-readycheck-timeout": "$(touch /tmp/x)"}), "not a duration"},
		{"an etcd flag on kube-apiserver", apiserver(map[string]string{"quota-backend-bytes": "8589934592"}), "not a flag remediator sets"},
		{"removing the authorizer", apiserver(nil, "authorization-mode"), "removes only"},
		{"removing the quota: back to etcd's 2 GiB", etcd(nil, "quota-backend-bytes"), "removes only --force-new-cluster"},
		{"another data dir", etcd(map[string]string{"data-dir": "/tmp/elsewhere"}), "not a flag remediator sets"},
		{"a smaller quota", etcd(map[string]string{"quota-backend-bytes": "4194304"}), "below the current"},
		{"a quota that is no size", etcd(map[string]string{"quota-backend-bytes": "8G; rm -rf /"}), "not a size"},
		{"a value for a bare flag", etcd(map[string]string{"force-new-cluster": "x"}), "takes no value"},
		{"a cluster state of its own", etcd(map[string]string{"initial-cluster-state": "existing$(touch /tmp/x)"}), "must be one of new, existing"},
		{"an initial cluster without this member", etcd(map[string]string{"initial-cluster": "evil=https://10.6.6.6:2380"}), "this member, cp-1, must be in it"},
		{"an initial cluster with this member elsewhere", etcd(map[string]string{"initial-cluster": "cp-1=https://10.6.6.6:2380"}), "this member, cp-1, must be in it"},
		{"an initial cluster with a shell in it", etcd(map[string]string{"initial-cluster": "cp-1=https://10.0.0.11:2380,x=https://$(id):1"}), "is not a peer URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Do(context.Background(), tc.act)
			if remediator.ErrorCode(err) != remediator.EFORBIDDEN || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want forbidden: %q", err, tc.want)
			}
			for name, orig := range files {
				if got, _ := os.ReadFile(filepath.Join(manifests, name)); string(got) != orig {
					t.Errorf("%s changed", name)
				}
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "backups")); len(entries) != 0 {
				t.Errorf("a refused action left a backup")
			}
		})
	}
	ok := etcd(map[string]string{"initial-cluster": "cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380", "initial-cluster-state": "existing", "quota-backend-bytes": "8589934592"})
	if res := do(t, a, ok); !res.Changed || res.Flags["initial-cluster-state"] != "existing" || res.Flags["quota-backend-bytes"] != "8589934592" {
		t.Errorf("the flags a member replacement sets: %+v", res)
	}
}

// An etcd run as a service keeps its flags in a file its service manager sources: nothing
// set-flags writes there can run when it is.
func TestAFlagsFileSourcedByAShellRunsNothingOfAnAction(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "etcd.env")
	const orig = "ETCD_NAME=cp-1\nETCD_DATA_DIR=/var/lib/etcd\nETCD_INITIAL_ADVERTISE_PEER_URLS=https://10.0.0.11:2380\nETCD_QUOTA_BACKEND_BYTES=2147483648\n"
	if err := os.WriteFile(env, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Node: "cp-1", Cluster: "test", Runtime: agent.RuntimeService, BackupDir: filepath.Join(dir, "backups"),
		Service: agent.Service{Stop: []string{"true"}, Start: []string{"true"}, FlagsFile: env, FlagsFormat: manifest.FormatEnv}})
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "X")
	for _, set := range []map[string]string{
		{"quota-backend-bytes": "$(touch " + marker + ")"},
		{"initial-cluster": "cp-1=https://10.0.0.11:2380$(touch " + marker + ")"},
		{"initial-cluster": "cp-1=https://10.0.0.11:2380,`touch " + marker + "`=https://10.0.0.12:2380"},
	} {
		_, err := a.Do(context.Background(), remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentEtcd, Incident: "i", Set: set})
		if remediator.ErrorCode(err) != remediator.EFORBIDDEN {
			t.Errorf("set %v: %v, want forbidden", set, err)
		}
	}
	if got, _ := os.ReadFile(env); string(got) != orig {
		t.Errorf("a refused action changed the flags file:\n%s", got)
	}
	// What it takes reads back, sourced, as it was given, and runs nothing.
	const initial = "cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380"
	if res := do(t, a, remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentEtcd, Incident: "i",
		Set: map[string]string{"initial-cluster": initial, "quota-backend-bytes": "4294967296", "initial-cluster-state": "existing"}}); !res.Changed {
		t.Fatalf("set-flags: %+v", res)
	}
	out, err := osexec.Command("sh", "-c", `. "$1"; printf '%s|%s|%s' "$ETCD_QUOTA_BACKEND_BYTES" "$ETCD_INITIAL_CLUSTER" "$ETCD_INITIAL_CLUSTER_STATE"`, "sh", env).CombinedOutput()
	if want := "4294967296|" + initial + "|existing"; err != nil || string(out) != want {
		t.Errorf("sourced: %q, %v; want %q", out, err, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("sourcing the flags file ran a command an action carried")
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	_, err := agent.New(agent.Config{Node: "n", Cluster: "c", ManifestsDir: dir, StoppedDir: filepath.Join(dir, "stopped"), BackupDir: filepath.Join(dir, "b")})
	if err == nil || !strings.Contains(err.Error(), "agent.stopped_dir") {
		t.Fatalf("stopped dir inside the manifests folder: %v", err)
	}
	a, err := agent.New(agent.Config{Node: "n", Cluster: "c", ManifestsDir: filepath.Join(dir, "m"), StoppedDir: filepath.Join(dir, "s"), BackupDir: filepath.Join(dir, "b")})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		act  remediator.NodeAction
		code string
	}{
		"unknown kind":       {remediator.NodeAction{Kind: "rm -rf /", Component: remediator.ComponentEtcd, Incident: "i"}, remediator.EINVALID},
		"unknown component":  {remediator.NodeAction{Kind: remediator.ActionStop, Component: "kubelet", Incident: "i"}, remediator.EINVALID},
		"path in incident":   {remediator.NodeAction{Kind: remediator.ActionCopyData, Component: remediator.ComponentEtcd, Incident: "../../etc"}, remediator.EINVALID},
		"probe of apiserver": {remediator.NodeAction{Kind: remediator.ActionMoveData, Component: remediator.ComponentAPIServer, Incident: "i"}, remediator.EINVALID},
		"no manifest":        {remediator.NodeAction{Kind: remediator.ActionStop, Component: remediator.ComponentEtcd, Incident: "i"}, remediator.EPRECONDITION},
		"set nothing":        {remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentEtcd, Incident: "i"}, remediator.EINVALID},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := a.Do(context.Background(), tt.act); remediator.ErrorCode(err) != tt.code {
				t.Fatalf("got %v (%s), want %s", err, remediator.ErrorCode(err), tt.code)
			}
		})
	}
}

// The service runtime: etcd started and stopped by configured commands (a shell standing in
// for monit), its flags in a BOSH-style env file.
func TestServiceRuntime(t *testing.T) {
	bin, err := etcdtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := etcdtest.New(t, etcdtest.Options{Members: 1, Dir: filepath.Join(dir, "cluster")})
	m := c.Members[0]
	m.Kill() // from now on the "service manager" runs it
	env := fmt.Sprintf("ETCD_NAME=%s\nETCD_DATA_DIR=%s\nETCD_LISTEN_CLIENT_URLS=%s\nETCD_ADVERTISE_CLIENT_URLS=%s\nETCD_LISTEN_PEER_URLS=%s\nETCD_INITIAL_ADVERTISE_PEER_URLS=%s\nETCD_INITIAL_CLUSTER=%s=%s\n",
		m.Name, m.DataDir, m.ClientURL, m.ClientURL, m.PeerURL, m.PeerURL, m.Name, m.PeerURL)
	envFile := filepath.Join(dir, "etcd.env")
	if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := filepath.Join(dir, "etcd.pid")
	start := []string{"sh", "-c", fmt.Sprintf("set -a; . %s; %s >>%s 2>&1 & echo $! > %s", envFile, bin, filepath.Join(dir, "etcd.log"), pid)}
	stop := []string{"sh", "-c", fmt.Sprintf("kill $(cat %s)", pid)}
	t.Cleanup(func() { _ = runCmd(stop) })
	a, err := agent.New(agent.Config{Node: m.Name, Cluster: "test", Runtime: agent.RuntimeService, BackupDir: filepath.Join(dir, "backups"),
		Service: agent.Service{Start: start, Stop: stop, FlagsFile: envFile, FlagsFormat: manifest.FormatEnv}})
	if err != nil {
		t.Fatal(err)
	}
	do(t, a, etcdAct(remediator.ActionStart))
	if err := c.WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	res := do(t, a, etcdAct(remediator.ActionStop))
	if res.Running {
		t.Fatal("running after stop")
	}
	copied := do(t, a, etcdAct(remediator.ActionCopyData))
	if !copied.HasData {
		t.Fatal("copy-data removed the data")
	}
	set := etcdAct(remediator.ActionSetFlags)
	set.Set = map[string]string{"initial-cluster-state": "existing"}
	do(t, a, set)
	if b, _ := os.ReadFile(envFile); !strings.Contains(string(b), "ETCD_INITIAL_CLUSTER_STATE=existing\n") {
		t.Fatalf("env file:\n%s", b)
	}
	do(t, a, etcdAct(remediator.ActionStart))
	if err := c.WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Do(context.Background(), remediator.NodeAction{Kind: remediator.ActionSuspendProbe, Component: remediator.ComponentEtcd, Incident: "i"}); remediator.ErrorCode(err) != remediator.EPRECONDITION {
		t.Fatalf("suspend-probe on a service: %v", err)
	}
}

func runCmd(argv []string) error { return osexec.Command(argv[0], argv[1:]...).Run() }

// Actions reach the agent over NATS, and an agent that is not there is a clear, retriable error.
func TestOverNATS(t *testing.T) {
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	c := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: 1, Template: template("etcd-kubeadm-1.13.yaml")})
	n := c.Nodes[0]
	a := nodeAgent(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- q.AgentConn().Serve(ctx, queue.Serving{Cluster: "test", Node: n.Name, Log: slog.New(slog.DiscardHandler)}, a.Do)
	}()
	t.Cleanup(func() { cancel(); <-served })

	ask := func(act remediator.NodeAction) (remediator.NodeResult, error) {
		var res remediator.NodeResult
		var err error
		for range 50 { // until the subscription is in place
			if res, err = q.Agents().Ask(context.Background(), "test", n.Name, act); remediator.ErrorCode(err) != remediator.EUNAVAILABLE {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return res, err
	}
	res, err := ask(remediator.NodeAction{Kind: remediator.ActionSuspendProbe, Component: remediator.ComponentEtcd, Incident: "inc1"})
	if err != nil || !res.Probe.Suspended || res.Node != n.Name {
		t.Fatalf("suspend-probe over NATS = %+v, %v", res, err)
	}
	if _, err := ask(remediator.NodeAction{Kind: "shell", Component: remediator.ComponentEtcd, Incident: "inc1"}); remediator.ErrorCode(err) != remediator.EINVALID || !strings.Contains(err.Error(), "node "+n.Name) {
		t.Fatalf("bad action over NATS: %v", err)
	}
	_, err = q.Agents().Ask(context.Background(), "test", "cp-9", remediator.NodeAction{Kind: remediator.ActionInspect, Component: remediator.ComponentEtcd, Incident: "i"})
	if remediator.ErrorCode(err) != remediator.EUNAVAILABLE || !strings.Contains(err.Error(), "remediator agent --node cp-9") {
		t.Fatalf("absent agent: %v", err)
	}
}

// A crash-looping member answers only now and then, and the kubelet may start it once more
// before it sees its manifest gone: stop returns once the member stayed quiet, not at the
// first quiet look.
func TestStopWaitsUntilTheMemberStaysQuiet(t *testing.T) {
	c := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: 1, Template: template("etcd.yaml")})
	n := c.Nodes[0]
	a := nodeAgent(t, n)
	addr := strings.TrimPrefix(n.ClientURL, "http://")
	reopened := make(chan [2]time.Time, 1)
	go func() {
		// Once etcd is gone: quiet for 400ms, then something answers again for 500ms.
		for {
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				ln.Close()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(400 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			reopened <- [2]time.Time{}
			return
		}
		from := time.Now()
		time.Sleep(500 * time.Millisecond)
		ln.Close()
		reopened <- [2]time.Time{from, time.Now()}
	}()
	do(t, a, etcdAct(remediator.ActionStop))
	returned := time.Now()
	span := <-reopened
	if span[0].IsZero() {
		t.Skip("the port was taken by something else: cannot stage the restart")
	}
	if returned.Before(span[1]) {
		t.Errorf("stop returned at %s, while the member answered again from %s to %s", returned.Format(time.StampMilli), span[0].Format(time.StampMilli), span[1].Format(time.StampMilli))
	}
}

// restore-snapshot rebuilds etcd only from a db the same incident backed up: not another
// incident's, not one elsewhere on the node, not through a link.
func TestRestoreSnapshotTakesOnlyTheIncidentsOwnBackup(t *testing.T) {
	dir := t.TempDir()
	manifests, backups := filepath.Join(dir, "manifests"), filepath.Join(dir, "backups")
	for _, d := range []string{manifests, filepath.Join(backups, "inc1"), filepath.Join(backups, "inc2")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	orig, err := os.ReadFile(template("etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(manifests, "etcd.yaml"), orig, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Node: "cp-1", Cluster: "test", ManifestsDir: manifests, StoppedDir: filepath.Join(dir, "stopped"), BackupDir: backups})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(dir, "attacker.db")
	other := filepath.Join(backups, "inc2", "db")
	link := filepath.Join(backups, "inc1", "db")
	for _, f := range []string{elsewhere, other} {
		if err := os.WriteFile(f, []byte("not etcd's"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{elsewhere, other, link, "../inc2/db", "../../attacker.db"} {
		_, err := a.Do(context.Background(), remediator.NodeAction{Kind: remediator.ActionRestoreSnapshot, Component: remediator.ComponentEtcd, Incident: "inc1", Backup: src})
		if remediator.ErrorCode(err) != remediator.EFORBIDDEN || !strings.Contains(err.Error(), "is not one of incident inc1's backups") {
			t.Errorf("restore from %s: %v, want forbidden", src, err)
		}
	}
}

// restore-snapshot rebuilds a member with its version's own tool, which the agent picks from
// the manifest's image tag: etcdctl for etcd 3.4, etcdutl from 3.5 on. The agent has only the
// right one, so a wrong choice fails; the member restored serves its keys again.
func TestRestoreSnapshotWithTheVersionsTool(t *testing.T) {
	etcdtest.EachVersion(t, func(t *testing.T, v etcdtest.Version) {
		restorer, err := v.Restorer()
		if err != nil {
			t.Fatal(err)
		}
		c := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: 1, Template: template("etcd.yaml"), Version: v})
		n := c.Nodes[0]
		cl, err := c.Cluster().Client()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for i := range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cl.Put(ctx, fmt.Sprintf("kept/%d", i), "x")
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		cfg := agent.Config{Node: n.Name, Cluster: "test", ManifestsDir: n.ManifestsDir, StoppedDir: n.StoppedDir, BackupDir: n.BackupDir}
		cfg.Etcdutl, cfg.Etcdctl = filepath.Join(t.TempDir(), "absent"), filepath.Join(t.TempDir(), "absent")
		if restorer.Tool == etcdtest.ToolEtcdctl {
			cfg.Etcdctl = restorer.Path
		} else {
			cfg.Etcdutl = restorer.Path
		}
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}

		do(t, a, etcdAct(remediator.ActionStop))
		copied := do(t, a, etcdAct(remediator.ActionCopyData))
		do(t, a, etcdAct(remediator.ActionMoveData))
		restore := etcdAct(remediator.ActionRestoreSnapshot)
		restore.Backup = filepath.Join(copied.Backup, "member", "snap", "db")
		res := do(t, a, restore)
		if want := "with " + restorer.Tool + " snapshot restore --skip-hash-check (image registry.k8s.io/etcd:" + v.String() + "."; !strings.Contains(res.Output, want) || !res.HasData {
			t.Errorf("restore-snapshot said %q (data %v), want %q", res.Output, res.HasData, want)
		}
		do(t, a, etcdAct(remediator.ActionStart))
		if err := c.Cluster().WaitReady(context.Background(), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := cl.Get(ctx, "kept/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || got.Count != 3 {
			t.Errorf("keys under kept/ after the restore: %v (%v), want 3", got, err)
		}
	})
}
