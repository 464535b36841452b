package etcdops_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/remediations/etcdops"
)

func TestQuantile(t *testing.T) {
	tests := []struct {
		name string
		h    etcdops.Histogram
		q    float64
		want float64
	}{
		{name: "empty histogram", h: etcdops.Histogram{}, q: 0.99, want: math.NaN()},
		{name: "buckets without observations",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 0}, {0.002, 0}}}, q: 0.99, want: math.NaN()},
		{name: "all in the first bucket interpolates from zero",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 10}, {0.002, 10}, {0.004, 10}}, Count: 10}, q: 0.99, want: 0.00099},
		{name: "interpolation within the bucket the rank falls in",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 50}, {0.002, 90}, {0.004, 100}}, Count: 100}, q: 0.99, want: 0.0038},
		{name: "a rank on a bucket's count is that bucket's bound",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 50}, {0.002, 90}, {0.004, 100}}, Count: 100}, q: 0.5, want: 0.001},
		{name: "buckets out of order are sorted first",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0.004, 100}, {0.001, 50}, {0.002, 90}}, Count: 100}, q: 0.99, want: 0.0038},
		{name: "a rank in the +Inf bucket gives the highest finite bound",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 10}, {0.002, 20}}, Count: 100}, q: 0.99, want: 0.002},
		{name: "a first bucket bounded at zero or below is not interpolated",
			h: etcdops.Histogram{Buckets: []etcdops.Bucket{{0, 5}, {1, 10}}, Count: 10}, q: 0.3, want: 0},
		{name: "above one", h: etcdops.Histogram{Buckets: []etcdops.Bucket{{1, 1}}, Count: 1}, q: 1.5, want: math.Inf(1)},
		{name: "below zero", h: etcdops.Histogram{Buckets: []etcdops.Bucket{{1, 1}}, Count: 1}, q: -0.5, want: math.Inf(-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Quantile(tt.q)
			if math.IsNaN(tt.want) != math.IsNaN(got) || !math.IsNaN(got) && !(got == tt.want || math.Abs(got-tt.want) < 1e-12) {
				t.Errorf("Quantile(%g) = %g, want %g", tt.q, got, tt.want)
			}
		})
	}
}

func TestHistogramSub(t *testing.T) {
	earlier := etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 900}, {0.002, 990}}, Count: 1000, Sum: 0.9}
	later := etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 900}, {0.002, 1000}}, Count: 1100, Sum: 5.9}
	d, err := later.Sub(earlier)
	if err != nil {
		t.Fatal(err)
	}
	// The last 100 observations were all slower than the first 1000: a p99 over everything
	// hides that, the difference does not.
	if d.Count != 100 || d.Buckets[0].Count != 0 || d.Buckets[1].Count != 10 || math.Abs(d.Sum-5) > 1e-9 {
		t.Errorf("difference %+v, want 100 observations, 10 of them up to 2ms", d)
	}
	if got := d.Quantile(0.99); got != 0.002 {
		t.Errorf("p99 of the difference %g, want 0.002 (the +Inf bucket)", got)
	}
	if _, err := earlier.Sub(later); !errors.Is(err, etcdops.ErrReset) {
		t.Errorf("earlier minus later: %v, want ErrReset", err)
	}
	other := etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 900}, {0.004, 1000}}, Count: 1100}
	if _, err := other.Sub(earlier); err == nil || errors.Is(err, etcdops.ErrReset) {
		t.Errorf("different layouts: %v, want an error that is no reset", err)
	}
}

func TestSinceRefusesARestart(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	h := etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 10}}, Count: 10}
	earlier := etcdops.Latency{Endpoint: "e", At: start.Add(time.Hour), Started: start, WALFsync: h, BackendCommit: h}
	restarted := etcdops.Latency{Endpoint: "e", At: start.Add(2 * time.Hour), Started: start.Add(90 * time.Minute), WALFsync: h, BackendCommit: h}
	if _, err := restarted.Since(earlier); !errors.Is(err, etcdops.ErrReset) || remediator.ErrorCode(err) != remediator.EUNAVAILABLE {
		t.Errorf("after a restart: %v, want a retriable ErrReset", err)
	}
	// A member that does not say when it started is caught by its counters going down.
	earlier.Started, restarted.Started = time.Time{}, time.Time{}
	restarted.WALFsync = etcdops.Histogram{Buckets: []etcdops.Bucket{{0.001, 2}}, Count: 2}
	if _, err := restarted.Since(earlier); !errors.Is(err, etcdops.ErrReset) || remediator.ErrorCode(err) != remediator.EUNAVAILABLE {
		t.Errorf("counters down: %v, want a retriable ErrReset", err)
	}
}

// hist puts n observations in the bucket bounded by le, of etcd's buckets (1ms doubling).
func hist(n uint64, le float64) etcdops.Histogram {
	h := etcdops.Histogram{Count: n}
	for b := 0.001; b < 9; b *= 2 {
		var c uint64
		if b >= le {
			c = n
		}
		h.Buckets = append(h.Buckets, etcdops.Bucket{UpperBound: b, Count: c})
	}
	return h
}

func TestJudge(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		l             etcdops.Latency
		verdict       etcdops.DiskVerdict
		say           string
		fsync, commit time.Duration
	}{
		{name: "slow fsync",
			l:       etcdops.Latency{WALFsync: hist(100, 0.064), BackendCommit: hist(100, 0.001)},
			verdict: etcdops.DiskSlow, fsync: 63680 * time.Microsecond, commit: 990 * time.Microsecond,
			say: "wal fsync p99 64ms (etcd recommends under 10ms): the disk is too slow for etcd; move the data dir to an SSD (100 fsyncs and 100 commits since the member started)"},
		{name: "both slow, over the last minutes",
			l:       etcdops.Latency{At: at, From: at.Add(-5 * time.Minute), WALFsync: hist(500, 0.016), BackendCommit: hist(200, 0.032)},
			verdict: etcdops.DiskSlow, fsync: 15920 * time.Microsecond, commit: 31840 * time.Microsecond,
			say: "wal fsync p99 16ms (etcd recommends under 10ms), backend commit p99 32ms (etcd recommends under 25ms): the disk is too slow for etcd; move the data dir to an SSD (500 fsyncs and 200 commits in the 5m0s up to 10:00:00 UTC)"},
		{name: "fast",
			l:       etcdops.Latency{At: at, Started: at.Add(-time.Hour), From: at.Add(-time.Hour), WALFsync: hist(1000, 0.004), BackendCommit: hist(1000, 0.008)},
			verdict: etcdops.DiskFast, fsync: 3980 * time.Microsecond, commit: 7960 * time.Microsecond,
			say: "wal fsync p99 3.98ms (under 10ms), backend commit p99 7.96ms (under 25ms): the disk is fast enough for etcd (1000 fsyncs and 1000 commits in the 1h0m0s since the member started)"},
		{name: "too few to judge, even if slow",
			l:       etcdops.Latency{WALFsync: hist(99, 0.512), BackendCommit: hist(3, 0.512)},
			verdict: etcdops.DiskTooFewSamples, fsync: 509440 * time.Microsecond, commit: 509440 * time.Microsecond,
			say: "only 99 fsyncs and 3 commits since the member started: too few writes to judge the disk (a p99 needs 100)"},
		{name: "nothing measured", l: etcdops.Latency{},
			verdict: etcdops.DiskTooFewSamples,
			say:     "only 0 fsyncs and 0 commits since the member started: too few writes to judge the disk (a p99 needs 100)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict, say := tt.l.Judge()
			if verdict != tt.verdict || say != tt.say {
				t.Errorf("Judge() = %s, %q\nwant %s, %q", verdict, say, tt.verdict, tt.say)
			}
			if f, c := tt.l.WALFsyncP99(), tt.l.BackendCommitP99(); f.Round(time.Microsecond) != tt.fsync || c.Round(time.Microsecond) != tt.commit {
				t.Errorf("p99s %s and %s, want %s and %s", f, c, tt.fsync, tt.commit)
			}
		})
	}
}

const scrape = `# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 0
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 0
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.008"} 80
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.016"} 95
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.032"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 200
etcd_disk_wal_fsync_duration_seconds_sum 12.5
etcd_disk_wal_fsync_duration_seconds_count 200
# HELP etcd_disk_backend_commit_duration_seconds The latency distributions of commit called by backend.
# TYPE etcd_disk_backend_commit_duration_seconds histogram
etcd_disk_backend_commit_duration_seconds_bucket{le="0.001"} 150
etcd_disk_backend_commit_duration_seconds_bucket{le="0.002"} 200
etcd_disk_backend_commit_duration_seconds_bucket{le="+Inf"} 200
etcd_disk_backend_commit_duration_seconds_sum 0.2
etcd_disk_backend_commit_duration_seconds_count 200
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.77235200025e+09
`

func TestDiskLatencyReadsAScrape(t *testing.T) {
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, scrape)
	}))
	defer srv.Close()

	l, err := etcdops.DiskLatency(context.Background(), srv.Client(), srv.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	if path != "/metrics" {
		t.Errorf("scraped %q, want /metrics", path)
	}
	// Half of the fsyncs took over 32ms: the +Inf bucket holds the p99.
	if l.WALFsync.Count != 200 || len(l.WALFsync.Buckets) != 6 || l.WALFsyncP99() != 32*time.Millisecond {
		t.Errorf("wal fsync %+v, p99 %s; want 200 in 6 finite buckets, p99 32ms", l.WALFsync, l.WALFsyncP99())
	}
	if l.BackendCommit.Count != 200 || l.BackendCommitP99() != 1960*time.Microsecond {
		t.Errorf("backend commit %+v, p99 %s; want 200, p99 1.96ms", l.BackendCommit, l.BackendCommitP99())
	}
	if want := time.Date(2026, 3, 1, 8, 0, 0, 250_000_000, time.UTC); !l.Started.Equal(want) || !l.From.Equal(want) {
		t.Errorf("started %s, from %s; want both %s", l.Started, l.From, want)
	}
}

func TestDiskLatencyOfABareHostPortFollowsTheClientsTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, scrape) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain request's handshake error is expected
	srv.StartTLS()
	defer srv.Close()
	bare := strings.TrimPrefix(srv.URL, "https://")
	if _, err := etcdops.DiskLatency(context.Background(), srv.Client(), bare); err != nil {
		t.Errorf("bare %s with a client that trusts the server: %v, want https", bare, err)
	}
	// Without TLS material the bare endpoint is plain http, which a TLS server refuses.
	if _, err := etcdops.DiskLatency(context.Background(), http.DefaultClient, bare); err == nil {
		t.Errorf("bare %s with a plain client: read it, want plain http refused", bare)
	}
}

func TestDiskLatencyFailures(t *testing.T) {
	serve := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		code    string
		say     string
	}{
		{"not etcd", serve(http.StatusNotFound, "404 page not found"), remediator.EINVALID, "is it an etcd client URL?"},
		{"no such metric", serve(http.StatusOK, "# TYPE up gauge\nup 1\n"), remediator.EINVALID, "no etcd_disk_wal_fsync_duration_seconds: is it etcd?"},
		{"wrong type", serve(http.StatusOK, "# TYPE etcd_disk_wal_fsync_duration_seconds gauge\netcd_disk_wal_fsync_duration_seconds 1\n"),
			remediator.EINVALID, "is not one histogram"},
		{"no client certificate", serve(http.StatusForbidden, ""), remediator.EUNAUTHORIZED, "client certificate"},
		{"overloaded", serve(http.StatusServiceUnavailable, ""), remediator.EUNAVAILABLE, "503"},
		{"garbage", serve(http.StatusOK, "etcd_disk_wal_fsync_duration_seconds{{{\n"), remediator.EINTERNAL, "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			_, err := etcdops.DiskLatency(context.Background(), srv.Client(), srv.URL)
			if remediator.ErrorCode(err) != tt.code || !strings.Contains(fmt.Sprint(err), tt.say) {
				t.Errorf("error %v (%s), want %s saying %q", err, remediator.ErrorCode(err), tt.code, tt.say)
			}
		})
	}
	t.Run("member down", func(t *testing.T) {
		srv := httptest.NewServer(serve(http.StatusOK, scrape))
		srv.Close()
		if _, err := etcdops.DiskLatency(context.Background(), http.DefaultClient, srv.URL); remediator.ErrorCode(err) != remediator.EUNAVAILABLE {
			t.Errorf("error %v, want EUNAVAILABLE", err)
		}
	})
}

func TestDiskLatencyOfARealMember(t *testing.T) {
	etcd := etcdtest.New(t, etcdtest.Options{})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put := func(n int) {
		for i := range n {
			if _, err := cl.Put(ctx, fmt.Sprintf("k/%d", i), "v"); err != nil {
				t.Fatal(err)
			}
		}
	}
	endpoint := etcd.Members[0].ClientURL
	// read waits for the backend's commit, which follows a write by up to its 100ms interval.
	read := func(minFsyncs, minCommits uint64) etcdops.Latency {
		t.Helper()
		for {
			l, err := etcdops.DiskLatency(ctx, http.DefaultClient, endpoint)
			if err != nil {
				t.Fatal(err)
			}
			if l.WALFsync.Count >= minFsyncs && l.BackendCommit.Count >= minCommits {
				return l
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d fsyncs and %d commits, want at least %d and %d", l.WALFsync.Count, l.BackendCommit.Count, minFsyncs, minCommits)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	put(10)
	first := read(10, 1)
	if first.Started.IsZero() || !first.Started.Before(first.At) || first.From != first.Started {
		t.Errorf("started %s, from %s, read at %s: want the process start, before the reading", first.Started, first.From, first.At)
	}
	for _, p := range []time.Duration{first.WALFsyncP99(), first.BackendCommitP99()} {
		if p <= 0 || p >= time.Second {
			t.Errorf("p99s %s and %s, want both above zero and below 1s", first.WALFsyncP99(), first.BackendCommitP99())
		}
	}

	put(20)
	second := read(first.WALFsync.Count+20, first.BackendCommit.Count+1)
	d, err := second.Since(first)
	if err != nil {
		t.Fatal(err)
	}
	// Every write of a lone member is fsynced before it is acknowledged, one at a time.
	if d.WALFsync.Count != second.WALFsync.Count-first.WALFsync.Count || d.WALFsync.Count < 20 || d.BackendCommit.Count == 0 {
		t.Errorf("difference counts %d fsyncs and %d commits, want the 20 writes' fsyncs and some commits", d.WALFsync.Count, d.BackendCommit.Count)
	}
	if d.From != first.At || d.WALFsyncP99() <= 0 || d.WALFsyncP99() >= time.Second {
		t.Errorf("difference from %s with p99 %s, want from %s and a p99 below 1s", d.From, d.WALFsyncP99(), first.At)
	}
	verdict, say := d.Judge()
	t.Logf("%s: %s", verdict, say)
}

func TestHTTPClient(t *testing.T) {
	clients := etcdops.NewClients([]etcdops.ClusterConfig{
		{Name: "plain", Endpoints: []string{"127.0.0.1:2379"}},
		{Name: "tls", Endpoints: []string{"127.0.0.1:2379"}, CAFile: filepath.Join(t.TempDir(), "missing-ca.pem")},
	})
	if c, err := clients.HTTPClient("plain"); err != nil {
		t.Errorf("plain cluster: %v", err)
	} else if tc := c.Transport.(*http.Transport).TLSClientConfig; tc != nil && (tc.RootCAs != nil || tc.GetClientCertificate != nil) {
		t.Errorf("plain cluster: a client with TLS material, want none")
	}
	if _, err := clients.HTTPClient("tls"); remediator.ErrorCode(err) != remediator.EINVALID || !strings.Contains(err.Error(), `cluster "tls": etcd TLS`) {
		t.Errorf("unreadable CA: %v, want EINVALID naming the cluster", err)
	}
	if _, err := clients.HTTPClient("nope"); remediator.ErrorCode(err) != remediator.ENOTFOUND {
		t.Errorf("unknown cluster: %v, want ENOTFOUND", err)
	}
}

func TestQuotaBytes(t *testing.T) {
	etcd := etcdtest.New(t, etcdtest.Options{QuotaBytes: 24 << 20})
	q, err := etcdops.QuotaBytes(context.Background(), http.DefaultClient, etcd.Members[0].ClientURL)
	if err != nil || q != 24<<20 {
		t.Errorf("quota of a member run with --quota-backend-bytes=%d: %d, %v", 24<<20, q, err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, scrape) }))
	defer srv.Close()
	q, err = etcdops.QuotaBytes(context.Background(), srv.Client(), srv.URL)
	if want := "no etcd_server_quota_backend_bytes gauge: is it etcd?"; remediator.ErrorCode(err) != remediator.EINVALID || !strings.Contains(fmt.Sprint(err), want) || q != 0 {
		t.Errorf("scrape without the gauge: %d, %v; want 0 and EINVALID saying %q", q, err, want)
	}
}
