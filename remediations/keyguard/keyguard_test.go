package keyguard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/polltest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations/etcdops"
)

// placementKey is seed 000's key: m3db's placement, which m3db cannot start without.
const placementKey = "_sd.placement/m3db/prod/m3db"

// placement stands for an m3db placement: protobuf, so not text.
var placement = []byte("\x0a\x04m3db\x12\x00\xff\xfe" + strings.Repeat("shard-set;", 300))

// env is a real etcd cluster, named "test", and a real embedded JetStream.
type env struct {
	t    *testing.T
	etcd *etcdtest.Cluster
	cl   *clientv3.Client
	q    *queue.Queue
	rem  *Remediation
}

func newEnv(t *testing.T, members int) *env {
	t.Helper()
	e := &env{t: t, etcd: etcdtest.New(t, etcdtest.Options{Members: members})}
	var err error
	if e.cl, err = e.etcd.Client(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cl.Close() })
	if e.q, err = queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.q.Close)
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: e.etcd.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	e.rem = New(clients, e.q.Guarded)
	return e
}

func (e *env) put(key string, value []byte) int64 {
	e.t.Helper()
	resp, err := e.cl.Put(context.Background(), key, string(value))
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

func (e *env) del(key string) int64 {
	e.t.Helper()
	resp, err := e.cl.Delete(context.Background(), key)
	if err != nil || resp.Deleted != 1 {
		e.t.Fatalf("delete %q: %v (%d deleted)", key, err, resp.Deleted)
	}
	return resp.Header.Revision
}

// get returns the key's value in etcd, or nil if it is absent.
func (e *env) get(key string) []byte {
	e.t.Helper()
	resp, err := e.cl.Get(context.Background(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0].Value
}

// saved returns what the store holds of the key, if anything.
func (e *env) saved(key string) (Saved, bool) {
	e.t.Helper()
	s, found, err := load(context.Background(), e.q.Guarded, "test", key)
	if err != nil {
		e.t.Fatal(err)
	}
	return s, found
}

// saveNow saves the key's current value as a guard would.
func (e *env) saveNow(key string) Saved {
	e.t.Helper()
	resp, err := e.cl.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		e.t.Fatalf("get %q: %v", key, err)
	}
	kv := resp.Kvs[0]
	s := Saved{Key: key, Value: kv.Value, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision, Version: kv.Version, Lease: kv.Lease, SavedAt: time.Now().UTC()}
	if err := save(context.Background(), e.q.Guarded, "test", s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// waitSaved waits until the store holds the key's value of mod revision rev.
func (e *env) waitSaved(key string, rev int64) Saved {
	e.t.Helper()
	var s Saved
	polltest.Until(e.t, 10*time.Second, fmt.Sprintf("the store to hold mod revision %d of %q", rev, key), func() (bool, string) {
		var found bool
		s, found = e.saved(key)
		return found && s.ModRevision == rev, fmt.Sprintf("%+v (found %v)", s, found)
	})
	return s
}

// guard runs a guard of the keys until the test ends or stop is called; its losses arrive on
// the channel.
func (e *env) guard(etcd Etcd, keys ...string) (losses chan Loss, stop func()) {
	e.t.Helper()
	losses = make(chan Loss, 16)
	g, err := NewGuard(GuardConfig{Cluster: "test", Keys: keys}, etcd, e.q.Guarded,
		ReporterFunc(func(_ context.Context, l Loss) error { losses <- l; return nil }), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	g.retryMin, g.retryMax = 100*time.Millisecond, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return losses, stop
}

func nextLoss(t *testing.T, losses chan Loss) Loss {
	t.Helper()
	select {
	case l := <-losses:
		return l
	case <-time.After(15 * time.Second):
		t.Fatal("no loss reported within 15s")
		return Loss{}
	}
}

func noLoss(t *testing.T, losses chan Loss, wait time.Duration) {
	t.Helper()
	select {
	case l := <-losses:
		t.Errorf("loss of %q reported, want none", l.Key)
	case <-time.After(wait):
	}
}

func (e *env) runner(params map[string]string, evidence ...remediator.Alert) *steptest.Runner {
	e.t.Helper()
	rn := steptest.New(e.t, e.rem.Plan, "test", params)
	rn.Incident.Evidence = evidence
	return rn
}

func alertFor(key string) remediator.Alert {
	return Loss{Cluster: "test", Key: key, At: time.Now()}.Alert()
}

func TestSeed000APlacementKeyDeletedIsRestored(t *testing.T) {
	e := newEnv(t, 1)
	first := e.put(placementKey, []byte("an older placement"))
	losses, _ := e.guard(e.cl, placementKey)
	e.waitSaved(placementKey, first)
	second := e.put(placementKey, placement)
	e.waitSaved(placementKey, second)

	deleted := e.del(placementKey)
	loss := nextLoss(t, losses)
	if loss.Cluster != "test" || loss.Key != placementKey || loss.Revision != deleted {
		t.Errorf("loss of %q on %q at revision %d, want %q on test at the delete's %d", loss.Key, loss.Cluster, loss.Revision, placementKey, deleted)
	}
	if !bytes.Equal(loss.Last.Value, placement) || loss.Last.ModRevision != second {
		t.Errorf("the loss's last value is that of revision %d (%d bytes), want the placement of revision %d", loss.Last.ModRevision, len(loss.Last.Value), second)
	}
	alert := loss.Alert()
	if alert.Name() != AlertName || alert.Labels["key"] != placementKey || alert.Labels["cluster"] != "test" || alert.Cluster != "test" {
		t.Errorf("alert %+v, want %s with the cluster and key", alert, AlertName)
	}

	rn := e.runner(nil, alert)
	res, failed, err := rn.All()
	if err != nil {
		t.Fatalf("step %s: %v\n%s", failed, err, res[failed].Output)
	}
	if got := e.get(placementKey); !bytes.Equal(got, placement) {
		t.Fatalf("after the remediation the key holds %d bytes, want the %d of the placement", len(got), len(placement))
	}
	sha := loss.Last.SHA256()[:12]
	want := map[string]string{
		"preflight": fmt.Sprintf("is absent at revision %d; will restore 2.9 KiB, sha256 %s, the value of mod revision %d", deleted, sha, second),
		"restore":   "restored \"" + placementKey + "\" at revision",
		"verify":    "reads back with the saved value (2.9 KiB, sha256 " + sha + ")",
	}
	for step, w := range want {
		if !strings.Contains(res[step].Output, w) {
			t.Errorf("%s said %q, want it to say %q", step, res[step].Output, w)
		}
	}
	if len(res["preflight"].Before) != 1 || len(res["verify"].After) != 1 {
		t.Errorf("member figures before %v, after %v: want the member in both", res["preflight"].Before, res["verify"].After)
	}

	// An interrupted restore runs again: it knows its own write and writes nothing.
	resp, _ := e.cl.Get(context.Background(), placementKey)
	again, err := rn.Step("restore")
	if err != nil || !strings.Contains(again.Output, "restored by an earlier attempt") {
		t.Errorf("restore again: %q (%v), want it to find its own write", again.Output, err)
	}
	if now, _ := e.cl.Get(context.Background(), placementKey); now.Kvs[0].ModRevision != resp.Kvs[0].ModRevision {
		t.Errorf("restore again wrote the key (mod revision %d -> %d)", resp.Kvs[0].ModRevision, now.Kvs[0].ModRevision)
	}
	// The guard goes on guarding the restored key.
	e.waitSaved(placementKey, resp.Kvs[0].ModRevision)
	noLoss(t, losses, 200*time.Millisecond)
}

func TestGuardReportsAKeyDeletedWhileNoGuardRan(t *testing.T) {
	e := newEnv(t, 1)
	rev := e.put(placementKey, placement)
	_, stop := e.guard(e.cl, placementKey, "_sd.placement/m3db/prod/never-written")
	e.waitSaved(placementKey, rev)
	stop()

	deleted := e.del(placementKey)
	losses, _ := e.guard(e.cl, placementKey, "_sd.placement/m3db/prod/never-written")
	loss := nextLoss(t, losses)
	if loss.Key != placementKey || loss.Revision < deleted || !bytes.Equal(loss.Last.Value, placement) || loss.Last.ModRevision != rev {
		t.Errorf("loss of %q at revision %d with the value of %d, want %q found absent at %d or later with the value of %d",
			loss.Key, loss.Revision, loss.Last.ModRevision, placementKey, deleted, rev)
	}
	// A key absent with nothing saved is not a loss: nothing could restore it.
	noLoss(t, losses, time.Second)
	if _, found := e.saved("_sd.placement/m3db/prod/never-written"); found {
		t.Error("a value was saved of a key that was never written")
	}
}

func TestGuardFollowsAPrefix(t *testing.T) {
	e := newEnv(t, 1)
	a := e.put("_sd.placement/m3db/prod/m3db", []byte("a"))
	losses, _ := e.guard(e.cl, "_sd.placement/m3db/prod/*")
	e.waitSaved("_sd.placement/m3db/prod/m3db", a)
	b := e.put("_sd.placement/m3db/prod/m3aggregator", []byte("b"))
	e.waitSaved("_sd.placement/m3db/prod/m3aggregator", b)
	e.put("_sd.placement/m3db/staging/m3db", []byte("not guarded"))

	deleted := e.del("_sd.placement/m3db/prod/m3aggregator")
	if loss := nextLoss(t, losses); loss.Key != "_sd.placement/m3db/prod/m3aggregator" || loss.Revision != deleted || string(loss.Last.Value) != "b" {
		t.Errorf("loss of %q at %d with %q, want m3aggregator's at %d with \"b\"", loss.Key, loss.Revision, loss.Last.Value, deleted)
	}
	e.del("_sd.placement/m3db/staging/m3db")
	noLoss(t, losses, 500*time.Millisecond)
	if _, found := e.saved("_sd.placement/m3db/staging/m3db"); found {
		t.Error("a key outside the prefix was saved")
	}
}

func TestGuardResumesAcrossAnEtcdRestart(t *testing.T) {
	e := newEnv(t, 1)
	first := e.put(placementKey, []byte("v1"))
	losses, _ := e.guard(e.cl, placementKey)
	e.waitSaved(placementKey, first)

	m := e.etcd.Members[0]
	m.Kill()
	polltest.Until(t, 10*time.Second, "etcd to stop answering", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := e.cl.Get(ctx, placementKey)
		return err != nil, "it still answers"
	})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.etcd.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	second := e.put(placementKey, []byte("v2"))
	e.waitSaved(placementKey, second)
	deleted := e.del(placementKey)
	if loss := nextLoss(t, losses); loss.Revision != deleted || string(loss.Last.Value) != "v2" {
		t.Errorf("loss at %d with %q, want the delete at %d with v2", loss.Revision, loss.Last.Value, deleted)
	}
}

// pausable breaks the guard's watches on pause and holds new ones back until resume, as a
// lost connection does.
type pausable struct {
	Etcd
	mu      sync.Mutex
	gate    chan struct{} // closed on resume; nil when not paused
	cancels []context.CancelFunc
	watches int
}

func (p *pausable) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
	for _, cancel := range p.cancels {
		cancel()
	}
	p.cancels = nil
}

func (p *pausable) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.gate)
	p.gate = nil
}

func (p *pausable) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	p.cancels = append(p.cancels, cancel)
	p.watches++
	p.mu.Unlock()
	return p.Etcd.Watch(ctx, key, opts...)
}

func TestGuardReadsAgainAfterACompaction(t *testing.T) {
	e := newEnv(t, 1)
	rev := e.put(placementKey, []byte("v1"))
	etcd := &pausable{Etcd: e.cl}
	losses, _ := e.guard(etcd, placementKey)
	e.waitSaved(placementKey, rev)

	// While the guard is cut off, the key goes and the revisions it would resume from are
	// compacted away: only reading the key again can tell it is gone.
	etcd.pause()
	e.del(placementKey)
	head := e.put("other", []byte("x"))
	if _, err := e.cl.Compact(context.Background(), head); err != nil {
		t.Fatal(err)
	}
	etcd.resume()

	if loss := nextLoss(t, losses); loss.Key != placementKey || loss.Revision != head || string(loss.Last.Value) != "v1" {
		t.Errorf("loss of %q at %d with %q, want %q found absent at %d with v1", loss.Key, loss.Revision, loss.Last.Value, placementKey, head)
	}
	// The guard watches again after it reported the loss.
	polltest.Until(t, 5*time.Second, "3 watches: the first, the one the compaction refused, the one after reading again", func() (bool, string) {
		etcd.mu.Lock()
		defer etcd.mu.Unlock()
		return etcd.watches == 3, fmt.Sprintf("%d watches", etcd.watches)
	})
}

func TestRestoreLeavesAKeyRecreatedMeanwhile(t *testing.T) {
	e := newEnv(t, 1)
	for _, tc := range []struct {
		name, key string
		recreate  []byte
		wantErr   string // "": the restore succeeds
		wantOut   string
	}{{
		name:     "with another value",
		key:      "_sd.placement/m3db/prod/m3db",
		recreate: []byte("a placement the operator made"),
		wantErr:  "came back before the restore with another value",
	}, {
		name:     "with the saved value",
		key:      "_sd.placement/m3db/prod/m3coordinator",
		recreate: placement,
		wantOut:  "came back with the saved value before the restore",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.put(tc.key, placement)
			e.saveNow(tc.key)
			e.del(tc.key)
			rn := e.runner(map[string]string{"key": tc.key})
			if _, err := rn.Step("preflight"); err != nil {
				t.Fatal(err)
			}
			rev := e.put(tc.key, tc.recreate) // between the approval and the restore

			res, err := rn.Step("restore")
			switch {
			case tc.wantErr != "" && (remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("restore: %v, want a refusal saying %q", err, tc.wantErr)
			case tc.wantErr == "" && (err != nil || !strings.Contains(res.Output, tc.wantOut)):
				t.Errorf("restore: %q (%v), want %q", res.Output, err, tc.wantOut)
			}
			resp, _ := e.cl.Get(context.Background(), tc.key)
			if len(resp.Kvs) != 1 || !bytes.Equal(resp.Kvs[0].Value, tc.recreate) || resp.Kvs[0].ModRevision != rev {
				t.Errorf("the key after the restore: %v, want the re-created value untouched at mod revision %d", resp.Kvs, rev)
			}
		})
	}
}

func TestPreflightRefusalsAndNothingToDo(t *testing.T) {
	e := newEnv(t, 1)
	// absent, and never saved
	// present, with its value saved
	e.put("present", []byte("v"))
	e.saveNow("present")
	// on a lease, which expired
	lease, err := e.cl.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.Put(context.Background(), "leased", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	e.saveNow("leased")
	if _, err := e.cl.Revoke(context.Background(), lease.ID); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		params   map[string]string
		evidence []remediator.Alert
		nothing  bool // nothing to do rather than a refusal
		want     string
	}{
		{"no saved value", map[string]string{"key": "never-saved"}, nil, false, `"never-saved" is absent at revision`},
		{"no saved value, from the alert", nil, []remediator.Alert{alertFor("never-saved")}, false, "no guard saved a value of it"},
		{"present", map[string]string{"key": "present"}, nil, true, `nothing to do: every key is present: "present" is present (mod revision`},
		{"present, and one that cannot be restored", nil, []remediator.Alert{alertFor("present"), alertFor("never-saved")}, false, "no guard saved a value of it"},
		{"on a lease", map[string]string{"key": "leased"}, nil, false, "was attached to lease"},
		{"no key", nil, []remediator.Alert{{Status: remediator.AlertFiring, Labels: map[string]string{"alertname": "Other"}}}, false, "no key to restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := e.cl.Get(context.Background(), "", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			res, failed, err := e.runner(tc.params, tc.evidence...).All()
			var nothing *remediator.NothingToDo
			switch {
			case failed != "preflight" || err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("step %q: %v; want preflight to stop with %q\n%s", failed, err, tc.want, res[failed].Output)
			case tc.nothing && !errors.As(err, &nothing):
				t.Errorf("preflight: %v (%s), want nothing to do", err, remediator.ErrorCode(err))
			case !tc.nothing && remediator.ErrorCode(err) != remediator.EPRECONDITION:
				t.Errorf("preflight: %v (%s), want a refusal", err, remediator.ErrorCode(err))
			}
			after, err := e.cl.Get(context.Background(), "", clientv3.WithPrefix())
			if err != nil || after.Header.Revision != before.Header.Revision {
				t.Errorf("the keyspace went from revision %d to %d (%v), want it untouched", before.Header.Revision, after.Header.Revision, err)
			}
		})
	}
	if _, found := e.saved("never-saved"); found {
		t.Error("a refused preflight saved a value")
	}
}

func TestRestoreRefusesWithoutAPreflight(t *testing.T) {
	e := newEnv(t, 1)
	e.put(placementKey, placement)
	e.saveNow(placementKey)
	e.del(placementKey)
	_, err := e.runner(map[string]string{"key": placementKey}).Step("restore")
	if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "preflight recorded no key") {
		t.Errorf("restore without preflight: %v, want a refusal", err)
	}
	if got := e.get(placementKey); got != nil {
		t.Errorf("the key holds %q, want it left absent", got)
	}
}

func TestRestoreRefusesAValueSavedAfterPreflight(t *testing.T) {
	e := newEnv(t, 1)
	e.put(placementKey, placement)
	shown := e.saveNow(placementKey)
	e.del(placementKey)
	rn := e.runner(nil, alertFor(placementKey))
	if _, err := rn.Step("preflight"); err != nil {
		t.Fatal(err)
	}
	// Re-created and deleted again while the approval waited: the guard saved the newer value.
	newer := shown
	newer.Value, newer.ModRevision = []byte("a newer placement"), shown.ModRevision+10
	if err := save(context.Background(), e.q.Guarded, "test", newer); err != nil {
		t.Fatal(err)
	}
	_, err := rn.Step("restore")
	if remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "changed since preflight") {
		t.Errorf("restore: %v, want a refusal to write a value nobody was shown", err)
	}
	if got := e.get(placementKey); got != nil {
		t.Errorf("the key holds %q, want it left absent", got)
	}
}

func TestPreflightRefusesWhileAMemberIsDown(t *testing.T) {
	e := newEnv(t, 3)
	e.put(placementKey, placement)
	e.saveNow(placementKey)
	e.del(placementKey)
	e.etcd.Members[2].Kill()

	res, failed, err := e.runner(nil, alertFor(placementKey)).All()
	if failed != "preflight" || remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "member m3") {
		t.Fatalf("step %q: %v; want preflight to refuse, naming m3\n%s", failed, err, res[failed].Output)
	}
	if got := e.get(placementKey); got != nil {
		t.Errorf("the key holds %q, want it left absent", got)
	}
}

func TestPreflightRefusesWhenEtcdIsOutOfSpace(t *testing.T) {
	e := newEnv(t, 1)
	e.put(placementKey, placement)
	e.saveNow(placementKey)
	e.del(placementKey)
	st, err := e.cl.Status(context.Background(), e.cl.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewMaintenanceClient(e.cl.ActiveConnection()).Alarm(context.Background(),
		&pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE})
	if err != nil {
		t.Fatal(err)
	}

	_, failed, err := e.runner(nil, alertFor(placementKey)).All()
	if failed != "preflight" || remediator.ErrorCode(err) != remediator.EPRECONDITION || !strings.Contains(err.Error(), "NOSPACE alarm") {
		t.Fatalf("step %q: %v; want preflight to refuse while NOSPACE is armed", failed, err)
	}
}

func TestNewGuardChecksTheKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  GuardConfig
		want string // "": accepted
	}{
		{"exact keys and prefixes", GuardConfig{Cluster: "prod", Keys: []string{"a", "ab", "b/*", "c/"}}, ""},
		{"no cluster", GuardConfig{Keys: []string{"a"}}, "keyguard: the guard needs a cluster"},
		{"no keys", GuardConfig{Cluster: "prod"}, `keyguard: cluster "prod": no keys to guard`},
		{"empty key", GuardConfig{Cluster: "prod", Keys: []string{""}}, `keyguard: cluster "prod": keys[0] "": must name a key or a non-empty prefix`},
		{"everything", GuardConfig{Cluster: "prod", Keys: []string{"a", "*"}}, `keyguard: cluster "prod": keys[1] "*": must name a key or a non-empty prefix`},
		{"twice", GuardConfig{Cluster: "prod", Keys: []string{"a", "a"}}, `keyguard: cluster "prod": keys[1] "a" overlaps keys[0] "a"`},
		{"under a prefix", GuardConfig{Cluster: "prod", Keys: []string{"_sd.placement/m3db/prod/m3db", "_sd.placement/"}}, `keyguard: cluster "prod": keys[1] "_sd.placement/" overlaps keys[0] "_sd.placement/m3db/prod/m3db"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewGuard(tc.cfg, nil, nil, nil, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want || remediator.ErrorCode(err) != remediator.EINVALID):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParamsAreChecked(t *testing.T) {
	_, err := New(nil, nil).Plan(map[string]string{"keys": "a"})
	want := "params.keys: unknown parameter (known: [key])"
	if err == nil || err.Error() != want || remediator.ErrorCode(err) != remediator.EINVALID {
		t.Errorf("error %v, want %q", err, want)
	}
}
