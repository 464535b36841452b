package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// TestIntakeAndWorkersShareOneNATS runs serve as the chart deploys it: an intake process
// and worker processes against one real NATS cluster. The alert posted to the intake waits in the
// queue until a worker starts (scale from zero); the worker that runs the remediation gets
// SIGTERM mid-step, finishes that step, hands the run back and exits, and a second worker,
// started after, finishes it, with nothing done twice.
func TestIntakeAndWorkersShareOneNATS(t *testing.T) {
	bin := buildBinary(t)
	etcd, cl := nospaceCluster(t)
	dir := t.TempDir()
	nc, seed := natsForReplicas(t, dir)
	// A pause between members keeps the defragment step running long enough to be signalled.
	const pause = 3 * time.Second
	policies := writePolicy(t, "auto", map[string]string{"pause_between_members": pause.String()})
	start := func(name, role string) *process {
		t.Helper()
		path := replicaConfig(t, dir, name, nc, seed, policies, etcd)
		return startProcess(t, bin, path, filepath.Join(dir, name+".log"), "--role", role)
	}
	status := func(method, addr, path string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	intake := start("intake", "intake")
	if code, body := post(t, intake.addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST to the intake: %d %v", code, body)
	}
	// No worker yet: the alert waits in the queue, and nothing acts on it.
	conn, js := natsClient(t, nc, seed)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, "REMEDIATOR_EVENTS", "correlator")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 1 || info.NumAckPending != 0 {
		t.Fatalf("the correlator's queue with only an intake up: %d pending, %d taken; want the alert waiting, untaken", info.NumPending, info.NumAckPending)
	}
	if all := incidents(t, intake.addr); len(all) != 0 {
		t.Fatalf("%d incidents with no worker up, want none", len(all))
	}

	workerA := start("worker-a", "worker")
	// A worker's port has health and metrics, and no webhook, answer or read.
	for _, c := range []struct {
		method, path string
		want         int
	}{{http.MethodGet, "/healthz", 200}, {http.MethodGet, "/readyz", 200}, {http.MethodGet, "/metrics", 200},
		{http.MethodPost, "/webhooks/alertmanager", 404}, {http.MethodGet, "/api/v1/incidents", 404},
		{http.MethodPost, "/api/v1/incidents/x/approve", 404}, {http.MethodGet, "/", 404},
		{http.MethodPost, "/slack/interactions", 404}, {http.MethodPost, "/slack/commands", 404}} {
		if got := status(c.method, workerA.addr, c.path); got != c.want {
			t.Errorf("%s %s on a worker: %d, want %d", c.method, c.path, got, c.want)
		}
	}
	inc := pollIncident(t, intake.addr, 2*time.Minute, func(inc remediator.Incident) bool {
		return len(inc.Steps) == 6 && strings.Contains(string(inc.Steps[3].Progress), `"name"`)
	})
	if inc.Steps[3].Name != "defragment" {
		t.Fatalf("step 3 is %s, want defragment", inc.Steps[3].Name)
	}
	signalled := time.Now()
	if err := workerA.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- workerA.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("worker a after SIGTERM: %v, want a clean exit", err)
		}
		t.Logf("worker a exited %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))
	case <-time.After(shutdownGrace + 15*time.Second):
		t.Fatalf("worker a still running %s after SIGTERM", shutdownGrace+15*time.Second)
	}
	// Only now the second worker: what the first handed back waits for it in the queue.
	workerB := start("worker-b", "worker")

	inc = pollIncident(t, intake.addr, 2*time.Minute, terminal)
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("incident after the hand-off: %s (%s)\ntimeline:\n%s", inc.State, inc.Reason, timeline(inc))
	}
	if len(stepStarts(t, workerB.log, inc.ID, "disarm")) == 0 {
		t.Errorf("worker b did not log that it ran disarm: the run was not handed over\ntimeline:\n%s", timeline(inc))
	}
	for _, s := range inc.Steps {
		if s.Attempts != 1 {
			t.Errorf("step %s: %d attempts, want 1: a step that finished before the hand-off is not run again", s.Name, s.Attempts)
		}
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms: %s, want none", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
	assertDefraggedOnceLeaderLast(t, etcd, leaderOf(t, inc.Before))
}
