package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
