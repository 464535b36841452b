package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/testproc"
)

// fleetSize is how many clusters the fleet's one remediator is configured for, and
// fleetBroken how many of them are real etcds in NOSPACE, remediated at once.
const (
	fleetSize   = 100
	fleetBroken = 10
)

// fleetName is the name of the fleet's cluster i.
func fleetName(i int) string { return fmt.Sprintf("c%03d", i) }

// quietEndpoints are n loopback URLs nothing listens on, for clusters that stay quiet.
func quietEndpoints(tb testing.TB, n int) []string {
	tb.Helper()
	ports, err := testproc.FreePorts(n)
	if err != nil {
		tb.Fatal(err)
	}
	urls := make([]string, n)
	for i, p := range ports {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", p)
	}
	return urls
}

// fleetConfig configures clusters c000 to c(n-1): the first ones on the real etcds given, the
// rest quiet.
func fleetConfig(tb testing.TB, n int, etcds []*etcdtest.Cluster) config.Config {
	tb.Helper()
	quiet := quietEndpoints(tb, n)
	cfg := config.Defaults(func(string) string { return "" })
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = tb.TempDir()
	cfg.NATS.AckWait = config.Duration(3 * time.Second)
	cfg.PoliciesDir = onePolicy(tb, `labels.alertname == "etcdDatabaseQuotaLowSpace"`, "etcd-nospace-recovery", "auto", nil)
	cfg.Clusters = nil
	for i := range n {
		endpoints := []string{quiet[i]}
		if i < len(etcds) {
			endpoints = etcds[i].Endpoints()
		}
		cfg.Clusters = append(cfg.Clusters, config.Cluster{Name: fleetName(i), Etcd: config.Etcd{Endpoints: endpoints}})
	}
	return cfg
}

// fleetAlerts is one Alertmanager webhook with a NOSPACE alert for each cluster named.
func fleetAlerts(clusters ...string) []byte {
	var alerts []map[string]any
	for _, c := range clusters {
		alerts = append(alerts, map[string]any{
			"status": "firing", "fingerprint": "f-" + c,
			"labels":      map[string]string{"alertname": "etcdDatabaseQuotaLowSpace", "cluster": c, "instance": c + ":2379", "severity": "critical"},
			"annotations": map[string]string{"summary": "etcd cluster database is running full."},
			"startsAt":    time.Now().UTC().Format(time.RFC3339), "endsAt": "0001-01-01T00:00:00Z",
		})
	}
	b, _ := json.Marshal(map[string]any{"receiver": "remediator", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"etcdDatabaseQuotaLowSpace\"}", "alerts": alerts})
	return b
}

// nospaceMembers starts n single-member etcds, each filled into NOSPACE.
func nospaceMembers(tb testing.TB, n int) ([]*etcdtest.Cluster, []*clientv3.Client) {
	tb.Helper()
	var etcds []*etcdtest.Cluster
	var clients []*clientv3.Client
	for range n {
		etcd := etcdtest.New(tb, etcdtest.Options{Members: 1, QuotaBytes: quota})
		cl, err := etcd.Client()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cl.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = etcdtest.Fill(ctx, cl)
		cancel()
		if err != nil {
			tb.Fatal(err)
		}
		etcds, clients = append(etcds, etcd), append(clients, cl)
	}
	return etcds, clients
}

// fleetRun remediates one cluster of a 100-cluster remediator alone, then ten others at
// once, and returns their incidents and the time each batch took, from the webhook to the
// last incident's end.
func fleetRun(tb testing.TB) (one remediator.Incident, ten []remediator.Incident, alone, together time.Duration, clients []*clientv3.Client) {
	tb.Helper()
	etcds, clients := nospaceMembers(tb, fleetBroken+1)
	m := startService(tb, fleetConfig(tb, fleetSize, etcds))
	finished := func(want int) []remediator.Incident {
		tb.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			var list struct{ Incidents []remediator.Incident }
			getJSON(tb, "http://"+m.Addr+"/api/v1/incidents?limit=100", &list)
			done := 0
			for _, inc := range list.Incidents {
				if inc.State.Terminal() {
					done++
				}
			}
			if done == want && len(list.Incidents) == want {
				return list.Incidents
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%d of %d incidents over after 3 minutes: %s", done, want, describe(list.Incidents))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start := time.Now()
	if code, body := postBody(tb, "http://"+m.Addr+"/webhooks/alertmanager", fleetAlerts(fleetName(0))); code != http.StatusAccepted {
		tb.Fatalf("POST: %d %v", code, body)
	}
	one = finished(1)[0]
	alone = time.Since(start)

	var names []string
	for i := 1; i <= fleetBroken; i++ {
		names = append(names, fleetName(i))
	}
	start = time.Now()
	if code, body := postBody(tb, "http://"+m.Addr+"/webhooks/alertmanager", fleetAlerts(names...)); code != http.StatusAccepted {
		tb.Fatalf("POST: %d %v", code, body)
	}
	for _, inc := range finished(fleetBroken + 1) {
		if inc.ID != one.ID {
			ten = append(ten, inc)
		}
	}
	return one, ten, alone, time.Since(start), clients
}

// TestAFleetRemediatesTenClustersAtOnce: one remediator for 100 clusters, ten of them real
// etcds in NOSPACE at once. Each is remediated, and none waits for another: the lock is per
// cluster, so every run started before any had finished.
func TestAFleetRemediatesTenClustersAtOnce(t *testing.T) {
	one, ten, alone, together, clients := fleetRun(t)
	assertHealed(t, one, clients[0])
	byCluster := map[string]remediator.Incident{}
	for _, inc := range ten {
		byCluster[inc.Cluster] = inc
	}
	var lastStart, firstEnd time.Time
	for i := 1; i <= fleetBroken; i++ {
		inc, ok := byCluster[fleetName(i)]
		if !ok {
			t.Fatalf("no incident on %s: %s", fleetName(i), describe(ten))
		}
		assertHealed(t, inc, clients[i])
		started, ended := inc.Steps[0].StartedAt, inc.FinishedAt
		if started.After(lastStart) {
			lastStart = started
		}
		if firstEnd.IsZero() || ended.Before(firstEnd) {
			firstEnd = ended
		}
	}
	if !lastStart.Before(firstEnd) {
		t.Errorf("the last of the ten runs started at %s, after the first ended at %s: one waited for another", lastStart.Format(time.StampMilli), firstEnd.Format(time.StampMilli))
	}
	t.Logf("one incident alone: %s; ten at once: %s (%.2fx the time of one)", alone.Round(time.Millisecond), together.Round(time.Millisecond), together.Seconds()/alone.Seconds())
}

// idleServe starts serve as its own process with n quiet clusters configured, and returns it
// once it serves and the start-up check of the clusters is over.
func idleServe(tb testing.TB, bin string, n int) *process {
	tb.Helper()
	dir := tb.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\ndata_dir: %s\nclusters:\n", filepath.Join(dir, "data"))
	for i, ep := range quietEndpoints(tb, n) {
		fmt.Fprintf(&b, "  - name: %s\n    etcd:\n      endpoints: [%s]\n", fleetName(i), ep)
	}
	path := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	p := startProcess(tb, bin, path, filepath.Join(dir, "serve.log"))
	// The start-up check asks every cluster once; wait for its last answer in the log.
	unreachable := func() int {
		b, _ := os.ReadFile(p.log)
		return strings.Count(string(b), `"msg":"cluster's etcd unreachable`)
	}
	// reachAtOnce at a time, each unreachable one after its call timeout: seconds for 100.
	deadline := time.Now().Add(3 * time.Minute)
	for unreachable() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("the start-up check reported %d of %d clusters within 3 minutes", unreachable(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// goroutines reads serve's go_goroutines from its /metrics.
func goroutines(tb testing.TB, addr string) int {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	tb.Fatal("no go_goroutines in /metrics")
	return 0
}

// TestAnIdleFleetCostsNothingPerCluster: clusters with nothing wrong cost no goroutine, no
// polling loop, no open connection: serve with 100 clusters configured runs as many
// goroutines as with one, give or take what NATS and HTTP are doing at the moment.
func TestAnIdleFleetCostsNothingPerCluster(t *testing.T) {
	bin := buildBinary(t)
	small, large := idleServe(t, bin, 1), idleServe(t, bin, fleetSize)
	g1, g100 := goroutines(t, small.addr), goroutines(t, large.addr)
	t.Logf("goroutines: %d with 1 cluster, %d with %d", g1, g100, fleetSize)
	if g100-g1 >= fleetSize/4 {
		t.Errorf("%d goroutines with %d clusters against %d with one: something runs per cluster while nothing is wrong", g100, fleetSize, g1)
	}
}

// idleCost measures a serve process at rest over window: its CPU time per second of wall
// time, and its resident memory at the end, from /proc.
func idleCost(tb testing.TB, p *process, window time.Duration) (cpuPerSec float64, rssMiB float64) {
	tb.Helper()
	cpu := func() float64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			tb.Fatal(err)
		}
		// Fields after the command's ")": state is the 3rd field, utime and stime the 14th and 15th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		return (utime + stime) / 100 // clock ticks (USER_HZ, 100 on Linux)
	}
	before, began := cpu(), time.Now()
	time.Sleep(window) // a measurement over a window, not a decision
	cpuPerSec = (cpu() - before) / time.Since(began).Seconds()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			rssMiB = kib / 1024
		}
	}
	return cpuPerSec, rssMiB
}

// BenchmarkFleet reports what a fleet costs, each figure against its baseline in the same
// run: ten incidents on ten clusters against one alone (ten/one: 1 is perfectly parallel, 10
// serial), and serve's idle CPU and memory with 100 clusters configured against 1.
func BenchmarkFleet(b *testing.B) {
	bin := buildBinary(b)
	for range b.N {
		_, _, alone, together, _ := fleetRun(b)
		b.ReportMetric(alone.Seconds(), "s-one")
		b.ReportMetric(together.Seconds(), "s-ten")
		b.ReportMetric(together.Seconds()/alone.Seconds(), "ten/one")

		small, large := idleServe(b, bin, 1), idleServe(b, bin, fleetSize)
		cpu1, rss1 := idleCost(b, small, 10*time.Second)
		cpu100, rss100 := idleCost(b, large, 10*time.Second)
		b.ReportMetric(cpu1*1000, "idle-cpu-ms/s-1")
		b.ReportMetric(cpu100*1000, "idle-cpu-ms/s-100")
		b.ReportMetric(rss1, "rss-MiB-1")
		b.ReportMetric(rss100, "rss-MiB-100")
		b.ReportMetric(rss100/rss1, "rss-100/1")
	}
}
