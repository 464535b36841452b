package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/polltest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/nodeops"
	"github.com/remediator/remediator/remediations/params"
)

// The slow disk of the seed, played by etcd stopped (SIGSTOP) for a stall and then running for
// a second, over and over: every request to it waits out the rest of the stall.
const (
	// stall is past kube-apiserver's default 2s and under the 4s the remediation raises it to.
	stall = 3 * time.Second
	// hopeless is past the 4s that max_timeout allows in the cases no raise can help. Then a
	// stable_for of hopelessStable is never met: kube-apiserver answers from its last etcd
	// check between checks (one per half timeout), so it looks ready for a few seconds at a
	// time, never for two duty cycles.
	hopeless       = 6 * time.Second
	hopelessStable = "12s"
	running        = time.Second
)

// env is one real etcd member, with enough writes behind it to judge its disk, and a real
// NATS for node agents. Its member m1 runs on node cp-1. Every case has its own, so that one
// case's slow disk is not another's.
type env struct {
	etcd    *etcdtest.Cluster
	clients *etcdops.Clients
	q       *queue.Queue
	nodes   *nodeops.Nodes
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	etcd := etcdtest.New(t, etcdtest.Options{})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// A p99 is judged on a hundred observations: every put is a WAL fsync, and compacting
	// after it makes the backend commit it at once instead of in its next 100ms batch.
	for i := range 110 {
		put, err := cl.Put(ctx, fmt.Sprintf("k/%d", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Compact(ctx, put.Header.Revision); err != nil {
			t.Fatal(err)
		}
	}
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: etcd.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	q, err := queue.Open(ctx, queue.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return &env{etcd: etcd, clients: clients, q: q,
		nodes: &nodeops.Nodes{Agents: q.Agents(), Names: map[string]map[string]string{"test": {"m1": "cp-1"}}}}
}

// node is a control-plane node: a real kube-apiserver, run by a test kubelet as the static pod
// of kubeadm's kube-apiserver.yaml (its addresses and files pointed at the test), on the env's
// etcd, and a real agent serving over NATS that finds kube-apiserver's /readyz from the
// manifest's --secure-port, as on a node.
type node struct {
	name, manifests, backups string
	// original is the manifest as the node started with it.
	original []byte
	api      *etcdtest.APIServer
}

// node starts a node whose kube-apiserver has flags besides kubeadm's.
func (e *env) node(t *testing.T, name string, flags map[string]string) *node {
	t.Helper()
	dir := t.TempDir()
	api := etcdtest.NewAPIServer(t, etcdtest.APIServerOptions{
		Template:    filepath.Join("..", "..", "testdata", "manifests", "kube-apiserver.yaml"),
		EtcdServers: e.etcd.Endpoints(),
		Flags:       flags,
		Dir:         dir,
	})
	n := &node{name: name, manifests: filepath.Dir(api.Manifest), backups: filepath.Join(dir, "backups"), api: api}
	var err error
	if n.original, err = os.ReadFile(api.Manifest); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Node: name, Cluster: "test", ManifestsDir: n.manifests,
		StoppedDir: filepath.Join(dir, "stopped"), BackupDir: n.backups})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- e.q.AgentConn().Serve(ctx, queue.Serving{Cluster: "test", Node: name, Log: slog.New(slog.DiscardHandler)}, a.Do)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	polltest.NoError(t, 5*time.Second, "the agent of "+name+" to answer", func(ctx context.Context) error {
		_, err := e.q.Agents().Ask(ctx, "test", name, remediator.NodeAction{Kind: remediator.ActionInspect, Component: remediator.ComponentAPIServer, Incident: "wait"})
		return err
	})
	return n
}

// readyz asks kube-apiserver's /readyz?verbose and says how long the answer took.
func (n *node) readyz() (body string, status int, took time.Duration, err error) {
	start := time.Now()
	body, status, err = n.api.Readyz(context.Background())
	return body, status, time.Since(start), err
}

// failing waits until kube-apiserver's own /readyz fails the seed's way, and returns the answer.
func (n *node) failing(t *testing.T) string {
	t.Helper()
	var body string
	polltest.Until(t, 30*time.Second, n.name+"'s kube-apiserver to fail its etcd check", func() (bool, string) {
		b, status, took, err := n.readyz()
		body = b
		return status == http.StatusInternalServerError && strings.Contains(b, "[-]etcd failed: reason withheld\n"),
			fmt.Sprintf("status %d in %s, %v:\n%s", status, took, err, b)
	})
	return body
}

// holds checks that kube-apiserver stays ready for two duty cycles of the slow disk, its etcd
// checks passing, at least one of them after waiting a second or more for the stopped etcd.
func (n *node) holds(t *testing.T) {
	t.Helper()
	var (
		from     = time.Now()
		waited   time.Duration
		notReady string
	)
	polltest.Until(t, 30*time.Second, fmt.Sprintf("%s's kube-apiserver ready for two duty cycles, waiting out a stall", n.name), func() (bool, string) {
		body, status, took, err := n.readyz()
		if err != nil || status != http.StatusOK || !strings.Contains(body, "[+]etcd ok\n") || !strings.Contains(body, "[+]etcd-readiness ok\n") {
			notReady = fmt.Sprintf("status %d after %s, %v:\n%s", status, took, err, body)
			return true, ""
		}
		waited = max(waited, took)
		return time.Since(from) > 2*(stall+running) && waited >= time.Second, fmt.Sprintf("ready for %s, the longest answer in %s", time.Since(from), waited)
	})
	if notReady != "" {
		t.Errorf("%s's kube-apiserver was not ready under the same slow disk: %s", n.name, notReady)
	}
}

// started waits until the kubelet has started kube-apiserver times times and the last start is
// the process running, with its command line, and returns the starts.
func (n *node) started(t *testing.T, times int) []etcdtest.APIServerStart {
	t.Helper()
	var starts []etcdtest.APIServerStart
	polltest.Until(t, 10*time.Second, fmt.Sprintf("%s's kube-apiserver started %d times", n.name, times), func() (bool, string) {
		var err error
		starts, err = n.api.Starts()
		if err != nil || len(starts) != times {
			return false, fmt.Sprintf("%d starts, %v", len(starts), err)
		}
		last := starts[len(starts)-1]
		args, err := n.api.Args()
		if err != nil || last.Pid != n.api.Pid() || !slices.Equal(args[1:], last.Args) {
			return false, fmt.Sprintf("the last start is %+v; running %d: %q, %v", last, n.api.Pid(), args, err)
		}
		return true, ""
	})
	return starts
}

// timeouts are the etcd check timeouts on a command line.
func timeouts(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--"+healthcheckFlag+"=") || strings.HasPrefix(a, "--"+readycheckFlag+"=") {
			out = append(out, a)
		}
	}
	return out
}

// changes lists the lines the manifest lost and gained since the node started.
func (n *node) changes(t *testing.T) (removed, added []string) {
	t.Helper()
	now, err := os.ReadFile(n.api.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	was, is := strings.Split(string(n.original), "\n"), strings.Split(string(now), "\n")
	for _, l := range was {
		if !slices.Contains(is, l) {
			removed = append(removed, l)
		}
	}
	for _, l := range is {
		if !slices.Contains(was, l) {
			added = append(added, l)
		}
	}
	return removed, added
}

func (n *node) untouched(t *testing.T) {
	t.Helper()
	if now, err := os.ReadFile(n.api.Manifest); err != nil || string(now) != string(n.original) {
		t.Errorf("%s: manifest is not byte for byte the original (%v):\n%s", n.name, err, now)
	}
	if entries, _ := os.ReadDir(n.manifests); len(entries) != 1 {
		t.Errorf("%s: the manifests folder holds %d files, want only kube-apiserver.yaml", n.name, len(entries))
	}
}

// slowDisk makes the env's etcd slow with the given stall, and waits until every node's
// kube-apiserver fails its etcd check; it returns the alert an operator's probe of the first
// node would send, quoting its /readyz, and stop, which makes the disk fast again.
func (e *env) slowDisk(t *testing.T, stall time.Duration, nodes ...*node) (remediator.Alert, func()) {
	t.Helper()
	stop := etcdtest.SlowDisk(t, e.etcd.Members[0].Pid(), stall, running)
	var said string
	for i, n := range nodes {
		if body := n.failing(t); i == 0 {
			said = body
		}
	}
	return remediator.Alert{Status: remediator.AlertFiring,
		Labels:      map[string]string{"alertname": "KubeAPIServerNotReady", "severity": "critical"},
		Annotations: map[string]string{"description": "GET /readyz?verbose answered 500:\n" + said}}, stop
}

// incident runs the plan under an incident named after the test, so that its backups are its own.
func (e *env) incident(t *testing.T, params map[string]string, alerts ...remediator.Alert) *steptest.Runner {
	t.Helper()
	rn := steptest.New(t, New(e.clients, e.nodes).Plan, "test", params)
	rn.Incident.ID = strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '.' || r == ':' {
			return '-'
		}
		return r
	}, t.Name())
	rn.Incident.Evidence = alerts
	return rn
}

// seedAlert carries the seed's log lines.
func seedAlert(labels map[string]string) remediator.Alert {
	l := map[string]string{"alertname": "KubeAPIServerEtcdCheckFailing", "severity": "critical"}
	for k, v := range labels {
		l[k] = v
	}
	return remediator.Alert{Status: remediator.AlertFiring, Labels: l, Annotations: map[string]string{
		"description": "Readiness probe failed: Get \"https://10.0.0.11:6443/healthz\": context deadline exceeded\n" +
			"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]poststarthook/bootstrap-controller ok\nhealthz check failed",
		"etcd_log": `etcdserver: read-only range request "key:\"/registry/health\" " with result "error:context deadline exceeded" took too long (2.000041013s) to execute`,
	}}
}

// waits are the remediation's waits for a kube-apiserver that restarts under a slow disk: a
// stable_for of more than two duty cycles, in which the default 2s timeout never held, and
// room for a restart on two busy cores.
func waits(p map[string]string) map[string]string {
	out := map[string]string{"sample_window": "0s", "health_timeout": "45s", "stable_for": "9s"}
	for k, v := range p {
		out[k] = v
	}
	return out
}

func contains(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, s)
		}
	}
}

// seedFix are the two flags of the seed's fix, as the process runs them, and raisedLines as
// the manifest holds them.
var (
	seedFix     = []string{"--etcd-healthcheck-timeout=4s", "--etcd-readycheck-timeout=4s"}
	raisedLines = []string{"    - --etcd-healthcheck-timeout=4s", "    - --etcd-readycheck-timeout=4s"}
)

func TestRemediation(t *testing.T) {
	t.Run("the seed: the default 2s fails on a slow etcd, is doubled to 4s, and kube-apiserver then holds", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		endpoint := e.etcd.Members[0].ClientURL
		n := e.node(t, "cp-1", nil)
		alert, _ := e.slowDisk(t, stall, n)
		in := e.incident(t, waits(map[string]string{"node": "cp-1"}), alert)
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}

		// The evidence quotes what kube-apiserver said, and the member's real disk figures,
		// whatever they are on this machine: a stopped etcd is slow however fast it fsyncs.
		contains(t, "evidence", in.Output("evidence"),
			"KubeAPIServerNotReady: [-]etcd failed: reason withheld", "m1 (", "at "+endpoint+": ", "wal fsync p99", "Follow-up:")
		var ev evidence
		if err := json.Unmarshal(in.Incident.Steps[0].Progress, &ev); err != nil || len(ev.Disks) != 1 || ev.Disks[0].WALFsync <= 0 {
			t.Errorf("evidence progress %s: %v, want m1's WAL fsync p99", in.Incident.Steps[0].Progress, err)
		}

		// kube-apiserver 1.37 lists etcd-readiness in its /readyz: both timeouts are raised.
		contains(t, "inspect", in.Output("inspect"),
			"cp-1: --etcd-healthcheck-timeout 2s (unset, kube-apiserver's default) -> 4s, --etcd-readycheck-timeout 2s (unset, kube-apiserver's default) -> 4s")
		removed, added := n.changes(t)
		if len(removed) != 0 || !slices.Equal(added, raisedLines) {
			t.Errorf("manifest lost %q and gained %q, want only the two flags added", removed, added)
		}
		if entries, _ := os.ReadDir(n.manifests); len(entries) != 1 {
			t.Errorf("the manifests folder holds %d files: a backup there would run as a second kube-apiserver", len(entries))
		}
		var p raiseProgress
		if err := json.Unmarshal(in.Incident.Steps[2].Progress, &p); err != nil || len(p.Raised) != 1 {
			t.Fatalf("raise progress %s: %v", in.Incident.Steps[2].Progress, err)
		}
		if backup, err := os.ReadFile(p.Raised[0].Backup); err != nil || string(backup) != string(n.original) || !strings.HasPrefix(p.Raised[0].Backup, n.backups+"/") {
			t.Errorf("backup %s is not the original manifest under %s: %v", p.Raised[0].Backup, n.backups, err)
		}
		contains(t, "verify", in.Output("verify"),
			"cp-1: kube-apiserver ready for 9s with --etcd-healthcheck-timeout=4s, --etcd-readycheck-timeout=4s")

		// The kubelet restarted kube-apiserver with the new flags, and under the same slow
		// disk that failed the default 2s it now stays ready.
		if starts := n.started(t, 2); timeouts(starts[0].Args) != nil || !slices.Equal(timeouts(starts[1].Args), seedFix) {
			t.Errorf("kube-apiserver started with %q, then %q; want none, then %q", timeouts(starts[0].Args), timeouts(starts[1].Args), seedFix)
		}
		n.holds(t)

		// A raise repeated after losing its progress sets what inspect planned, not another
		// doubling, and restarts nothing.
		in.Incident.Steps[2].Progress = nil
		if res, err := in.Step("raise"); err != nil {
			t.Fatal(err)
		} else {
			contains(t, "the repeated raise", res.Output, "already had the flags asked for", "kube-apiserver is not restarted")
		}
		if _, added := n.changes(t); !slices.Equal(added, raisedLines) {
			t.Errorf("after a repeated raise the manifest gained %q", added)
		}
		n.started(t, 2) // and not a third time: the repeated raise changed nothing
	})

	t.Run("a disk no allowed timeout can wait for: the raise is rolled back, and verify says so", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		n := e.node(t, "cp-1", nil)
		alert, fast := e.slowDisk(t, hopeless, n)
		in := e.incident(t, waits(map[string]string{"node": "cp-1", "max_timeout": "4s", "health_timeout": "30s", "stable_for": hopelessStable}), alert)
		_, failed, err := in.All()
		if failed != "verify" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
			t.Fatalf("step %q: %v (%s), want verify to fail for good", failed, err, remediator.ErrorCode(err))
		}
		contains(t, "the failure", err.Error(), "kube-apiserver on cp-1 was not ready for 12s within 30s of --etcd-healthcheck-timeout=4s, --etcd-readycheck-timeout=4s",
			"failed: reason withheld", "readyz check failed", "rolled it back", "slower than 4s", "SSD")
		contains(t, "verify", in.Output("verify"), "failed: reason withheld", "rolled back to "+n.backups)
		n.untouched(t)
		// Raised once, rolled back once: the process runs kubeadm's flags again.
		if starts := n.started(t, 3); !slices.Equal(timeouts(starts[1].Args), seedFix) || timeouts(starts[2].Args) != nil {
			t.Errorf("kube-apiserver restarted with %q, then %q; want %q, then none", timeouts(starts[1].Args), timeouts(starts[2].Args), seedFix)
		}

		// Retried with the disk fast again, verify does not take the old timeout's answers
		// for a success.
		fast()
		polltest.NoError(t, 30*time.Second, "kube-apiserver ready on a fast disk", n.api.WaitReady)
		if res, err := in.Step("verify"); remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "rolled back by an earlier attempt") {
			t.Errorf("verify again: %v", err)
		} else {
			contains(t, "verify again", res.Output, "is already as in", "kube-apiserver is not restarted")
		}
		n.untouched(t)
		n.started(t, 3) // and not a fourth time: the second rollback had nothing to change
	})

	t.Run("one node at a time: a node that stays unready stops the rollout", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		n1 := e.node(t, "cp-1", nil)
		n2 := e.node(t, "cp-2", nil)
		alert, _ := e.slowDisk(t, hopeless, n1, n2)
		in := e.incident(t, waits(map[string]string{"node": "cp-1,cp-2", "max_timeout": "4s", "health_timeout": "30s", "stable_for": hopelessStable}), alert)
		_, failed, err := in.All()
		if failed != "raise" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
			t.Fatalf("step %q: %v, want raise to stop at cp-1", failed, err)
		}
		contains(t, "the failure", err.Error(), "kube-apiserver on cp-1 was not ready", "failed: reason withheld", "rolled it back and left cp-2 alone")
		n1.untouched(t)
		n2.untouched(t)
		if starts := n1.started(t, 3); !slices.Equal(timeouts(starts[1].Args), seedFix) || timeouts(starts[2].Args) != nil {
			t.Errorf("cp-1's kube-apiserver restarted with %q, then %q; want %q, then none", timeouts(starts[1].Args), timeouts(starts[2].Args), seedFix)
		}
		n2.started(t, 1) // and never again: it was left alone
	})

	t.Run("one node at a time: each ready before the next", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		n1 := e.node(t, "cp-1", nil)
		n2 := e.node(t, "cp-2", nil)
		in := e.incident(t, waits(map[string]string{"node": "cp-2, cp-1", "stable_for": "2s"}), seedAlert(nil))
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		contains(t, "raise", in.Output("raise"), "cp-2: kube-apiserver ready for 2s")
		for _, n := range []*node{n1, n2} {
			if _, added := n.changes(t); !slices.Equal(added, raisedLines) {
				t.Errorf("%s: manifest gained %q, want the two flags", n.name, added)
			}
			if starts := n.started(t, 2); !slices.Equal(timeouts(starts[1].Args), seedFix) {
				t.Errorf("%s: kube-apiserver restarted with %q, want %q", n.name, timeouts(starts[1].Args), seedFix)
			}
		}
	})

	t.Run("a doubling stops at max_timeout, on the node the alert's instance names", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		n := e.node(t, "cp-1", map[string]string{"etcd-healthcheck-timeout": "4s", "etcd-readycheck-timeout": "3s"})
		instance := strings.TrimPrefix(e.etcd.Members[0].ClientURL, "http://")
		in := e.incident(t, waits(map[string]string{"max_timeout": "6s", "stable_for": "2s"}), seedAlert(map[string]string{"instance": instance}))
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		contains(t, "inspect", in.Output("inspect"), "the alerts name (KubeAPIServerEtcdCheckFailing instance="+instance+"): cp-1")
		if removed, added := n.changes(t); !slices.Equal(added, []string{"    - --etcd-healthcheck-timeout=6s", "    - --etcd-readycheck-timeout=6s"}) || len(removed) != 2 {
			t.Errorf("manifest lost %q and gained %q, want both at the 6s cap", removed, added)
		}
		if starts := n.started(t, 2); !slices.Equal(timeouts(starts[1].Args), []string{"--etcd-healthcheck-timeout=6s", "--etcd-readycheck-timeout=6s"}) {
			t.Errorf("kube-apiserver restarted with %q, want both at 6s", timeouts(starts[1].Args))
		}
	})

	t.Run("nothing done where nothing shows a slow etcd, or the timeouts are at the cap", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		n := e.node(t, "cp-1", map[string]string{"etcd-healthcheck-timeout": "8s", "etcd-readycheck-timeout": "8s"})

		t.Run("no sign of a slow etcd is nothing to do", func(t *testing.T) {
			// An alert for the node that quotes no failed check: what a policy matching on a
			// restart alone would send.
			in := e.incident(t, waits(map[string]string{"node": "cp-1"}), remediator.Alert{Status: remediator.AlertFiring,
				Labels: map[string]string{"alertname": "KubeAPIServerRestarts", "node": "cp-1"}, Annotations: map[string]string{"description": "kube-apiserver restarted 3 times"}})
			res, failed, err := in.All()
			var nothing *remediator.NothingToDo
			if failed != "evidence" || !errors.As(err, &nothing) {
				t.Errorf("step %q: %v (%s), want evidence to find nothing to do", failed, err, remediator.ErrorCode(err))
			} else {
				contains(t, "the reason", nothing.Reason, "the alerts quote no failed etcd check", "no member's disk is over etcd's guidance", "WAL fsync p99")
			}
			contains(t, "evidence", res["evidence"].Output, "the alerts quote no failed etcd check or slow etcd request", "m1 (")
			for _, step := range []string{"inspect", "raise", "verify"} {
				if s := in.Incident.Steps[in.Index(step)]; s.State != remediator.StepSkipped {
					t.Errorf("%s is %s, want skipped", step, s.State)
				}
			}
		})

		t.Run("already at the cap is refused", func(t *testing.T) {
			in := e.incident(t, waits(map[string]string{"node": "cp-1"}), seedAlert(nil))
			_, failed, err := in.All()
			if failed != "inspect" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
				t.Fatalf("step %q: %v (%s), want inspect to refuse", failed, err, remediator.ErrorCode(err))
			}
			contains(t, "the refusal", err.Error(), "cp-1 already gives etcd's checks --etcd-healthcheck-timeout=8s, --etcd-readycheck-timeout=8s",
				"max_timeout is 8s", "move its data dir to an SSD", "WAL fsync p99")
		})

		n.untouched(t)
		if entries, _ := os.ReadDir(n.backups); len(entries) != 0 {
			t.Errorf("doing nothing made backups: %v", entries)
		}
		n.started(t, 1) // and never again
	})
}

func TestListsReadycheck(t *testing.T) {
	tests := []struct {
		name, readyz string
		known        bool
	}{
		// kube-apiserver 1.37's, as the tests above get it (shortened).
		{"1.26 and later list etcd-readiness", "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n[+]shutdown ok\nreadyz check passed\n", true},
		{"failing, they still list it", "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[-]etcd-readiness failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n", true},
		// 1.25's /readyz has the etcd check alone.
		{"before 1.26 there is none", "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\n[+]shutdown ok\nreadyz check failed\n", false},
		{"no answer says nothing", "", true},
		{"an answer without a list says nothing", "Unauthorized", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			known, note := listsReadycheck(tt.readyz)
			if known != tt.known || known != (note == "") {
				t.Errorf("listsReadycheck = %v, %q; want %v", known, note, tt.known)
			}
			if !known && !strings.Contains(note, "older than 1.26") {
				t.Errorf("note %q does not say why the flag is left unset", note)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	tests := []struct{ name, readyz, want string }{
		{"failed checks and the verdict, the rest counted",
			"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]etcd-readiness ok\n[+]shutdown ok\nreadyz check failed\n",
			"[-]etcd failed: reason withheld\nreadyz check failed\n(and 4 checks ok)"},
		{"no list", "Unauthorized\n", "Unauthorized"},
		{"nothing", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failures(tt.readyz); got != tt.want {
				t.Errorf("failures = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPick(t *testing.T) {
	members := []etcdops.Member{
		{ID: 1, Name: "etcd-a", Endpoint: "https://10.0.0.11:2379"},
		{ID: 2, Name: "etcd-b", Endpoint: "https://10.0.0.12:2379"},
		{ID: 3, Name: "etcd-c", Endpoint: "https://10.0.0.12:12379"},
	}
	nodeOf := func(m string) string {
		return map[string]string{"etcd-a": "cp-1", "etcd-b": "cp-2", "etcd-c": "cp-3"}[m]
	}
	alert := func(labels ...string) remediator.Alert {
		l := map[string]string{"alertname": "A"}
		for i := 0; i < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		return remediator.Alert{Labels: l}
	}
	tests := []struct {
		name   string
		alerts []remediator.Alert
		want   []string
		err    string
	}{
		{name: "node label", alerts: []remediator.Alert{alert("node", "cp-2", "instance", "10.0.0.11:6443")}, want: []string{"cp-2"}},
		{name: "static pod name", alerts: []remediator.Alert{alert("pod", "kube-apiserver-cp-3")}, want: []string{"cp-3"}},
		{name: "instance on a node's address", alerts: []remediator.Alert{alert("instance", "10.0.0.11:6443")}, want: []string{"cp-1"}},
		{name: "instance as a URL", alerts: []remediator.Alert{alert("instance", "https://10.0.0.12:12379")}, want: []string{"cp-3"}},
		{name: "instance names a member", alerts: []remediator.Alert{alert("instance", "etcd-b")}, want: []string{"cp-2"}},
		{name: "several alerts, sorted and once each",
			alerts: []remediator.Alert{alert("node", "cp-2"), alert("pod", "kube-apiserver-cp-1"), alert("node", "cp-2")}, want: []string{"cp-1", "cp-2"}},
		{name: "no node named: every member's node", alerts: []remediator.Alert{alert("severity", "critical")}, want: []string{"cp-1", "cp-2", "cp-3"}},
		{name: "an address of two nodes' members", alerts: []remediator.Alert{alert("instance", "10.0.0.12:6443")}, err: "several nodes (cp-2, cp-3)"},
		{name: "an address of no member", alerts: []remediator.Alert{alert("instance", "10.9.9.9:6443")}, err: `names instance "10.9.9.9:6443"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why, err := pick(tt.alerts, members, nodeOf)
			if tt.err != "" {
				if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "params.node") {
					t.Errorf("error %v, want a refusal saying %q and pointing at params.node", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) || why == "" {
				t.Errorf("pick = %q (%q), %v; want %q", got, why, err, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	a := seedAlert(nil)
	b := seedAlert(nil)
	b.Annotations["more"] = strings.Repeat("took too long (3.5s) to execute\n", 1) + "etcdserver: request timed out, took too long (2.1s)\n"
	for i := range 12 {
		b.Annotations["more"] += fmt.Sprintf("[-]etcd failed: reason withheld %d\n", i)
	}
	quotes, slowest := quote([]remediator.Alert{a, b})
	if slowest != 3500*time.Millisecond {
		t.Errorf("slowest request %s, want 3.5s", slowest)
	}
	if len(quotes) != maxQuotes+1 || quotes[maxQuotes] != "(and 7 more such lines)" {
		t.Errorf("quotes %q, want %d and a count of the rest", quotes, maxQuotes)
	}
	if q := strings.Join(quotes, "\n"); strings.Count(q, "[-]etcd failed: reason withheld\n") != 1 || strings.Contains(q, "[+]ping ok") {
		t.Errorf("quotes repeat a line or quote a healthy one:\n%s", q)
	}
}

func TestPlanParams(t *testing.T) {
	tests := map[string]struct {
		params map[string]string
		err    string
	}{
		"defaults":            {params: nil},
		"cap below 2s":        {params: map[string]string{"max_timeout": "1s"}, err: "params.max_timeout: must be at least 2s"},
		"not a duration":      {params: map[string]string{"health_timeout": "soon"}, err: "params.health_timeout"},
		"unknown parameter":   {params: map[string]string{"timeout": "4s"}, err: "params.timeout: unknown parameter"},
		"several nodes":       {params: map[string]string{"node": "cp-1, cp-2,,cp-1"}},
		"no sampling at all":  {params: map[string]string{"sample_window": "0s", "stable_for": "0s"}},
		"negative window":     {params: map[string]string{"sample_window": "-1s"}, err: "params.sample_window"},
		"a second is the min": {params: map[string]string{"health_timeout": "500ms"}, err: "params.health_timeout: must be at least 1s"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			plan, err := New(nil, nil).Plan(tt.params)
			if tt.err == "" {
				if err != nil || len(plan) != 4 {
					t.Fatalf("Plan = %d steps, %v", len(plan), err)
				}
				return
			}
			var e *remediator.Error
			if !errors.As(err, &e) || e.Code != remediator.EINVALID || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want EINVALID saying %q", err, tt.err)
			}
		})
	}
	s, _ := params.Of[Params](map[string]string{"node": "cp-1, cp-2,,cp-1"})
	if named := splitNodes(s.Node); !slices.Equal(named, []string{"cp-1", "cp-2"}) {
		t.Errorf("nodes %q, want cp-1 and cp-2 once each", named)
	}
	plan, _ := New(nil, nil).Plan(nil)
	risks := map[string]remediator.Risk{}
	for _, p := range plan {
		risks[p.Name] = p.Risk
	}
	if risks["evidence"] != remediator.RiskReadOnly || risks["inspect"] != remediator.RiskReadOnly || risks["raise"] != remediator.RiskHigh {
		t.Errorf("risks %v: reading must be read-only, restarting kube-apiserver high", risks)
	}
}

// etcd's own slow-disk figures, as a member on a spinning disk reports them: half the fsyncs
// over 32ms, commits up to 64ms.
const slowScrape = `# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.008"} 80
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.016"} 95
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.032"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 200
etcd_disk_wal_fsync_duration_seconds_sum 12.5
etcd_disk_wal_fsync_duration_seconds_count 200
# TYPE etcd_disk_backend_commit_duration_seconds histogram
etcd_disk_backend_commit_duration_seconds_bucket{le="0.032"} 100
etcd_disk_backend_commit_duration_seconds_bucket{le="0.064"} 200
etcd_disk_backend_commit_duration_seconds_bucket{le="+Inf"} 200
etcd_disk_backend_commit_duration_seconds_sum 8
etcd_disk_backend_commit_duration_seconds_count 200
`

func TestNothingToDoWithoutASignOfASlowEtcd(t *testing.T) {
	fast := disk{Member: "m1 (1)", Verdict: etcdops.DiskFast, WALFsync: time.Millisecond, Commit: 2 * time.Millisecond}
	slow := disk{Member: "m2 (2)", Verdict: etcdops.DiskSlow, WALFsync: 30 * time.Millisecond, Commit: 60 * time.Millisecond}
	unjudged := disk{Member: "m3 (3)", Judgement: "could not read its metrics"}
	quotes, _ := quote([]remediator.Alert{seedAlert(nil)})
	withheld, _ := quote([]remediator.Alert{{Labels: map[string]string{"alertname": "X"}, Annotations: map[string]string{"message": "healthz: etcd failed: reason withheld"}}})
	for _, tc := range []struct {
		name    string
		ev      evidence
		nothing bool
	}{
		{"the seed's quotes", evidence{Quotes: quotes, Disks: []disk{fast}}, false},
		{"the policy's withheld reason, without [-]", evidence{Quotes: withheld, Disks: []disk{fast}}, false},
		{"a slow disk without quotes", evidence{Disks: []disk{fast, slow}}, false},
		{"fast disks, no quotes", evidence{Disks: []disk{fast}}, true},
		{"no disk judged, no quotes", evidence{Disks: []disk{unjudged}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ev.nothingToDo()
			var nothing *remediator.NothingToDo
			if errors.As(err, &nothing) != tc.nothing || !tc.nothing && err != nil {
				t.Errorf("nothingToDo: %v, want nothing to do: %v", err, tc.nothing)
			}
		})
	}
}

func TestSlowDiskIsTheRootCause(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, slowScrape) }))
	defer srv.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	members := []etcdops.Member{{ID: 0xa, Name: "cp-1", Endpoint: srv.URL}, {ID: 0xb, Name: "cp-2", Endpoint: down.URL}}
	r := &run{}
	disks, err := r.measure(context.Background(), http.DefaultClient, members)
	if err != nil {
		t.Fatal(err)
	}
	quotes, slowest := quote([]remediator.Alert{seedAlert(nil)})
	ev := evidence{Quotes: quotes, SlowestRequest: slowest, Disks: disks}
	if disks[0].Verdict != etcdops.DiskSlow || disks[1].Verdict != "" {
		t.Fatalf("verdicts %s and %q, want slow and none for the member that does not answer", disks[0].Verdict, disks[1].Verdict)
	}
	contains(t, "the evidence", ev.String(),
		"cp-1 (a) at "+srv.URL+": wal fsync p99 32ms (etcd recommends under 10ms), backend commit p99 63ms (etcd recommends under 25ms)",
		"cp-2 (b) at "+down.URL+": could not read its metrics",
		"Root cause: etcd's disk is too slow on cp-1 (a)", "WAL fsync p99 32ms, backend commit p99 63ms (slow)",
		"took up to 2.000041013s", "Follow-up: move etcd's data dir to an SSD")

	// The report gets the same findings, and the fsync p99 of the member that was measured.
	res := ev.result("", []remediator.MemberStatus{{Name: "cp-1", Endpoint: srv.URL}, {Name: "cp-2", Endpoint: down.URL}})
	if !strings.HasPrefix(res.RootCause, "Root cause: etcd's disk is too slow on cp-1 (a)") || len(res.FollowUps) != 1 ||
		!strings.HasPrefix(res.FollowUps[0], "move etcd's data dir to an SSD on cp-1 (a)") {
		t.Errorf("root cause %q, follow-ups %q", res.RootCause, res.FollowUps)
	}
	if got := res.Before; len(got) != 2 || got[0].FsyncP99 < 0.016 || got[0].FsyncP99 > 0.032 || got[1].FsyncP99 != 0 {
		t.Errorf("member figures %+v: want cp-1's fsync p99 (16-32ms) and none for cp-2, which did not answer", got)
	}
}
