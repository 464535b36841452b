package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
)

// benchMiB scales the production-size cases: $REMEDIATOR_BENCH_LIVE_MIB of live data per
// member (280 by default, as measured on a real cluster), twice that in history on top.
func benchMiB(b *testing.B) int64 {
	if v := os.Getenv("REMEDIATOR_BENCH_LIVE_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("REMEDIATOR_BENCH_LIVE_MIB=%q: want a number of MiB", v)
		}
		return n
	}
	return 280
}

// filled starts a 3-member cluster and fills it with fill; the cluster is then frozen, so
// that every contender starts from the same bytes.
func filled(b *testing.B, quota int64, fill func(context.Context, *clientv3.Client) error) *etcdtest.Frozen {
	b.Helper()
	etcd := etcdtest.New(b, etcdtest.Options{Members: 3, QuotaBytes: quota})
	cl, err := etcd.Client()
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	if err := fill(ctx, cl); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled in %s", time.Since(start).Round(time.Millisecond))
	return etcd.Freeze(b)
}

// reportRecovery logs both runs' figures and reports remediator's as ratios of the runbook's.
func reportRecovery(b *testing.B, name string, runbook, ours figures, stalls bool) {
	b.Helper()
	b.Logf("runbook:    %s", runbook)
	b.Logf("%-11s %s", name+":", ours)
	ratio := func(a, b time.Duration) float64 { return a.Seconds() / max(b.Seconds(), 1e-9) }
	b.ReportMetric(ours.Writable.Seconds(), name+"-writable-s")
	b.ReportMetric(runbook.Writable.Seconds(), "runbook-writable-s")
	b.ReportMetric(ratio(ours.Writable, runbook.Writable), name+"/runbook-writable")
	b.ReportMetric(ratio(ours.Total, runbook.Total), name+"/runbook-total")
	if stalls {
		b.ReportMetric(ours.Stall.Seconds(), name+"-stall-s")
		b.ReportMetric(runbook.Stall.Seconds(), "runbook-stall-s")
		b.ReportMetric(ratio(ours.Stall, runbook.Stall), name+"/runbook-stall")
		b.ReportMetric(ours.Elections, name+"-elections")
		b.ReportMetric(runbook.Elections, "runbook-elections")
	}
}

// BenchmarkRecovery measures remediator's recoveries against the seed runbooks' etcdctl
// commands on the same data, as a client sees them: when its writes succeed again, when the
// recovery is done, and the longest stall of a writer that fails over after 1 s. One run of
// each is the measure: go test -run '^$' -bench Recovery -benchtime 1x ./cmd/remediator/
func BenchmarkRecovery(b *testing.B) {
	b.Run("nospace-16MiB", func(b *testing.B) {
		f := filled(b, 16<<20, func(ctx context.Context, cl *clientv3.Client) error {
			_, err := etcdtest.Fill(ctx, cl)
			return err
		})
		for b.Loop() {
			benchNOSPACE(b, f)
		}
	})
	live := benchMiB(b) << 20
	b.Run("nospace-production", func(b *testing.B) {
		s := etcdtest.Sized{Live: live, History: 2 * live, Quota: 3 * live}
		f := filled(b, s.Quota, func(ctx context.Context, cl *clientv3.Client) error { return etcdtest.FillSized(ctx, cl, s) })
		for b.Loop() {
			benchNOSPACE(b, f)
		}
	})
	b.Run("fragmented-production", func(b *testing.B) {
		s := etcdtest.Sized{Live: live, History: 2 * live, Quota: 8 * live}
		f := filled(b, s.Quota, func(ctx context.Context, cl *clientv3.Client) error {
			if err := etcdtest.FillSized(ctx, cl, s); err != nil {
				return err
			}
			// The history is free pages once compacted: fragmented, far from the quota.
			resp, err := cl.Get(ctx, "live/000000")
			if err != nil {
				return err
			}
			_, err = cl.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
			return err
		})
		for b.Loop() {
			runbook := measure(b, f.Thaw(b), runbookDefrag(b, f.Cluster))
			for _, move := range []string{"false", "true"} {
				var inc remediator.Incident
				ours := measure(b, f.Thaw(b), remediate(b, f.Cluster, "etcdDatabaseHighFragmentationRatio", "etcd-defrag-fragmented", map[string]string{"move_leader": move}, &inc))
				reportRecovery(b, "move_leader="+move, runbook, ours, true)
				logSteps(b, inc)
			}
		}
	})
}

// benchNOSPACE runs the seed runbook and serve on the defaults from the same NOSPACE bytes.
func benchNOSPACE(b *testing.B, f *etcdtest.Frozen) {
	runbook := measure(b, f.Thaw(b), runbookNOSPACE(b, f.Cluster))
	var inc remediator.Incident
	ours := measure(b, f.Thaw(b), remediate(b, f.Cluster, "etcdDatabaseQuotaLowSpace", "", nil, &inc))
	reportRecovery(b, "remediator", runbook, ours, false)
	logSteps(b, inc)
}

// logSteps logs how long each step of the incident took, and the waits between them.
func logSteps(b *testing.B, inc remediator.Incident) {
	b.Helper()
	if len(inc.Steps) == 0 {
		return
	}
	var out strings.Builder
	fmt.Fprintf(&out, "  steps: webhook to the first %s", inc.Steps[0].StartedAt.Sub(inc.ReceivedAt()).Round(time.Millisecond))
	for i, s := range inc.Steps {
		gap := time.Duration(0)
		if i > 0 {
			gap = s.StartedAt.Sub(inc.Steps[i-1].FinishedAt)
		}
		fmt.Fprintf(&out, ", %s %s (+%s)", s.Name, s.Duration().Round(time.Millisecond), gap.Round(time.Millisecond))
	}
	b.Log(out.String())
}
