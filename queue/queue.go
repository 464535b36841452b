// Package queue is remediator's durable state on NATS JetStream: the streams that carry
// webhooks to the correlator and incidents to the executor, the consumers that deliver them
// with explicit acks, and the key-value buckets that hold incidents. With no URL it runs an
// embedded NATS server in the same process.
package queue

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/remediator/remediator"
)

// Subjects remediator publishes on.
const (
	// SubjectAlerts carries alert batches from the Alertmanager webhook.
	SubjectAlerts = "remediator.events.alertmanager"
	// SubjectRun carries requests to run (or resume) an incident's remediation.
	SubjectRun = "remediator.work.run"
	// SubjectExpire carries the deadline of an incident's approval request.
	SubjectExpire = "remediator.work.expire"
	// SubjectAnswer carries approvals and rejections clicked in chat, to be authorized.
	SubjectAnswer = "remediator.work.answer"
	// SubjectNotify carries what the humans should be told about an incident.
	SubjectNotify = "remediator.notify.incident"
)

// Stream, consumer and bucket names.
const (
	streamEvents    = "REMEDIATOR_EVENTS"
	streamWork      = "REMEDIATOR_WORK"
	streamNotify    = "REMEDIATOR_NOTIFY"
	bucketIncidents = "remediator_incidents"
	bucketOpen      = "remediator_open"
	bucketAlerts    = "remediator_alerts"
	bucketLocks     = "remediator_locks"
	bucketSeen      = "remediator_seen"
	bucketGuarded   = "remediator_guarded"
	bucketSignals   = "remediator_signals"
	bucketMeta      = "remediator_meta"
	bucketEvidence  = "remediator_evidence"
	bucketArchive   = "remediator_archive"
	bucketRuns      = "remediator_runs"
	bucketFences    = "remediator_fences"
	bucketDead      = "remediator_dead"
	bucketPauses    = "remediator_pauses"
	streamWaits     = "REMEDIATOR_WAITS"
	streamIndex     = "REMEDIATOR_INDEX"
	subjectWaits    = "remediator.wait"
	subjectIndex    = "remediator.index.incidents"
)

// keySignedSince, in bucketMeta, is when the queue first held signed messages.
const keySignedSince = "signed_since"

// seenFor is how long FirstSeen remembers a key: longer than Slack's five-minute window for
// request timestamps, so a replayed request is refused for as long as it could be valid.
const seenFor = 10 * time.Minute

// Consumer names a durable consumer of one of remediator's streams.
type Consumer struct{ stream, name string }

// The durable consumers.
var (
	// Correlator receives alert batches and turns them into incidents.
	Correlator = Consumer{streamEvents, "correlator"}
	// Executor receives run requests, approval deadlines and answers, and carries out
	// remediations.
	Executor = Consumer{streamWork, "executor"}
	// Notifier receives notifications for the humans.
	Notifier = Consumer{streamNotify, "notifier"}
	// waiter holds work that waits for a time, and gives it back to its consumer then.
	waiter = Consumer{streamWaits, "waiter"}
)

// Defaults of Options.
const (
	// DefaultAckWait lets the work of a replica that died resume elsewhere within seconds:
	// a live worker says it is still at work every third of it.
	DefaultAckWait = 6 * time.Second
	// DefaultMaxDeliver is well above a step's attempts (worker.DefaultStepAttempts) and the
	// interruptions a run may have.
	DefaultMaxDeliver = 30
	// DefaultMaxWaiting lets ten thousand incidents wait for approval, with room.
	DefaultMaxWaiting = 100_000
)

// defaultTimeout bounds a queue call whose context has no deadline.
const defaultTimeout = 10 * time.Second

// Options say how to reach JetStream, and who this process is there.
type Options struct {
	// URL of a NATS cluster with JetStream; empty starts an embedded server in StoreDir.
	URL string
	// Key is this process's identity, an nkey user: it authenticates the connection (unless
	// CredsFile does, or Insecure) and signs every message the queue publishes and every
	// action it asks of an agent. Without one, a key of this run only is made.
	Key nkeys.KeyPair
	// CredsFile authenticates to URL with a user JWT instead of Key.
	CredsFile string
	// TLS: for the embedded server's listener, its certificate and the CA of its clients'
	// certificates; for URL, the CA of the server's certificate and this client's own.
	TLS TLSFiles
	// Insecure connects to URL without TLS files in the clear, and, where the server asks for
	// no credentials, without them.
	Insecure bool
	// PreviousKeys are public keys that signed for this service before Key (a rotation):
	// messages they signed that are still queued count as its own.
	PreviousKeys []string
	// Agents maps "<cluster>/<node>" to the public nkey of that node's agent: the embedded
	// server lets each connect with its own permissions, and only replies each signed count.
	Agents   map[string]string
	StoreDir string
	// Listen is where the embedded server takes connections from node agents (none if empty).
	Listen   string
	Replicas int
	// AckWait is how long a delivered message may go unacknowledged before it is delivered
	// again; workers report progress at a third of it.
	AckWait time.Duration
	// MaxDeliver is how many times a message is delivered before it is given up and recorded
	// as a dead letter (DefaultMaxDeliver if zero). Waits do not count: waiting work is
	// parked apart, and comes back as a new message.
	MaxDeliver int
	// MaxWaiting bounds how many waits may be parked at once (DefaultMaxWaiting if zero).
	MaxWaiting int
	// Limits override DefaultLimits, by short name.
	Limits map[string]Limit
	// MaxStore bounds the embedded server's file store (DefaultMaxStore if zero).
	MaxStore int64
	// SyncInterval is how often the embedded server syncs its store to disk; zero syncs every
	// write before it is acknowledged, so that a 202 survives a power loss.
	SyncInterval time.Duration
	// Backoff is the delay before each retry of a message that failed in a way that may pass,
	// the n-th entry for the n-th retry (the last repeats).
	Backoff []time.Duration
	Log     *slog.Logger
}

// TLSFiles are the files of a certificate, its key and a CA.
type TLSFiles struct{ CAFile, CertFile, KeyFile string }

// defaultBackoff waits longer before each retry, up to ten minutes.
var defaultBackoff = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
	2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute}

// Queue is a connection to JetStream with remediator's streams and buckets in place.
type Queue struct {
	opts     Options
	embedded *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	// Incidents is the incident store.
	Incidents *Store
	// Locks are the cluster locks.
	Locks *Locks
	// Guarded holds the last values of the guarded etcd keys.
	Guarded *Guarded
	// Pauses are the clusters operators paused.
	Pauses *Pauses
	seen   jetstream.KeyValue
	dead   jetstream.KeyValue
	limits map[string]Limit
	// deadLetters counts the messages given up, by consumer.
	deadLetters *prometheus.CounterVec
	// finished counts the incidents that ended here, by state.
	finished *prometheus.CounterVec
	signer   *signer
	agents   *Agents
	// signedSince is when this queue's streams first held signed messages: an unsigned one
	// stored before is from the version that signed nothing.
	signedSince time.Time
}

// Open connects (starting the embedded server if there is no URL) and creates or updates the
// streams, consumers and buckets.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.AckWait == 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.MaxDeliver == 0 {
		opts.MaxDeliver = DefaultMaxDeliver
	}
	if opts.MaxWaiting == 0 {
		opts.MaxWaiting = DefaultMaxWaiting
	}
	if opts.MaxStore == 0 {
		opts.MaxStore = DefaultMaxStore
	}
	if len(opts.Backoff) == 0 {
		opts.Backoff = defaultBackoff
	}
	authenticate := opts.Key != nil && opts.CredsFile == ""
	if opts.Key == nil {
		key, err := nkeys.CreateUser()
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		opts.Key = key
	}
	s, err := newSigner(opts.Key)
	if err != nil {
		return nil, err
	}
	q := &Queue{opts: opts, signer: s, deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "remediator_dead_letters_total",
		Help: "Messages given up after their deliveries (recorded in the remediator_dead bucket), by consumer.",
	}, []string{"consumer"}), finished: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "remediator_incidents_finished_total",
		Help: "Incidents that ended, by how (succeeded, failed, rejected, skipped, cancelled); remediator_incidents counts the open ones.",
	}, []string{"state"})}
	natsOpts := []nats.Option{nats.Name("remediator"), nats.MaxReconnects(-1)}
	url := opts.URL
	if url == "" {
		ns, err := startEmbedded(opts)
		if err != nil {
			return nil, err
		}
		q.embedded = ns
		natsOpts = append(natsOpts, nats.InProcessServer(ns), nkeyAuth(opts.Key))
	} else {
		switch {
		case opts.CredsFile != "":
			natsOpts = append(natsOpts, nats.UserCredentials(opts.CredsFile))
		case authenticate:
			natsOpts = append(natsOpts, nkeyAuth(opts.Key))
		case !opts.Insecure:
			return nil, remediator.Errorf(remediator.EINVALID, "queue: no credentials for %s, and not told to connect without", remediator.RedactURL(url))
		}
		tlsOpts, err := clientTLS(opts.TLS, url, opts.Insecure)
		if err != nil {
			return nil, err
		}
		natsOpts = append(natsOpts, tlsOpts...)
	}
	nc, err := nats.Connect(url, natsOpts...)
	if errors.Is(err, nats.ErrNkeysNotSupported) && opts.Insecure && authenticate {
		// An open server, as the operator said it may be: the key only signs.
		opts.Log.Warn("the NATS server asks for no credentials: connecting without (nats.insecure)", "url", remediator.RedactURL(url))
		nc, err = nats.Connect(url, append(natsOpts, withoutNkey)...)
	}
	if err != nil {
		q.Close()
		return nil, remediator.Errorf(remediator.EUNAVAILABLE, "queue: connect to NATS at %s: %s", remediator.RedactURL(url), remediator.RedactURL(err.Error()))
	}
	q.nc = nc
	q.agents = &Agents{nc: nc, key: q.signer, keys: opts.Agents, grace: noResponderGrace}
	if q.embedded != nil {
		// Its users are the ones remediator made: agents answer only the requests they were
		// sent, so nobody but this service can say "no responders" in the server's stead.
		q.agents.grace = 0
	}
	q.js, err = jetstream.New(nc)
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	// A NATS cluster that is still forming (a peer not yet back, a leader not yet elected)
	// refuses placements for a few seconds: that is a wait, not a failure to start.
	deadline := time.Now().Add(setupRetryFor)
	for {
		sctx, cancel := withDefaultTimeout(ctx)
		err = q.setup(sctx)
		cancel()
		if err == nil {
			return q, nil
		}
		if !remediator.Retriable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			q.Close()
			return nil, err
		}
		opts.Log.Warn("NATS cannot hold remediator's streams yet; trying again", "err", err)
		sleep(ctx, time.Second)
	}
}

// setupRetryFor is how long Open keeps trying to create its streams on a NATS that is not ready.
const setupRetryFor = 30 * time.Second

func (q *Queue) setup(ctx context.Context) error {
	lim, err := limits(q.opts.Limits)
	if err != nil {
		return err
	}
	q.limits = lim
	streams := []struct {
		short string
		cfg   jetstream.StreamConfig
	}{
		{"events", jetstream.StreamConfig{Name: streamEvents, Description: "Webhook payloads, as enqueued by the intake handlers.",
			Subjects: []string{"remediator.events.>"}, Retention: jetstream.LimitsPolicy}},
		{"notify", jetstream.StreamConfig{Name: streamNotify, Description: "What the humans should be told, for the chat notifier.",
			Subjects: []string{"remediator.notify.>"}, Retention: jetstream.WorkQueuePolicy}},
		{"work", jetstream.StreamConfig{Name: streamWork, Description: "Requests to run an incident's remediation, approval deadlines and answers.",
			Subjects: []string{"remediator.work.>"}, Retention: jetstream.WorkQueuePolicy}},
		{"waits", jetstream.StreamConfig{Name: streamWaits, Description: "Work that waits for a time (a lock, a window, a deadline), apart from the work that can run now.",
			Subjects: []string{subjectWaits + ".>"}, Retention: jetstream.WorkQueuePolicy}},
		{"index", jetstream.StreamConfig{Name: streamIndex, Description: "One message per incident, in the order they opened: the incidents' list, newest first.",
			Subjects: []string{subjectIndex}, Retention: jetstream.LimitsPolicy}},
	}
	for _, st := range streams {
		cfg := st.cfg
		l := lim[st.short]
		cfg.Storage, cfg.Replicas, cfg.Duplicates = jetstream.FileStorage, q.opts.Replicas, 10*time.Minute
		cfg.MaxBytes, cfg.MaxAge = l.MaxBytes, l.MaxAge
		// A full stream refuses what comes, and the sender hears why; dropping the oldest
		// would lose work that was accepted.
		cfg.Discard = jetstream.DiscardNew
		if _, err := q.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return unavailable("create stream %s ("+describeLimit(l)+")", cfg.Name, err)
		}
	}
	for _, c := range []Consumer{Correlator, Executor, Notifier, waiter} {
		cfg := jetstream.ConsumerConfig{
			Durable:       c.name,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       q.opts.AckWait,
			MaxDeliver:    q.opts.MaxDeliver,
			MaxAckPending: 1000,
			Replicas:      q.opts.Replicas,
		}
		if c == waiter {
			// A wait is a message parked until its time: as many may be parked as wait.
			cfg.MaxDeliver, cfg.MaxAckPending = -1, q.opts.MaxWaiting
		}
		if _, err := q.js.CreateOrUpdateConsumer(ctx, c.stream, cfg); err != nil {
			return unavailable("create consumer %s", c.name, err)
		}
	}
	buckets := []struct {
		short string
		cfg   jetstream.KeyValueConfig
	}{
		{"incidents", jetstream.KeyValueConfig{Bucket: bucketIncidents, Description: "Incidents by ID.", History: 8}},
		{"open", jetstream.KeyValueConfig{Bucket: bucketOpen, Description: "The open incident of each cluster and remediation."}},
		{"alerts", jetstream.KeyValueConfig{Bucket: bucketAlerts, Description: "The incident each alert fingerprint last joined."}},
		{"locks", jetstream.KeyValueConfig{Bucket: bucketLocks, Description: "The incident holding each cluster; refreshed while it runs.", TTL: q.opts.AckWait}},
		{"seen", jetstream.KeyValueConfig{Bucket: bucketSeen, Description: "Requests already handled, against replays."}},
		{"guarded", jetstream.KeyValueConfig{Bucket: bucketGuarded, Description: "The last values of guarded etcd keys, by cluster and key.", History: guardedHistory}},
		{"signals", jetstream.KeyValueConfig{Bucket: bucketSignals, Description: "Recent signals that answer no policy by themselves, by cluster, for the incidents they surround."}},
		{"meta", jetstream.KeyValueConfig{Bucket: bucketMeta, Description: "What the queue knows of itself, such as since when its messages are signed."}},
		{"evidence", jetstream.KeyValueConfig{Bucket: bucketEvidence, Description: "Every alert that joined an incident, by incident and fingerprint: the incident keeps counts and the first and last few."}},
		{"archive", jetstream.KeyValueConfig{Bucket: bucketArchive, Description: "Closed incidents past the retention, still readable for their reports."}},
		{"runs", jetstream.KeyValueConfig{Bucket: bucketRuns, Description: "The recent runs of each cluster and remediation, for cooldowns and attempt counts."}},
		{"fences", jetstream.KeyValueConfig{Bucket: bucketFences, Description: "The step each cluster's lock holder runs and its deadline: no other holder starts before it."}},
		{"dead", jetstream.KeyValueConfig{Bucket: bucketDead, Description: "Messages given up after their deliveries, for the humans to look at."}},
		{"pauses", jetstream.KeyValueConfig{Bucket: bucketPauses, Description: "The clusters an operator paused: no step starts on them until resumed."}},
	}
	kvs := map[string]jetstream.KeyValue{}
	for _, b := range buckets {
		cfg := b.cfg
		l := lim[b.short]
		cfg.Storage, cfg.Replicas, cfg.MaxBytes = jetstream.FileStorage, q.opts.Replicas, l.MaxBytes
		if cfg.TTL == 0 {
			cfg.TTL = l.MaxAge
		}
		kv, err := q.js.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			return unavailable("create bucket %s ("+describeLimit(l)+")", cfg.Bucket, err)
		}
		kvs[b.short] = kv
	}
	index, err := q.js.Stream(ctx, streamIndex)
	if err != nil {
		return unavailable("stream %s", streamIndex, err)
	}
	q.Incidents = &Store{incidents: kvs["incidents"], open: kvs["open"], alerts: kvs["alerts"], signals: kvs["signals"],
		evidence: kvs["evidence"], archive: kvs["archive"], runs: kvs["runs"], index: index, publish: q.Publish, maxPayload: q.nc.MaxPayload, finished: q.finished}
	q.Locks = &Locks{kv: kvs["locks"], fences: kvs["fences"], ttl: q.opts.AckWait}
	q.seen = kvs["seen"]
	q.dead = kvs["dead"]
	q.Guarded = &Guarded{kv: kvs["guarded"], maxPayload: q.nc.MaxPayload}
	q.Pauses = &Pauses{kv: kvs["pauses"]}
	return q.markSigning(ctx, kvs["meta"])
}

// markSigning records, once for the queue's lifetime, when its streams started to hold signed
// messages, and reads it back.
func (q *Queue) markSigning(ctx context.Context, kv jetstream.KeyValue) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := kv.Create(ctx, keySignedSince, []byte(now)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return unavailable("record %s", keySignedSince, err)
	}
	e, err := kv.Get(ctx, keySignedSince)
	if err != nil {
		return unavailable("read %s", keySignedSince, err)
	}
	if q.signedSince, err = time.Parse(time.RFC3339Nano, string(e.Value())); err != nil {
		return fmt.Errorf("queue: %s: %w", keySignedSince, err)
	}
	return nil
}

// trusted says whether a key signs for this service: its own, or one it had before.
func (q *Queue) trusted(pub string) bool {
	return pub == q.signer.pub || slices.Contains(q.opts.PreviousKeys, pub)
}

// withoutNkey takes back nkeyAuth, for a server that asks for no credentials.
func withoutNkey(o *nats.Options) error {
	o.Nkey, o.SignatureCB = "", nil
	return nil
}

// nkeyAuth authenticates a connection with an nkey user, signing the server's nonce.
func nkeyAuth(key nkeys.KeyPair) nats.Option {
	return nats.Nkey(publicKey(key), key.Sign)
}

// clientTLS is TLS for a connection to url: with a CA file, or tls:// URLs and the system's
// roots. Without either, only insecure connections go in the clear.
func clientTLS(t TLSFiles, url string, insecure bool) ([]nats.Option, error) {
	var opts []nats.Option
	if t.CAFile != "" {
		opts = append(opts, nats.RootCAs(t.CAFile))
	}
	if t.CertFile != "" {
		opts = append(opts, nats.ClientCert(t.CertFile, t.KeyFile))
	}
	switch {
	case len(opts) > 0 || strings.HasPrefix(url, "tls://"):
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	case !insecure:
		return nil, remediator.Errorf(remediator.EINVALID, "queue: no TLS for %s, and not told to connect without", remediator.RedactURL(url))
	}
	return opts, nil
}

// PublicKey is the public nkey that signs what this process publishes and asks.
func (q *Queue) PublicKey() string { return q.signer.pub }

// Publish stores data on subject once: a second publish with the same msgID within the
// duplicate window is acknowledged as a duplicate and stored nothing.
func (q *Queue) Publish(ctx context.Context, subject string, data []byte, msgID string) (duplicate bool, err error) {
	if max := q.nc.MaxPayload(); int64(len(data)) > max {
		return false, remediator.Errorf(remediator.ETOOLARGE, "queue: message of %d bytes is over the NATS server's max_payload of %d", len(data), max)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	msg := nats.NewMsg(subject)
	msg.Data = data
	q.signer.sign(msg.Header, subject, data)
	ack, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		if err := full(subject, err); err != nil {
			return false, err
		}
		return false, unavailable("publish to %s", subject, err)
	}
	return ack.Duplicate, nil
}

// Collectors are the queue's metrics, for a registry.
func (q *Queue) Collectors() []prometheus.Collector {
	return []prometheus.Collector{q.deadLetters, q.finished}
}

// FirstSeen records key and says whether this is the first time it is seen within ten
// minutes; every replica sees the same answer.
func (q *Queue) FirstSeen(ctx context.Context, key string) (bool, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	sum := sha256.Sum256([]byte(key))
	_, err := q.seen.Create(ctx, hex.EncodeToString(sum[:]), nil)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	case err != nil:
		return false, unavailable("record %s", "a seen request", err)
	}
	return true, nil
}

// Ready checks that NATS is connected and JetStream answers.
func (q *Queue) Ready(ctx context.Context) error {
	if s := q.nc.Status(); s != nats.CONNECTED {
		return remediator.Errorf(remediator.EUNAVAILABLE, "queue: NATS connection is %s", s)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if _, err := q.js.AccountInfo(ctx); err != nil {
		return unavailable("JetStream account info", "", err)
	}
	return nil
}

// Close closes the connection and stops the embedded server, if any.
func (q *Queue) Close() {
	if q.nc != nil {
		q.nc.Close()
	}
	if q.embedded != nil {
		q.embedded.Shutdown()
		q.embedded.WaitForShutdown()
	}
}

func unavailable(what, name string, err error) error {
	if name != "" {
		what = fmt.Sprintf(what, name)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("queue: %s: %w", what, err)
	}
	return remediator.Errorf(remediator.EUNAVAILABLE, "queue: %s: %w", what, err)
}

// withDefaultTimeout gives ctx a deadline if it has none.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, defaultTimeout)
}
