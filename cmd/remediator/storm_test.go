package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// stormPolicy waits for approval before its first step: the incident stays open while the
// storm comes in, and nothing touches etcd.
const stormPolicy = `policies:
  - name: storm
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-nospace-recovery
    mode: approve
    approval: {users: [alice], timeout: 1h}
`

// stormConfig serves on loopback with the storm policy and a cluster no step reaches.
func stormConfig(t *testing.T, dir string) string {
	t.Helper()
	policies := filepath.Join(dir, "policies")
	if err := os.MkdirAll(policies, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "storm.yaml"), []byte(stormPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "remediator.yaml")
	config := fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: data\npolicies_dir: %s\nclusters:\n  - name: default\n    etcd:\n      endpoints: [127.0.0.1:1]\n", policies)
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// stormBody is an Alertmanager notification of n distinct firing alerts, from the i-th.
func stormBody(first, n int) []byte {
	type alert struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		StartsAt    string            `json:"startsAt"`
		Fingerprint string            `json:"fingerprint"`
	}
	alerts := make([]alert, n)
	for i := range alerts {
		id := first + i
		alerts[i] = alert{Status: "firing", StartsAt: "2026-12-01T10:00:00Z", Fingerprint: fmt.Sprintf("storm%07d", id),
			Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace", "instance": fmt.Sprintf("10.0.%d.%d:2379", id/250, id%250), "job": "etcd"}}
	}
	b, _ := json.Marshal(map[string]any{"receiver": "remediator", "status": "firing", "version": "4", "alerts": alerts})
	return b
}

// rss is a process's peak resident memory, in bytes (VmHWM).
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// A storm of 100,000 distinct alerts for one problem: every one is counted in one incident,
// the service keeps answering while it absorbs them, and its memory stays bounded.
func TestAStormOfAlertsIsOneIncidentThatCountsEveryAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("a storm takes a minute")
	}
	const (
		total   = 100_000
		perPost = 100
		senders = 8
	)
	dir := t.TempDir()
	p := startProcess(t, buildBinary(t), stormConfig(t, dir), filepath.Join(dir, "serve.log"))
	base := "http://" + p.addr
	client := &http.Client{Timeout: 5 * time.Second}

	// While the storm comes in, the service keeps answering its probe and its API.
	stop := make(chan struct{})
	probed := make(chan error, 1)
	go func() {
		defer close(probed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			for _, path := range []string{"/readyz", "/api/v1/incidents?limit=50"} {
				resp, err := client.Get(base + path)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if err != nil {
					probed <- fmt.Errorf("GET %s during the storm: %w", path, err)
					return
				}
			}
		}
	}()

	started := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s * perPost; i < total; i += senders * perPost {
				resp, err := client.Post(base+"/webhooks/alertmanager", "application/json", bytes.NewReader(stormBody(i, perPost)))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("POST alerts %d..: %s", i, resp.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	accepted := time.Since(started)

	var inc remediator.Incident
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		all := incidents(t, p.addr)
		if len(all) > 1 {
			t.Fatalf("%d incidents for one problem on one cluster, want 1", len(all))
		}
		if len(all) == 1 {
			if inc = all[0]; inc.EvidenceCount == total {
				break
			}
		}
		time.Sleep(time.Second)
	}
	close(stop)
	if err := <-probed; err != nil {
		t.Error(err)
	}
	absorbed := time.Since(started)
	if inc.EvidenceCount != total || inc.EvidenceStats.Fingerprints != total || inc.EvidenceStats.Firing != total {
		t.Fatalf("incident counts %d observations of %d alerts, %d firing; want %d of each", inc.EvidenceCount, inc.EvidenceStats.Fingerprints, inc.EvidenceStats.Firing, total)
	}
	if inc.State != remediator.StateAwaitingApproval || len(inc.Evidence) != 2*remediator.EvidenceKept {
		t.Errorf("incident %s with %d alerts in detail; want awaiting_approval with %d", inc.State, len(inc.Evidence), 2*remediator.EvidenceKept)
	}
	if got := inc.EvidenceStats.ByName["etcdDatabaseQuotaLowSpace"]; got != total {
		t.Errorf("counted %d by name, want %d", got, total)
	}
	peak := rss(t, p.cmd.Process.Pid)
	t.Logf("storm: %d alerts accepted in %s, all counted in one incident after %s (%.0f alerts/s); peak RSS %d MiB",
		total, accepted.Round(time.Millisecond), absorbed.Round(time.Millisecond), float64(total)/absorbed.Seconds(), peak>>20)
	if peak > 256<<20 {
		t.Errorf("peak RSS %d MiB, want under 256 MiB", peak>>20)
	}
}
