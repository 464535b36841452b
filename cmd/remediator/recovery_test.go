package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/polltest"
)

// This file measures remediator's recoveries against the seed runbooks' etcdctl commands on
// the same data, as a client of the cluster sees them: when its writes succeed again, and how
// long they stall.

// writer is a client that writes one key as fast as etcd acknowledges it, each write with a
// 1 s timeout, failing over to the next member after a timeout, as a client with a 1 s
// request timeout would.
type writer struct {
	mu   sync.Mutex
	acks []time.Time
	stop context.CancelFunc
	done chan struct{}
}

func startWriter(tb testing.TB, endpoints []string) *writer {
	tb.Helper()
	var clients []*clientv3.Client
	for _, ep := range endpoints {
		cl, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			tb.Fatal(err)
		}
		clients = append(clients, cl)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer func() {
			for _, cl := range clients {
				cl.Close()
			}
		}()
		at := 0
		for i := 0; ctx.Err() == nil; i++ {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			_, err := clients[at].Put(pctx, "bench/writer", fmt.Sprint(i))
			pcancel()
			switch {
			case err == nil:
				w.mu.Lock()
				w.acks = append(w.acks, time.Now())
				w.mu.Unlock()
			case errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace):
				// Refused at once: the cluster answers, it is not writable yet.
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			default:
				at = (at + 1) % len(clients)
			}
		}
	}()
	return w
}

// Stop stops the writer and returns the times of its acknowledged writes.
func (w *writer) Stop() []time.Time {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// longestGap is the longest time between two acknowledged writes from..to, counting the
// edges: a writer that never got through has the whole span as its gap.
func longestGap(acks []time.Time, from, to time.Time) time.Duration {
	var gap time.Duration
	last := from
	for _, a := range acks {
		if a.Before(from) || a.After(to) {
			continue
		}
		gap = max(gap, a.Sub(last))
		last = a
	}
	return max(gap, to.Sub(last))
}

// firstAfter is the first acknowledged write at or after t, or the zero time.
func firstAfter(acks []time.Time, t time.Time) time.Time {
	for _, a := range acks {
		if !a.Before(t) {
			return a
		}
	}
	return time.Time{}
}

// leaseKeeper keeps a 5 s lease alive and records when each renewal was answered; nil where
// the cluster refused the lease for NOSPACE.
type leaseKeeper struct {
	cl       *clientv3.Client
	renewals []time.Time
	expired  bool
	done     chan struct{}
	cancel   context.CancelFunc
}

func keepLease(tb testing.TB, etcd *etcdtest.Cluster) *leaseKeeper {
	tb.Helper()
	cl, err := etcd.Client()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lease, err := cl.Grant(ctx, 5)
	if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
		cancel()
		cl.Close()
		return nil // a lease is a write: none while NOSPACE refuses them
	}
	if err != nil {
		tb.Fatal(err)
	}
	ch, err := cl.KeepAlive(ctx, lease.ID)
	if err != nil {
		tb.Fatal(err)
	}
	k := &leaseKeeper{cl: cl, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(k.done)
		for resp := range ch {
			if resp.TTL <= 0 {
				k.expired = true
			}
			k.renewals = append(k.renewals, time.Now())
		}
		k.expired = k.expired || ctx.Err() == nil
	}()
	return k
}

// Stop ends the lease's renewals and returns the longest time between two answered
// renewals, and whether the lease expired.
func (k *leaseKeeper) Stop(from, to time.Time) (time.Duration, bool) {
	if k == nil {
		return 0, false
	}
	k.cancel()
	<-k.done
	k.cl.Close()
	return longestGap(k.renewals, from, to), k.expired
}

// elections is the number of leader changes the members saw, summed over the members'
// etcd_server_leader_changes_seen_total and divided by their number: one election is seen by
// every member.
func elections(tb testing.TB, etcd *etcdtest.Cluster) float64 {
	tb.Helper()
	var sum float64
	for _, m := range etcd.Members {
		resp, err := http.Get(m.ClientURL + "/metrics")
		if err != nil {
			tb.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			tb.Fatal(err)
		}
		for _, mt := range families["etcd_server_leader_changes_seen_total"].GetMetric() {
			sum += mt.GetCounter().GetValue()
		}
	}
	return sum / float64(len(etcd.Members))
}

// figures are what a client saw of one recovery.
type figures struct {
	// Writable is the time from the start to the first acknowledged write.
	Writable time.Duration
	// Total is the time from the start until the recovery said it was done.
	Total time.Duration
	// Stall is the longest gap between acknowledged writes once writable, until done.
	Stall time.Duration
	// LeaseGap is the longest gap between renewals of a 5 s lease; Expired says it ran out.
	LeaseGap time.Duration
	Expired  bool
	// Elections is how many leader changes the run caused.
	Elections float64
}

func (f figures) String() string {
	return fmt.Sprintf("writable after %s, done after %s, longest write stall %s, longest lease renewal gap %s (expired %v), %.0f elections",
		f.Writable.Round(time.Millisecond), f.Total.Round(time.Millisecond), f.Stall.Round(time.Millisecond),
		f.LeaseGap.Round(time.Millisecond), f.Expired, f.Elections)
}

// measure runs a recovery against the cluster with a writer and a lease beside it. prepare
// readies the recovery (a service starting is not its time) and returns its run, which
// returns when the recovery is done.
func measure(tb testing.TB, etcd *etcdtest.Cluster, prepare func() func() time.Time) figures {
	tb.Helper()
	run := prepare()
	elected := elections(tb, etcd)
	lease := keepLease(tb, etcd)
	w := startWriter(tb, etcd.Endpoints())
	start := time.Now()
	done := run()
	// A write after the end shows the cluster writable, whatever the recovery claimed.
	polltest.Until(tb, 30*time.Second, "a write acknowledged after the recovery ended", func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.acks) > 0 && w.acks[len(w.acks)-1].After(done), fmt.Sprintf("%d writes acknowledged", len(w.acks))
	})
	acks := w.Stop()
	writable := firstAfter(acks, start)
	gap, expired := lease.Stop(writable, done)
	return figures{
		Writable:  writable.Sub(start),
		Total:     done.Sub(start),
		Stall:     longestGap(acks, writable, done),
		LeaseGap:  gap,
		Expired:   expired,
		Elections: elections(tb, etcd) - elected,
	}
}

// etcdctl is the etcdctl binary the runbook runs: $REMEDIATOR_ETCDCTL_BIN, or Debian's.
func etcdctl(tb testing.TB, etcd *etcdtest.Cluster, args ...string) []byte {
	tb.Helper()
	bin := os.Getenv("REMEDIATOR_ETCDCTL_BIN")
	if bin == "" {
		bin = "/usr/bin/etcdctl"
	}
	cmd := exec.Command(bin, append([]string{"--endpoints", strings.Join(etcd.Endpoints(), ","), "--command-timeout", "5m"}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("etcdctl %s: %v: %s (apt-get install etcd-client for Debian's)", strings.Join(args, " "), err, out)
	}
	return out
}

// runbookNOSPACE is seed 004's runbook: the revision from endpoint status, compact to it,
// defragment every member, disarm.
func runbookNOSPACE(tb testing.TB, etcd *etcdtest.Cluster) func() func() time.Time {
	return func() func() time.Time {
		return func() time.Time {
			var status []struct {
				Status struct {
					Header struct {
						Revision int64 `json:"revision"`
					} `json:"header"`
				} `json:"Status"`
			}
			if err := json.Unmarshal(etcdctl(tb, etcd, "endpoint", "status", "-w", "json"), &status); err != nil || len(status) == 0 {
				tb.Fatalf("endpoint status: %v", err)
			}
			etcdctl(tb, etcd, "compact", fmt.Sprint(status[0].Status.Header.Revision))
			etcdctl(tb, etcd, "defrag", "--cluster")
			etcdctl(tb, etcd, "alarm", "disarm")
			return time.Now()
		}
	}
}

// runbookDefrag is the fragmentation runbook: defragment every member.
func runbookDefrag(tb testing.TB, etcd *etcdtest.Cluster) func() func() time.Time {
	return func() func() time.Time {
		return func() time.Time {
			etcdctl(tb, etcd, "defrag", "--cluster")
			return time.Now()
		}
	}
}

// remediate runs serve on the defaults for the cluster, or with one policy sending the alert
// to remediation with params; its run posts the alert and returns when the incident's last
// step finished, which it keeps in inc.
func remediate(tb testing.TB, etcd *etcdtest.Cluster, alertname, remediation string, params map[string]string, inc *remediator.Incident) func() func() time.Time {
	return func() func() time.Time {
		cfg := testConfig(tb, etcd)
		if remediation != "" {
			cfg.PoliciesDir = onePolicy(tb, fmt.Sprintf("labels.alertname == %q", alertname), remediation, "auto", params)
		}
		m := startService(tb, cfg)
		return func() time.Time {
			if code, body := postBody(tb, "http://"+m.Addr+"/webhooks/alertmanager", alertPayload(alertname)); code != http.StatusAccepted {
				tb.Fatalf("POST: %d %v", code, body)
			}
			*inc = waitIncident(tb, m.Addr, 10*time.Minute, terminal)
			if inc.State != remediator.StateSucceeded {
				tb.Fatalf("incident %s: %s (%s)", inc.ID, inc.State, inc.Reason)
			}
			return inc.Steps[len(inc.Steps)-1].FinishedAt
		}
	}
}

// alertPayload is Alertmanager's notification of one firing alert of the etcd mixin.
func alertPayload(alertname string) []byte {
	b, _ := json.Marshal(map[string]any{
		"receiver": "remediator", "status": "firing", "version": "4", "groupKey": "{}:{alertname=\"" + alertname + "\"}",
		"alerts": []map[string]any{{
			"status": "firing", "fingerprint": fmt.Sprintf("%x", time.Now().UnixNano()),
			"labels":      map[string]string{"alertname": alertname, "job": "etcd", "instance": "10.0.0.11:2379", "severity": "warning"},
			"annotations": map[string]string{"summary": alertname},
			"startsAt":    time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano), "endsAt": "0001-01-01T00:00:00Z",
		}},
	})
	return b
}
