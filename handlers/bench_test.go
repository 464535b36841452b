package handlers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/queue"
)

// benchClients is how many senders post at once; benchRounds how many times the two phases
// take turns.
const (
	benchClients = 16
	benchRounds  = 10
)

// BenchmarkIngest measures each webhook intake (HTTP POST, validation, durable enqueue on
// JetStream, 202) against raw JetStream publishes of the same normalised batches, in the same
// run and on the same embedded server: b.N requests of each. It reports both rates in
// alerts/s, their p50 and p99 latencies, and webhook/raw, the share of the raw publish rate
// the intake keeps (ns/op covers both phases together).
func BenchmarkIngest(b *testing.B) {
	b.Run("alertmanager", func(b *testing.B) {
		template := withCluster(b, testdata(b, "nospace-firing.json"), "prod")
		benchIngest(b, "/webhooks/alertmanager", func(i int) []byte {
			// Every request is a distinct notification, so that none is a duplicate.
			return bytes.ReplaceAll(template, []byte(`"fingerprint":"`), fmt.Appendf(nil, `"fingerprint":"r%d-`, i))
		}, func(body []byte, now time.Time) (remediator.Batch, error) {
			batch, _, err := DecodeAlertmanager(body, []string{"prod", "staging"}, now)
			return batch, err
		})
	})
	b.Run("kubernetes", func(b *testing.B) {
		// kubernetes-event-exporter's batch: a probe failure, a back-off, and a controller's
		// NOSPACE error, as the array the webhook takes.
		template := array(b, event(b, "etcd-liveness-unhealthy.json"), event(b, "etcd-backoff.json"), event(b, "replicaset-nospace.json"))
		benchIngest(b, "/webhooks/kubernetes", func(i int) []byte {
			return bytes.ReplaceAll(template, []byte(`"uid": "`), fmt.Appendf(nil, `"uid": "r%d-`, i))
		}, func(body []byte, now time.Time) (remediator.Batch, error) {
			batch, _, _, err := DecodeKubernetes(body, []string{"prod", "staging"}, now)
			return batch, err
		})
	})
}

// benchIngest runs one intake's benchmark: bodies made by body, normalised by decode for the
// raw publishes.
func benchIngest(b *testing.B, path string, body func(i int) []byte, decode func([]byte, time.Time) (remediator.Batch, error)) {
	f := newFixture(b, "")
	now := time.Now()
	bodies := make([][]byte, b.N)
	batches := make([][]byte, b.N)
	ids := make([]string, b.N)
	alerts := 0
	for i := range b.N {
		bodies[i] = body(i)
		batch, err := decode(bodies[i], now)
		if err != nil {
			b.Fatal(err)
		}
		batches[i], _ = json.Marshal(batch)
		ids[i] = "raw-" + batch.ID
		alerts = len(batch.Alerts)
	}
	addr := strings.TrimPrefix(f.srv.URL, "http://")
	conns := make(chan *senderConn, benchClients)
	for range benchClients {
		c, err := dialSender(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns <- c
	}

	b.ResetTimer()
	// The two phases alternate in rounds, so that drift (the stream growing, the GC, the
	// machine's other load) falls on both alike.
	var raw, webhook phase
	for round := range benchRounds {
		lo, hi := round*b.N/benchRounds, (round+1)*b.N/benchRounds
		raw.measure(b, lo, hi, func(i int) error {
			_, err := f.q.Publish(context.Background(), queue.SubjectAlerts, batches[i], ids[i])
			return err
		})
		webhook.measure(b, lo, hi, func(i int) error {
			c := <-conns
			defer func() { conns <- c }()
			return c.post(path, bodies[i])
		})
	}
	b.StopTimer()

	rawRate := float64(b.N*alerts) / raw.total.Seconds()
	webhookRate := float64(b.N*alerts) / webhook.total.Seconds()
	b.ReportMetric(rawRate, "raw-alerts/s")
	b.ReportMetric(webhookRate, "webhook-alerts/s")
	b.ReportMetric(webhookRate/rawRate, "webhook/raw")
	b.ReportMetric(ms(raw.percentile(0.50)), "raw-p50-ms")
	b.ReportMetric(ms(raw.percentile(0.99)), "raw-p99-ms")
	b.ReportMetric(ms(webhook.percentile(0.50)), "webhook-p50-ms")
	b.ReportMetric(ms(webhook.percentile(0.99)), "webhook-p99-ms")
}

// phase accumulates the timings of one kind of request.
type phase struct {
	total     time.Duration
	latencies []time.Duration
}

// measure runs do(lo..hi-1) on benchClients goroutines, timing each call and the whole.
func (p *phase) measure(b *testing.B, lo, hi int, do func(i int) error) {
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed atomic.Value
	)
	next.Store(int64(lo))
	start := time.Now()
	for range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := int(next.Add(1)) - 1; i < hi; i = int(next.Add(1)) - 1 {
				t := time.Now()
				if err := do(i); err != nil {
					failed.Store(err)
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			p.latencies = append(p.latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.total += time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

func (p *phase) percentile(q float64) time.Duration {
	slices.Sort(p.latencies)
	return p.latencies[int(float64(len(p.latencies)-1)*q)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// senderConn is a lean HTTP/1.1 keep-alive client, like wrk's: the benchmark should spend
// its CPU in the service, not in net/http's client, which Alertmanager runs elsewhere.
type senderConn struct {
	net.Conn
	r *bufio.Reader
}

func dialSender(addr string) (*senderConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &senderConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// post sends one request and reads the whole response, which must be 202.
func (c *senderConn) post(path string, body []byte) error {
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: remediator\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body))
	if _, err := c.Write(append(req, body...)); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
