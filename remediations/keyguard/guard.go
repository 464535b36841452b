package keyguard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
)

// Etcd is what the guard reads and watches a cluster with; *clientv3.Client is one.
type Etcd interface {
	clientv3.KV
	clientv3.Watcher
}

// Reporter is told about every guarded key found gone; serve turns that into an alert, so
// that the loss goes through the same policies and correlation as any other alert.
type Reporter interface {
	Missing(ctx context.Context, loss Loss) error
}

// ReporterFunc lets a function be a Reporter.
type ReporterFunc func(ctx context.Context, loss Loss) error

// Missing calls f.
func (f ReporterFunc) Missing(ctx context.Context, loss Loss) error { return f(ctx, loss) }

// Loss is a guarded key found gone, with the last value the guard saved of it.
type Loss struct {
	Cluster string
	Key     string
	// Revision is the cluster's revision when the key was seen gone: that of its delete, or
	// that of the read that found it absent.
	Revision int64
	// At is when the guard saw the key gone.
	At   time.Time
	Last Saved
}

// ID is the same for every report of one loss, by any replica's guard and after any
// restart, so that publishing with it as the message ID stores the loss once: the key and
// the revision of the value it lost.
func (l Loss) ID() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", l.Cluster, l.Key, l.Last.ModRevision))
	return "keyguard-" + hex.EncodeToString(sum[:16])
}

// Alert is the loss as the alert that selects etcd-key-restore: its labels name the cluster
// and the key, which the remediation restores when its policy gives no key.
func (l Loss) Alert() remediator.Alert {
	sum := sha256.Sum256([]byte(l.Cluster + "\x00" + l.Key))
	return remediator.Alert{
		Source:      "keyguard",
		Fingerprint: hex.EncodeToString(sum[:8]),
		Status:      remediator.AlertFiring,
		Cluster:     l.Cluster,
		Labels:      map[string]string{"alertname": AlertName, "cluster": l.Cluster, "key": l.Key, "severity": "critical"},
		Annotations: map[string]string{
			"summary":    fmt.Sprintf("guarded etcd key %q is gone (seen at revision %d)", l.Key, l.Revision),
			"last_value": l.Last.String(),
		},
		StartsAt:   l.At,
		ReceivedAt: l.At,
	}
}

// GuardConfig says which keys of which cluster to guard.
type GuardConfig struct {
	Cluster string
	// Keys are exact keys, such as "_sd.placement/m3db/prod/m3db"; one that ends in "/" or
	// "*" guards every key under that prefix (the "*" is not part of the prefix). A prefix
	// loses only what is deleted while the guard watches: a key deleted while no guard ran
	// is found gone at start only when it is guarded by its exact name.
	Keys []string
}

// guarded is one entry of GuardConfig.Keys.
type guarded struct {
	key    string
	prefix bool
}

func (g guarded) String() string {
	if g.prefix {
		return g.key + "*"
	}
	return g.key
}

func (g guarded) covers(other guarded) bool {
	if g.prefix {
		return strings.HasPrefix(other.key, g.key)
	}
	return !other.prefix && g.key == other.key
}

// Guard watches a cluster's guarded keys, saves every value they take, and reports the
// ones that disappear.
type Guard struct {
	cluster string
	keys    []guarded
	etcd    Etcd
	values  Values
	report  Reporter
	log     *slog.Logger
	// retryMin and retryMax bound the delay before trying a failed read or watch again.
	retryMin, retryMax time.Duration
}

// callTimeout bounds one read or write of the guard, so that a hung etcd or store is
// retried instead of waited for.
const callTimeout = 10 * time.Second

// NewGuard returns the guard of the configured keys. It checks them and touches nothing:
// Run does the work.
func NewGuard(cfg GuardConfig, etcd Etcd, values Values, report Reporter, log *slog.Logger) (*Guard, error) {
	if cfg.Cluster == "" {
		return nil, remediator.Errorf(remediator.EINVALID, "keyguard: the guard needs a cluster")
	}
	if len(cfg.Keys) == 0 {
		return nil, remediator.Errorf(remediator.EINVALID, "keyguard: cluster %q: no keys to guard", cfg.Cluster)
	}
	g := &Guard{cluster: cfg.Cluster, etcd: etcd, values: values, report: report, retryMin: 500 * time.Millisecond, retryMax: 30 * time.Second}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g.log = log.With("component", "keyguard", "cluster", cfg.Cluster)
	for i, k := range cfg.Keys {
		var key guarded
		switch {
		case strings.HasSuffix(k, "*"):
			key = guarded{key: strings.TrimSuffix(k, "*"), prefix: true}
		case strings.HasSuffix(k, "/"):
			key = guarded{key: k, prefix: true}
		default:
			key = guarded{key: k}
		}
		if key.key == "" {
			// Watching the whole keyspace would copy all of etcd into JetStream.
			return nil, remediator.Errorf(remediator.EINVALID, "keyguard: cluster %q: keys[%d] %q: must name a key or a non-empty prefix", cfg.Cluster, i, k)
		}
		for j, other := range g.keys {
			if other.covers(key) || key.covers(other) {
				// Two watches of one key would save and report it twice.
				return nil, remediator.Errorf(remediator.EINVALID, "keyguard: cluster %q: keys[%d] %q overlaps keys[%d] %q", cfg.Cluster, i, k, j, cfg.Keys[j])
			}
		}
		g.keys = append(g.keys, key)
	}
	return g, nil
}

// Run guards the keys until ctx is done. It never gives up on a key: a read, a watch, a
// save or a report that fails is tried again after a growing delay, and logged.
func (g *Guard) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, k := range g.keys {
		wg.Go(func() { g.guard(ctx, k) })
	}
	wg.Wait()
}

// errCompacted is a watch that can no longer resume: the revisions it missed are gone.
var errCompacted = errors.New("the revision to resume from was compacted")

// guard reads a key and watches it from the revision after the read, resuming each broken
// watch where it stopped; only a compaction past that point makes it read the key again.
func (g *Guard) guard(ctx context.Context, k guarded) {
	log := g.log.With("key", k.String())
	var (
		next     int64 // the revision to watch from; 0 reads the key first
		failures int
	)
	for ctx.Err() == nil {
		var (
			err  error
			from = next
		)
		if next == 0 {
			next, err = g.sync(ctx, k)
		} else {
			next, err = g.watch(ctx, k, next)
		}
		switch {
		case err == nil || ctx.Err() != nil:
			failures = 0
			continue
		case errors.Is(err, errCompacted):
			log.Info("guard: re-reading the key: its watch fell behind a compaction", "from_revision", from)
			continue
		}
		if next > from {
			failures = 0 // the watch made progress before it broke: start the delays over
		}
		failures++
		delay := min(g.retryMin<<min(failures-1, 16), g.retryMax)
		log.Warn("guard: failed; trying again", "err", err, "failures", failures, "retry_in", delay)
		_ = poll.Sleep(ctx, delay) // the loop ends with ctx
	}
}

// sync reads the key (or every key under the prefix), saves the values the store lacks and
// reports an exact key that is absent though a value of it was saved. It returns the
// revision to watch from.
func (g *Guard) sync(ctx context.Context, k guarded) (int64, error) {
	opts := []clientv3.OpOption{}
	if k.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	gctx, cancel := context.WithTimeout(ctx, callTimeout)
	resp, err := g.etcd.Get(gctx, k.key, opts...)
	cancel()
	if err != nil {
		return 0, etcdops.Classify(err, "read %s", k)
	}
	for _, kv := range resp.Kvs {
		if err := g.keep(ctx, kv); err != nil {
			return 0, err
		}
	}
	if !k.prefix && len(resp.Kvs) == 0 {
		if err := g.lost(ctx, k.key, resp.Header.Revision); err != nil {
			return 0, err
		}
	}
	return resp.Header.Revision + 1, nil
}

// watch follows the key from revision next until the watch breaks or ctx is done, and
// returns the revision to resume from: that of the first event it could not handle.
func (g *Guard) watch(ctx context.Context, k guarded, next int64) (int64, error) {
	// Without a leader a member serves no new events; requiring one makes the watch fail,
	// and be resumed on a member that has one, instead of going quiet.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRev(next), clientv3.WithPrevKV(), clientv3.WithProgressNotify()}
	if k.prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	for resp := range g.etcd.Watch(wctx, k.key, opts...) {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return 0, fmt.Errorf("watch %s from revision %d: %w (compacted at %d)", k, next, errCompacted, resp.CompactRevision)
			}
			return next, etcdops.Classify(err, "watch %s", k)
		}
		for _, ev := range resp.Events {
			if err := g.handle(ctx, ev); err != nil {
				return ev.Kv.ModRevision, err
			}
			next = ev.Kv.ModRevision + 1
		}
		if resp.IsProgressNotify() {
			next = max(next, resp.Header.Revision+1)
		}
	}
	if err := ctx.Err(); err != nil {
		return next, err
	}
	return next, remediator.Errorf(remediator.EUNAVAILABLE, "watch %s: closed by the client", k)
}

func (g *Guard) handle(ctx context.Context, ev *clientv3.Event) error {
	if ev.Type == mvccpb.PUT {
		return g.keep(ctx, ev.Kv)
	}
	// The value before the delete is the one to restore; the store may lack it if its put
	// came before the watch resumed after a compaction.
	if ev.PrevKv != nil {
		if err := g.keep(ctx, ev.PrevKv); err != nil {
			return err
		}
	}
	return g.lost(ctx, string(ev.Kv.Key), ev.Kv.ModRevision)
}

// keep saves kv unless the store holds that revision of it already, as it does when
// another replica's guard saved it first or the key is read again after a restart.
func (g *Guard) keep(ctx context.Context, kv *mvccpb.KeyValue) error {
	key := string(kv.Key)
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	last, found, err := load(ctx, g.values, g.cluster, key)
	if err != nil {
		return err
	}
	if found && last.ModRevision == kv.ModRevision {
		return nil
	}
	s := Saved{Key: key, Value: kv.Value, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision,
		Version: kv.Version, Lease: kv.Lease, SavedAt: time.Now().UTC()}
	err = save(ctx, g.values, g.cluster, s)
	if err != nil && !remediator.Retriable(err) {
		// A value over the store's size limit will not fit on a retry either: say so once
		// and keep guarding, so that the next value that fits is saved.
		g.log.Error("guard: cannot save a value of a guarded key: it could not be restored", "key", key, "mod_revision", kv.ModRevision, "bytes", len(kv.Value), "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	g.log.Debug("guard: saved a value of a guarded key", "key", key, "mod_revision", kv.ModRevision, "bytes", len(kv.Value))
	return nil
}

// lost reports key gone at revision rev, if a value of it was saved to restore.
func (g *Guard) lost(ctx context.Context, key string, rev int64) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	last, found, err := load(ctx, g.values, g.cluster, key)
	switch {
	case err != nil:
		return err
	case !found:
		g.log.Warn("guard: a guarded key is gone, and no value of it was saved: it cannot be restored", "key", key, "revision", rev)
		return nil
	case last.Lease != 0:
		// A key on a lease is ephemeral: it goes when its owner does, and comes back with it.
		g.log.Info("guard: a guarded key attached to a lease is gone; not reporting it", "key", key, "revision", rev, "lease", fmt.Sprintf("%x", last.Lease))
		return nil
	}
	loss := Loss{Cluster: g.cluster, Key: key, Revision: rev, At: time.Now().UTC(), Last: last}
	if err := g.report.Missing(ctx, loss); err != nil {
		return fmt.Errorf("report the loss of %q: %w", key, err)
	}
	g.log.Warn("guard: a guarded key is gone; reported it", "key", key, "revision", rev, "last_mod_revision", last.ModRevision, "loss", loss.ID())
	return nil
}
