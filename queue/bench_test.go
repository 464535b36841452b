package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/remediator/remediator"
)

// BenchmarkSignedPublish measures what signing costs a publish: the queue's signed Publish
// against JetStream's own publish of the same messages, alternating on one embedded server.
func BenchmarkSignedPublish(b *testing.B) {
	q, err := Open(context.Background(), Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	data := make([]byte, 2048) // about one normalised alert batch
	ctx := context.Background()
	var raw, signed time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := q.js.Publish(ctx, SubjectAlerts, data, jetstream.WithMsgID(fmt.Sprint("raw-", i))); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(start)
		start = time.Now()
		if _, err := q.Publish(ctx, SubjectAlerts, data, fmt.Sprint("signed-", i)); err != nil {
			b.Fatal(err)
		}
		signed += time.Since(start)
	}
	b.ReportMetric(float64(raw.Microseconds())/float64(b.N), "raw-µs/op")
	b.ReportMetric(float64(signed.Microseconds())/float64(b.N), "signed-µs/op")
	b.ReportMetric(float64(signed)/float64(raw), "signed/raw")
}

// BenchmarkSyncedPublish measures what syncing every write costs (the default: a 202 survives a
// power loss): a publish to an embedded server that syncs each write, against one that syncs
// every two minutes, alternating in the same run.
func BenchmarkSyncedPublish(b *testing.B) {
	ctx := context.Background()
	synced, err := Open(ctx, Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer synced.Close()
	lazy, err := Open(ctx, Options{StoreDir: b.TempDir(), SyncInterval: 2 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer lazy.Close()
	data := make([]byte, 2048)
	var tSynced, tLazy time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := lazy.Publish(ctx, SubjectAlerts, data, fmt.Sprint("lazy-", i)); err != nil {
			b.Fatal(err)
		}
		tLazy += time.Since(start)
		start = time.Now()
		if _, err := synced.Publish(ctx, SubjectAlerts, data, fmt.Sprint("synced-", i)); err != nil {
			b.Fatal(err)
		}
		tSynced += time.Since(start)
	}
	b.ReportMetric(float64(tLazy.Microseconds())/float64(b.N), "interval-µs/op")
	b.ReportMetric(float64(tSynced.Microseconds())/float64(b.N), "always-µs/op")
	b.ReportMetric(float64(tSynced)/float64(tLazy), "always/interval")
}

// prefill is an embedded queue holding one incident with n alerts of evidence, and n stored
// incidents, made once per size for every benchmark that needs it. Its store syncs every two
// minutes: the benchmarks compare costs at two sizes, not disks.
func prefill(b *testing.B, n int) (*Queue, string) {
	b.Helper()
	if p, ok := prefilled[n]; ok {
		return p.q, p.id
	}
	ctx := context.Background()
	q, err := Open(ctx, Options{StoreDir: b.TempDir(), SyncInterval: 2 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close(); delete(prefilled, n) })
	id := fmt.Sprintf("bench-%d", n)
	if err := q.Incidents.Create(ctx, remediator.NewIncident(id, "prod", remediator.Decision{Remediation: "r", Policy: "p"}, time.Now())); err != nil {
		b.Fatal(err)
	}
	for first := 0; first < n; first += 500 {
		if _, err := q.Incidents.Join(ctx, id, arrivals("fill", first, min(500, n-first)), nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				inc := remediator.NewIncident(fmt.Sprintf("stored-%07d", i), fmt.Sprintf("c%d", i%100), remediator.Decision{Remediation: "r", Policy: "p"}, time.Now())
				if err := q.Incidents.Create(ctx, inc); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	prefilled[n] = struct {
		q  *Queue
		id string
	}{q, id}
	return q, id
}

var prefilled = map[int]struct {
	q  *Queue
	id string
}{}

// arrivals are n distinct firing alerts of one batch.
func arrivals(batch string, first, n int) []remediator.Arrival {
	out := make([]remediator.Arrival, n)
	for i := range out {
		out[i] = remediator.Arrival{Batch: batch, Alert: remediator.Alert{Source: remediator.SourceAlertmanager, Status: remediator.AlertFiring,
			Fingerprint: fmt.Sprintf("fp%08d", first+i), Cluster: "prod", ReceivedAt: time.Now(),
			Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace", "instance": fmt.Sprint(first + i)}}}
	}
	return out
}

// BenchmarkEvidence measures what an alert costs an incident that holds 1,000 alerts and one
// that holds 100,000, in the same run: batches of 100 new alerts join each in turn.
func BenchmarkEvidence(b *testing.B) {
	small, smallID := prefill(b, 1_000)
	large, largeID := prefill(b, 100_000)
	ctx := context.Background()
	var tSmall, tLarge time.Duration
	b.ResetTimer()
	for i := range b.N {
		batch := fmt.Sprint("bench-", i)
		start := time.Now()
		if _, err := small.Incidents.Join(ctx, smallID, arrivals(batch, 1_000_000+i*100, 100), nil, nil); err != nil {
			b.Fatal(err)
		}
		tSmall += time.Since(start)
		start = time.Now()
		if _, err := large.Incidents.Join(ctx, largeID, arrivals(batch, 1_000_000+i*100, 100), nil, nil); err != nil {
			b.Fatal(err)
		}
		tLarge += time.Since(start)
	}
	b.ReportMetric(float64(100*b.N)/tSmall.Seconds(), "alerts/s@1k")
	b.ReportMetric(float64(tSmall.Microseconds())/float64(100*b.N), "µs/alert@1k")
	b.ReportMetric(float64(tLarge.Microseconds())/float64(100*b.N), "µs/alert@100k")
	b.ReportMetric(float64(tLarge)/float64(tSmall), "100k/1k")
}

// BenchmarkHistory measures a page of the incidents list (limit 50) and the gates' read of
// a cluster's runs with 1,000 and with 100,000 incidents stored, in the same run.
func BenchmarkHistory(b *testing.B) {
	small, _ := prefill(b, 1_000)
	large, _ := prefill(b, 100_000)
	ctx := context.Background()
	var listSmall, listLarge, runsSmall, runsLarge time.Duration
	measure := func(q *Queue, list, runs *time.Duration) {
		start := time.Now()
		page, err := q.Incidents.List(ctx, remediator.Query{Limit: 50})
		if err != nil || len(page.Incidents) != 50 {
			b.Fatalf("page of %d: %v", len(page.Incidents), err)
		}
		*list += time.Since(start)
		start = time.Now()
		if _, err := q.Incidents.Runs(ctx, "c7", "r"); err != nil {
			b.Fatal(err)
		}
		*runs += time.Since(start)
	}
	b.ResetTimer()
	for range b.N {
		measure(small, &listSmall, &runsSmall)
		measure(large, &listLarge, &runsLarge)
	}
	b.ReportMetric(float64(listSmall.Microseconds())/float64(b.N), "list-µs@1k")
	b.ReportMetric(float64(listLarge.Microseconds())/float64(b.N), "list-µs@100k")
	b.ReportMetric(float64(listLarge)/float64(listSmall), "list-100k/1k")
	b.ReportMetric(float64(runsLarge)/float64(runsSmall), "admission-100k/1k")
}
