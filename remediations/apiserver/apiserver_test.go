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
	"sync/atomic"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agent"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/manifest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/nodeops"
	"github.com/remediator/remediator/remediations/params"
)

// env is one real etcd member, with enough writes behind it to judge its disk, and a real
// NATS for node agents. Its member m1 runs on node cp-1.
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

// node is a control-plane node: its manifests folder with kubeadm's kube-apiserver.yaml, a
// real agent serving over NATS, and, for kube-apiserver, which cannot run here, a stand-in
// that answers /readyz?verbose from the manifest on disk as kube-apiserver would with etcd
// answering in the simulated latency.
type node struct {
	name, manifests, backups, manifest string
	original                           []byte
	// latency is how long the simulated etcd takes to answer the checks.
	latency atomic.Int64
	// readiness says whether kube-apiserver is 1.26 or later, with an etcd-readiness check
	// and --etcd-readycheck-timeout.
	readiness bool
	url       string
}

func (e *env) node(t *testing.T, name string, latency time.Duration, readiness bool, edit func(string) string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{name: name, manifests: filepath.Join(dir, "manifests"), backups: filepath.Join(dir, "backups"), readiness: readiness}
	n.latency.Store(int64(latency))
	n.manifest = filepath.Join(n.manifests, "kube-apiserver.yaml")
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "manifests", "kube-apiserver.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		b = []byte(edit(string(b)))
	}
	n.original = b
	if err := os.MkdirAll(n.manifests, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.manifest, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n)
	t.Cleanup(srv.Close)
	n.url = srv.URL + "/readyz?verbose"

	a, err := agent.New(agent.Config{Node: name, Cluster: "test", ManifestsDir: n.manifests,
		StoppedDir: filepath.Join(dir, "stopped"), BackupDir: n.backups, APIServerHealthURL: n.url})
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
	for i := 0; ; i++ { // until the agent's subscription is in place
		_, err := e.q.Agents().Ask(context.Background(), "test", name, remediator.NodeAction{Kind: remediator.ActionInspect, Component: remediator.ComponentAPIServer, Incident: "wait"})
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("agent of %s does not answer: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// ServeHTTP answers /readyz?verbose like kube-apiserver.
func (n *node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, err := os.ReadFile(n.manifest)
	if err != nil {
		http.Error(w, "no kube-apiserver pod: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	pod, err := manifest.ParsePod(data)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	flags := pod.Flags()
	if _, ok := flags[readycheckFlag]; ok && !n.readiness {
		// kube-apiserver before 1.26 exits on a flag it does not know.
		http.Error(w, "Error: unknown flag: --"+readycheckFlag, http.StatusServiceUnavailable)
		return
	}
	latency := time.Duration(n.latency.Load())
	ok := true
	check := func(name, flag string) string {
		timeout := defaultTimeout
		if v, set := flags[flag]; set {
			timeout, _ = time.ParseDuration(v)
		}
		if latency > timeout {
			ok = false
			return "[-]" + name + " failed: reason withheld\n"
		}
		return "[+]" + name + " ok\n"
	}
	body := "[+]ping ok\n[+]log ok\n" + check("etcd", healthcheckFlag)
	if n.readiness {
		body += check("etcd-readiness", readycheckFlag)
	}
	body += "[+]informer-sync ok\n[+]poststarthook/start-apiextensions-controllers ok\n[+]shutdown ok\n"
	if !ok {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, body+"readyz check failed\n")
		return
	}
	fmt.Fprint(w, body+"readyz check passed\n")
}

// changes lists the lines the manifest lost and gained since the node started.
func (n *node) changes(t *testing.T) (removed, added []string) {
	t.Helper()
	now, err := os.ReadFile(n.manifest)
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
	if now, err := os.ReadFile(n.manifest); err != nil || string(now) != string(n.original) {
		t.Errorf("%s: manifest is not byte for byte the original (%v):\n%s", n.name, err, now)
	}
	if entries, _ := os.ReadDir(n.manifests); len(entries) != 1 {
		t.Errorf("%s: the manifests folder holds %d files, want only kube-apiserver.yaml", n.name, len(entries))
	}
}

// incident runs the plan under an incident named after the test, so that its backups are its own.
func (e *env) incident(t *testing.T, params map[string]string, alerts ...remediator.Alert) *steptest.Runner {
	t.Helper()
	rn := steptest.New(t, New(e.clients, e.nodes).Plan, "test", params)
	rn.Incident.ID = strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '.' {
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

// fast is what the test keeps the remediation's waits at.
func fast(p map[string]string) map[string]string {
	out := map[string]string{"sample_window": "0s", "health_timeout": "2s", "stable_for": "300ms"}
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

func addFlags(flags ...string) func(string) string {
	return func(s string) string {
		anchor := "    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt\n"
		var add string
		for _, f := range flags {
			add += "    - --" + f + "\n"
		}
		return strings.Replace(s, anchor, anchor+add, 1)
	}
}

// quietLatency waits until the member's disk histograms stop changing, and returns them.
func quietLatency(t *testing.T, endpoint string) etcdops.Latency {
	t.Helper()
	var last etcdops.Latency
	for range 50 {
		l, err := etcdops.DiskLatency(context.Background(), http.DefaultClient, endpoint)
		if err != nil {
			t.Fatal(err)
		}
		if l.WALFsync.Count == last.WALFsync.Count && l.BackendCommit.Count == last.BackendCommit.Count {
			return l
		}
		last = l
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatal("etcd's disk histograms never settled")
	return last
}

func TestRemediation(t *testing.T) {
	e := newEnv(t)
	endpoint := e.etcd.Members[0].ClientURL

	t.Run("the default 2s is doubled to 4s and kept where kube-apiserver is then ready", func(t *testing.T) {
		n := e.node(t, "cp-1", 3*time.Second, true, nil)
		in := e.incident(t, fast(map[string]string{"node": "cp-1"}), seedAlert(nil))
		// etcd commits its backend in the background after the writes that made the samples:
		// the evidence and the reading it is checked against must see the same histograms.
		l := quietLatency(t, endpoint)
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}

		// The evidence quotes the alerts and the member's real p99s, within etcd's guidance.
		verdict, judged := l.Judge()
		judged = judged[:strings.LastIndex(judged, " (")] // the rest counts the seconds since etcd started
		if verdict != etcdops.DiskFast || l.WALFsyncP99() <= 0 || l.BackendCommitP99() <= 0 {
			t.Fatalf("this machine's disk: %s, %s", verdict, judged)
		}
		contains(t, "evidence", in.Output("evidence"),
			`[-]etcd failed: reason withheld`, `took too long (2.000041013s) to execute`, "context deadline exceeded",
			"m1 (", "at "+endpoint+": "+judged, "the disk is fast enough for etcd",
			fmt.Sprintf("WAL fsync p99 %s, backend commit p99 %s", etcdops.RoundLatency(l.WALFsyncP99()), etcdops.RoundLatency(l.BackendCommitP99())),
			"within etcd's guidance", "took up to 2.000041013s")

		contains(t, "inspect", in.Output("inspect"),
			"cp-1: --etcd-healthcheck-timeout 2s (unset, kube-apiserver's default) -> 4s, --etcd-readycheck-timeout 2s (unset, kube-apiserver's default) -> 4s")
		removed, added := n.changes(t)
		if len(removed) != 0 || !slices.Equal(added, []string{"    - --etcd-healthcheck-timeout=4s", "    - --etcd-readycheck-timeout=4s"}) {
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
			"cp-1: kube-apiserver ready for 300ms with --etcd-healthcheck-timeout=4s, --etcd-readycheck-timeout=4s",
			"move it to an SSD")
		if resp, err := http.Get(n.url); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("kube-apiserver stand-in after the remediation: %v %v", resp, err)
		}

		// A raise repeated after losing its progress sets what inspect planned, not another
		// doubling.
		in.Incident.Steps[2].Progress = nil
		if _, err := in.Step("raise"); err != nil {
			t.Fatal(err)
		}
		if _, added := n.changes(t); !slices.Equal(added, []string{"    - --etcd-healthcheck-timeout=4s", "    - --etcd-readycheck-timeout=4s"}) {
			t.Errorf("after a repeated raise the manifest gained %q", added)
		}
	})

	t.Run("no sign of a slow etcd is nothing to do, and the manifest is left alone", func(t *testing.T) {
		n := e.node(t, "cp-1", 0, true, nil)
		// An alert for the node that quotes no failed check: what a policy matching on a
		// restart alone would send.
		in := e.incident(t, fast(map[string]string{"node": "cp-1"}), remediator.Alert{Status: remediator.AlertFiring,
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
		n.untouched(t)
		if entries, _ := os.ReadDir(n.backups); len(entries) != 0 {
			t.Errorf("nothing to do made backups: %v", entries)
		}
	})

	t.Run("already at the cap is refused and the manifest left alone", func(t *testing.T) {
		n := e.node(t, "cp-1", 10*time.Second, true, addFlags("etcd-healthcheck-timeout=8s", "etcd-readycheck-timeout=8s"))
		in := e.incident(t, fast(map[string]string{"node": "cp-1"}), seedAlert(nil))
		_, failed, err := in.All()
		if failed != "inspect" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
			t.Fatalf("step %q: %v (%s), want inspect to refuse", failed, err, remediator.ErrorCode(err))
		}
		contains(t, "the refusal", err.Error(), "cp-1 already gives etcd's checks --etcd-healthcheck-timeout=8s, --etcd-readycheck-timeout=8s",
			"max_timeout is 8s", "move its data dir to an SSD", "WAL fsync p99")
		n.untouched(t)
		if entries, _ := os.ReadDir(n.backups); len(entries) != 0 {
			t.Errorf("the refusal made backups: %v", entries)
		}
	})

	t.Run("still not ready after the raise is rolled back", func(t *testing.T) {
		n := e.node(t, "cp-1", 5*time.Second, true, nil)
		in := e.incident(t, fast(map[string]string{"node": "cp-1", "sample_window": "1s"}), seedAlert(nil))
		_, failed, err := in.All()
		if failed != "verify" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
			t.Fatalf("step %q: %v (%s), want verify to fail for good", failed, err, remediator.ErrorCode(err))
		}
		contains(t, "the failure", err.Error(), "kube-apiserver on cp-1 was not ready", "[-]etcd failed: reason withheld",
			"[-]etcd-readiness failed: reason withheld", "readyz check failed", "rolled it back", "slower than 4s", "SSD")
		contains(t, "verify", in.Output("verify"), "[-]etcd failed: reason withheld", "rolled back to "+n.backups)
		// An idle second has too few writes for a p99 of now: the member's whole life is judged.
		contains(t, "evidence", in.Output("evidence"), "too few writes to judge the disk", "since the member started")
		n.untouched(t)

		// Retried, verify does not take the old timeout's answers for a success.
		n.latency.Store(0)
		if _, err := in.Step("verify"); remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "rolled back by an earlier attempt") {
			t.Errorf("verify again: %v", err)
		}
		n.untouched(t)
	})

	t.Run("kube-apiserver before 1.26 gets only the health check timeout", func(t *testing.T) {
		n := e.node(t, "cp-1", 3*time.Second, false, nil)
		in := e.incident(t, fast(map[string]string{"node": "cp-1"}), seedAlert(nil))
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		contains(t, "inspect", in.Output("inspect"), "older than 1.26")
		if removed, added := n.changes(t); len(removed) != 0 || !slices.Equal(added, []string{"    - --etcd-healthcheck-timeout=4s"}) {
			t.Errorf("manifest lost %q and gained %q, want only --etcd-healthcheck-timeout=4s", removed, added)
		}
	})

	t.Run("a doubling stops at max_timeout", func(t *testing.T) {
		n := e.node(t, "cp-1", 5*time.Second, true, addFlags("etcd-healthcheck-timeout=4s", "etcd-readycheck-timeout=3s"))
		in := e.incident(t, fast(map[string]string{"node": "cp-1", "max_timeout": "6s"}), seedAlert(nil))
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		if removed, added := n.changes(t); !slices.Equal(added, []string{"    - --etcd-healthcheck-timeout=6s", "    - --etcd-readycheck-timeout=6s"}) || len(removed) != 2 {
			t.Errorf("manifest lost %q and gained %q, want both at the 6s cap", removed, added)
		}
	})

	t.Run("the node comes from the alert's instance", func(t *testing.T) {
		n := e.node(t, "cp-1", 3*time.Second, true, nil)
		instance := strings.TrimPrefix(endpoint, "http://")
		in := e.incident(t, fast(nil), seedAlert(map[string]string{"instance": instance}))
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		contains(t, "inspect", in.Output("inspect"), "the alerts name (KubeAPIServerEtcdCheckFailing instance="+instance+"): cp-1")
		if _, added := n.changes(t); len(added) != 2 {
			t.Errorf("manifest gained %q, want the two flags", added)
		}
	})

	t.Run("one node at a time: a node that stays unready stops the rollout", func(t *testing.T) {
		n1 := e.node(t, "cp-1", 5*time.Second, true, nil)
		n2 := e.node(t, "cp-2", 3*time.Second, true, nil)
		in := e.incident(t, fast(map[string]string{"node": "cp-1,cp-2"}), seedAlert(nil))
		_, failed, err := in.All()
		if failed != "raise" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
			t.Fatalf("step %q: %v, want raise to stop at cp-1", failed, err)
		}
		contains(t, "the failure", err.Error(), "kube-apiserver on cp-1 was not ready", "[-]etcd failed", "left cp-2 alone")
		n1.untouched(t)
		n2.untouched(t)
	})

	t.Run("one node at a time: each ready before the next", func(t *testing.T) {
		n1 := e.node(t, "cp-1", 3*time.Second, true, nil)
		n2 := e.node(t, "cp-2", 3*time.Second, true, nil)
		in := e.incident(t, fast(map[string]string{"node": "cp-2, cp-1"}), seedAlert(nil))
		if _, failed, err := in.All(); err != nil {
			t.Fatalf("step %s: %v", failed, err)
		}
		contains(t, "raise", in.Output("raise"), "cp-2: kube-apiserver ready for 300ms")
		for _, n := range []*node{n1, n2} {
			if _, added := n.changes(t); len(added) != 2 {
				t.Errorf("%s: manifest gained %q, want the two flags", n.name, added)
			}
		}
	})
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
