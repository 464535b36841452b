package etcdops

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/remediator/remediator"
)

// The disk latencies etcd's documentation asks for: a slower disk delays every write, and
// heartbeats with them, until followers call elections and clients time out (seed 002).
const (
	// WALFsyncLimit is the p99 of etcd_disk_wal_fsync_duration_seconds etcd recommends staying under.
	WALFsyncLimit = 10 * time.Millisecond
	// BackendCommitLimit is the p99 of etcd_disk_backend_commit_duration_seconds etcd recommends staying under.
	BackendCommitLimit = 25 * time.Millisecond
)

const (
	walFsyncMetric      = "etcd_disk_wal_fsync_duration_seconds"
	backendCommitMetric = "etcd_disk_backend_commit_duration_seconds"
	processStartMetric  = "process_start_time_seconds"
	quotaMetric         = "etcd_server_quota_backend_bytes"
	compactionsMetric   = "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds"
	// minSamples is the fewest observations a p99 is judged on: below a hundred, the p99 is
	// the slowest one or two, and one hiccup would condemn a good disk.
	minSamples = 100
	// maxMetricsBytes bounds a scrape; etcd's metrics are a few hundred KiB.
	maxMetricsBytes = 16 << 20
)

// ErrReset is a histogram that went backwards between two readings: the member restarted
// (its counters start again from zero), so the two cannot be subtracted.
var ErrReset = errors.New("the counters went backwards: the member restarted between the two readings")

// HTTPDoer sends an HTTP request; an *http.Client with the cluster's client certificate is
// one (see Clients.HTTPClient), since etcd asks for it on /metrics as on its gRPC API.
type HTTPDoer interface {
	Do(req *http.Request) (*http.Response, error)
}

// Bucket is one cumulative bucket of a histogram: the observations at or below UpperBound.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      uint64  `json:"count"`
}

// Histogram is a Prometheus histogram as a member exposes it: cumulative, counting every
// observation since the member's process started.
type Histogram struct {
	// Buckets are the finite buckets by bound. The +Inf bucket is Count, kept apart because
	// JSON, in which progress is saved, has no infinity.
	Buckets []Bucket `json:"buckets"`
	Count   uint64   `json:"count"`
	Sum     float64  `json:"sum"`
}

// Quantile estimates the q-quantile (0.99 for p99) the way PromQL's histogram_quantile does:
// it finds the bucket the rank falls in and interpolates linearly within it, as if its
// observations were spread evenly, so the answer is only as fine as the buckets (etcd's
// double from 1ms: 8ms to 16ms is one bucket). A rank in the +Inf bucket gives the highest
// finite bound; no observations, or no finite bucket, give NaN.
func (h Histogram) Quantile(q float64) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	if h.Count == 0 || len(h.Buckets) == 0 {
		return math.NaN()
	}
	buckets := slices.SortedFunc(slices.Values(h.Buckets), byBound)
	rank := q * float64(max(h.Count, buckets[len(buckets)-1].Count))
	b := sort.Search(len(buckets), func(i int) bool { return float64(buckets[i].Count) >= rank })
	if b == len(buckets) {
		return buckets[len(buckets)-1].UpperBound
	}
	if b == 0 && buckets[0].UpperBound <= 0 {
		return buckets[0].UpperBound
	}
	start, below := 0.0, 0.0
	if b > 0 {
		start, below = buckets[b-1].UpperBound, float64(buckets[b-1].Count)
	}
	end, count := buckets[b].UpperBound, float64(buckets[b].Count)-below
	return start + (end-start)*((rank-below)/count)
}

func byBound(a, b Bucket) int { return cmp.Compare(a.UpperBound, b.UpperBound) }

// Sub returns the observations made between an earlier reading of the same histogram and h:
// what a p99 of the last minutes is computed from, where h alone covers the whole life of the
// process, in which a slow hour long ago still weighs.
func (h Histogram) Sub(earlier Histogram) (Histogram, error) {
	if len(h.Buckets) != len(earlier.Buckets) {
		return Histogram{}, fmt.Errorf("the bucket layouts differ (%d and %d buckets)", len(h.Buckets), len(earlier.Buckets))
	}
	if h.Count < earlier.Count {
		return Histogram{}, ErrReset
	}
	out := Histogram{Buckets: make([]Bucket, len(h.Buckets)), Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	for i, b := range h.Buckets {
		e := earlier.Buckets[i]
		if b.UpperBound != e.UpperBound {
			return Histogram{}, fmt.Errorf("the bucket layouts differ (le=%g and le=%g)", b.UpperBound, e.UpperBound)
		}
		if b.Count < e.Count {
			return Histogram{}, ErrReset
		}
		out.Buckets[i] = Bucket{UpperBound: b.UpperBound, Count: b.Count - e.Count}
	}
	return out, nil
}

// Latency is one member's disk latency as etcd itself measured it: how long writing the raft
// log (WAL fsync) and committing to the backend took.
type Latency struct {
	Endpoint string `json:"endpoint"`
	// At is when the metrics were read.
	At time.Time `json:"at"`
	// Started is when the member's process started, if it says: a reading covers the time
	// since then, and a different start between two readings is a restart.
	Started time.Time `json:"started,omitzero"`
	// From is when the period the histograms cover began: Started for one reading, the
	// earlier reading's At for the difference of two (see Since).
	From          time.Time `json:"from,omitzero"`
	WALFsync      Histogram `json:"wal_fsync"`
	BackendCommit Histogram `json:"backend_commit"`
}

// WALFsyncP99 is the p99 of WAL fsyncs over the period, or zero without any.
func (l Latency) WALFsyncP99() time.Duration { return p99(l.WALFsync) }

// BackendCommitP99 is the p99 of backend commits over the period, or zero without any.
func (l Latency) BackendCommitP99() time.Duration { return p99(l.BackendCommit) }

func p99(h Histogram) time.Duration {
	q := h.Quantile(0.99)
	if math.IsNaN(q) {
		return 0
	}
	return time.Duration(math.Round(q * float64(time.Second)))
}

// Since returns the latency between an earlier reading of the same member and l, which is
// what says how the disk does now. It fails with EUNAVAILABLE wrapping ErrReset when the
// member restarted in between: two fresh readings will do.
func (l Latency) Since(earlier Latency) (Latency, error) {
	if l.Endpoint != earlier.Endpoint {
		return Latency{}, remediator.Errorf(remediator.EINVALID, "disk latency: readings of two members (%s and %s)", earlier.Endpoint, l.Endpoint)
	}
	if earlier.At.After(l.At) {
		return Latency{}, remediator.Errorf(remediator.EINVALID, "disk latency of %s: the earlier reading is the later one", l.Endpoint)
	}
	if !l.Started.IsZero() && !earlier.Started.IsZero() && !l.Started.Equal(earlier.Started) {
		return Latency{}, remediator.Errorf(remediator.EUNAVAILABLE, "disk latency of %s: %w", l.Endpoint, ErrReset)
	}
	out := Latency{Endpoint: l.Endpoint, At: l.At, Started: l.Started, From: earlier.At}
	var err error
	if out.WALFsync, err = l.WALFsync.Sub(earlier.WALFsync); err == nil {
		out.BackendCommit, err = l.BackendCommit.Sub(earlier.BackendCommit)
	}
	switch {
	case errors.Is(err, ErrReset):
		return Latency{}, remediator.Errorf(remediator.EUNAVAILABLE, "disk latency of %s: %w", l.Endpoint, err)
	case err != nil:
		return Latency{}, remediator.Errorf(remediator.EINVALID, "disk latency of %s: %w", l.Endpoint, err)
	}
	return out, nil
}

// DiskVerdict is what Judge concludes of a disk; the values double as log fields and metric
// labels.
type DiskVerdict string

// The verdicts.
const (
	// DiskFast is a disk within etcd's recommendations on both counts.
	DiskFast DiskVerdict = "fast"
	// DiskSlow is a disk over at least one of them.
	DiskSlow DiskVerdict = "slow"
	// DiskTooFewSamples is a period with too few writes to tell.
	DiskTooFewSamples DiskVerdict = "too_few_samples"
)

// Judge compares the p99s with etcd's recommendations (WALFsyncLimit, BackendCommitLimit)
// and says why in a sentence for the operator. A p99 over fewer than a hundred observations
// is not judged.
func (l Latency) Judge() (DiskVerdict, string) {
	type figure struct {
		what, unit string
		h          Histogram
		limit      time.Duration
	}
	var slow, fine, few []string
	for _, f := range []figure{
		{"wal fsync", "fsyncs", l.WALFsync, WALFsyncLimit},
		{"backend commit", "commits", l.BackendCommit, BackendCommitLimit},
	} {
		p := p99(f.h)
		switch {
		case f.h.Count < minSamples:
			few = append(few, fmt.Sprintf("%d %s", f.h.Count, f.unit))
		case p > f.limit:
			slow = append(slow, fmt.Sprintf("%s p99 %s (etcd recommends under %s)", f.what, RoundLatency(p), f.limit))
		default:
			fine = append(fine, fmt.Sprintf("%s p99 %s (under %s)", f.what, RoundLatency(p), f.limit))
		}
	}
	switch {
	case len(slow) > 0:
		return DiskSlow, fmt.Sprintf("%s: the disk is too slow for etcd; move the data dir to an SSD (%s)", strings.Join(slow, ", "), l.period())
	case len(few) > 0:
		return DiskTooFewSamples, fmt.Sprintf("only %s %s: too few writes to judge the disk (a p99 needs %d)", strings.Join(few, " and "), l.span(), minSamples)
	}
	return DiskFast, fmt.Sprintf("%s: the disk is fast enough for etcd (%s)", strings.Join(fine, ", "), l.period())
}

// period says how many observations the p99s stand on, and over what time.
func (l Latency) period() string {
	return fmt.Sprintf("%d fsyncs and %d commits %s", l.WALFsync.Count, l.BackendCommit.Count, l.span())
}

func (l Latency) span() string {
	switch {
	case l.From.IsZero():
		return "since the member started"
	case l.From.Equal(l.Started):
		return fmt.Sprintf("in the %s since the member started", l.At.Sub(l.From).Round(time.Second))
	}
	d := l.At.Sub(l.From)
	if d < time.Minute {
		d = d.Round(100 * time.Millisecond)
	} else {
		d = d.Round(time.Second)
	}
	return fmt.Sprintf("in the %s up to %s", d, l.At.UTC().Format(time.TimeOnly+" MST"))
}

// RoundLatency keeps two or three significant digits, 38ms, 7.68ms, 512µs: what a judgement
// says and what a report shows are the same figure.
func RoundLatency(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// DiskLatency reads a member's disk latency from its Prometheus metrics at
// <endpoint>/metrics. The histograms are cumulative since the member's process started, so a
// member that was slow once and is fine now still shows it: for the disk as it is now, take
// two readings some minutes apart and use Since. Without a deadline in ctx the read gets one.
func DiskLatency(ctx context.Context, client HTTPDoer, endpoint string) (Latency, error) {
	families, err := scrape(ctx, client, endpoint)
	if err != nil {
		return Latency{}, err
	}
	l := Latency{Endpoint: endpoint, At: time.Now()}
	if l.WALFsync, err = histogram(families, walFsyncMetric); err == nil {
		l.BackendCommit, err = histogram(families, backendCommitMetric)
	}
	if err != nil {
		return Latency{}, remediator.Errorf(remediator.EINVALID, "metrics of %s: %w: is it etcd?", endpoint, err)
	}
	if g := families[processStartMetric].GetMetric(); len(g) == 1 && g[0].GetGauge() != nil {
		// Milliseconds are finer than the clock ticks the start is counted in, and whole
		// ones survive the float, so two readings of one process agree to the nanosecond.
		l.Started = time.UnixMilli(int64(math.Round(g[0].GetGauge().GetValue() * 1000)))
		l.From = l.Started
	}
	return l, nil
}

// QuotaBytes reads a member's --quota-backend-bytes from its metrics, where every etcd since
// 3.4 exports it; Status carries it only from 3.6 on.
func QuotaBytes(ctx context.Context, client HTTPDoer, endpoint string) (int64, error) {
	families, err := scrape(ctx, client, endpoint)
	if err != nil {
		return 0, err
	}
	g := families[quotaMetric].GetMetric()
	if len(g) != 1 || g[0].GetGauge() == nil || g[0].GetGauge().GetValue() <= 0 {
		return 0, remediator.Errorf(remediator.EINVALID, "metrics of %s: no %s gauge: is it etcd?", endpoint, quotaMetric)
	}
	return int64(g[0].GetGauge().GetValue()), nil
}

// Compactions is how many compactions the member has finished since its process started,
// from its metrics: every etcd since 3.4 observes each one in
// etcd_debugging_mvcc_db_compaction_total_duration_milliseconds.
func Compactions(ctx context.Context, client HTTPDoer, endpoint string) (uint64, error) {
	families, err := scrape(ctx, client, endpoint)
	if err != nil {
		return 0, err
	}
	h, err := histogram(families, compactionsMetric)
	if err != nil {
		return 0, remediator.Errorf(remediator.EINVALID, "metrics of %s: %w: is it etcd?", endpoint, err)
	}
	return h.Count, nil
}

// scrape reads the metric families at <endpoint>/metrics. Without a deadline in ctx the read
// gets one.
func scrape(ctx context.Context, client HTTPDoer, endpoint string) (map[string]*dto.MetricFamily, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	u, err := metricsURL(endpoint, usesTLS(client))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, remediator.Errorf(remediator.EINVALID, "metrics of %s: %w", endpoint, err)
	}
	req.Header.Set("Accept", string(expfmt.FmtText))
	resp, err := client.Do(req)
	if err != nil {
		return nil, classifyHTTP(err, endpoint)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, remediator.Errorf(remediator.EUNAUTHORIZED, "metrics of %s: %s: the member wants a client certificate it trusts", endpoint, resp.Status)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "metrics of %s: %s", endpoint, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, remediator.Errorf(remediator.EINVALID, "metrics of %s: %s: is it an etcd client URL?", endpoint, resp.Status)
	}
	families, err := decodeMetrics(resp)
	if err != nil {
		return nil, remediator.Errorf(remediator.EINTERNAL, "metrics of %s: %w", endpoint, err)
	}
	return families, nil
}

// metricsURL is /metrics under the member's client URL. A bare host:port gets https when the
// client carries a TLS config, as clientv3 does with such an endpoint.
func metricsURL(endpoint string, tls bool) (string, error) {
	if !strings.Contains(endpoint, "://") {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		endpoint = scheme + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", remediator.Errorf(remediator.EINVALID, "metrics of %s: not an http or https client URL", endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/metrics"
	return u.String(), nil
}

// usesTLS says whether the client carries TLS material, a CA or a client certificate, as one
// from Clients.HTTPClient does exactly when the cluster's etcd client uses TLS. (Any
// transport has a TLS config once it has set up HTTP/2, so that alone says nothing.)
func usesTLS(client HTTPDoer) bool {
	c, ok := client.(*http.Client)
	if !ok {
		return false
	}
	t, ok := c.Transport.(*http.Transport)
	if !ok || t.TLSClientConfig == nil {
		return false
	}
	tc := t.TLSClientConfig
	return tc.RootCAs != nil || len(tc.Certificates) > 0 || tc.GetClientCertificate != nil
}

// classifyHTTP gives a failed request its code: a member that is down or slow may answer
// later; a certificate it does not accept, or that does not match it, will not.
func classifyHTTP(err error, endpoint string) error {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) {
		return remediator.Errorf(remediator.EINVALID, "metrics of %s: %w", endpoint, err)
	}
	return remediator.Errorf(remediator.EUNAVAILABLE, "metrics of %s: %w", endpoint, err)
}

// decodeMetrics reads the families of a scrape, in whichever format the member answered.
func decodeMetrics(resp *http.Response) (map[string]*dto.MetricFamily, error) {
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, maxMetricsBytes), expfmt.ResponseFormat(resp.Header))
	families := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return families, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		families[mf.GetName()] = mf
	}
}

// histogram takes the one unlabelled histogram of the family.
func histogram(families map[string]*dto.MetricFamily, name string) (Histogram, error) {
	mf, ok := families[name]
	if !ok {
		return Histogram{}, fmt.Errorf("no %s", name)
	}
	if mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetHistogram() == nil {
		return Histogram{}, fmt.Errorf("%s is not one histogram (%s, %d series)", name, mf.GetType(), len(mf.GetMetric()))
	}
	ph := mf.GetMetric()[0].GetHistogram()
	h := Histogram{Count: ph.GetSampleCount(), Sum: ph.GetSampleSum()}
	if h.Count == 0 {
		h.Count = uint64(ph.GetSampleCountFloat())
	}
	for _, b := range ph.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		n := b.GetCumulativeCount()
		if n == 0 {
			n = uint64(b.GetCumulativeCountFloat())
		}
		h.Buckets = append(h.Buckets, Bucket{UpperBound: b.GetUpperBound(), Count: n})
	}
	slices.SortFunc(h.Buckets, byBound)
	return h, nil
}

// HTTPClient returns an HTTP client for the cluster's members' client URLs, with the
// cluster's TLS settings, for DiskLatency and QuotaBytes.
func (c *Clients) HTTPClient(cluster string) (*http.Client, error) {
	c.mu.Lock()
	cfg, ok := c.configs[cluster]
	c.mu.Unlock()
	if !ok {
		return nil, remediator.Errorf(remediator.ENOTFOUND, "cluster %q is not configured", cluster)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	// A scrape is rare, and the client is nobody's to close: idle connections would stay.
	t.DisableKeepAlives = true
	var err error
	if t.TLSClientConfig, err = cfg.tls(); err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}
