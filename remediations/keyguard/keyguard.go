// Package keyguard is the etcd-key-restore remediation (seed 000): an application keeps a key
// in etcd it cannot start without, such as m3db's placement
// "_sd.placement/<namespace>/<cluster>/m3db", the key is deleted, and the application
// crash-loops without a word about it until someone re-creates it. The Guard watches the
// configured keys, keeps every value they take in JetStream and reports a key that
// disappears; the remediation writes the last value back in a transaction that writes only
// while the key is still absent, so that a value someone else wrote meanwhile is never
// overwritten.
package keyguard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "etcd-key-restore"

// AlertName is the alertname of the alert a reported Loss becomes, for policies to match.
const AlertName = "EtcdGuardedKeyMissing"

// Values keeps the last value of each guarded key of each cluster, as this package encodes
// it; Get of a key nothing was saved for returns an error with the code ENOTFOUND.
type Values interface {
	Put(ctx context.Context, cluster, key string, data []byte) error
	Get(ctx context.Context, cluster, key string) ([]byte, error)
}

// Saved is one value of a guarded key, as the guard saw it.
type Saved struct {
	Key            string `json:"key"`
	Value          []byte `json:"value"`
	ModRevision    int64  `json:"mod_revision"`
	CreateRevision int64  `json:"create_revision"`
	Version        int64  `json:"version"`
	// Lease is the lease the key was attached to, if any: such a key is ephemeral, and it is
	// its owner that re-creates it, not a restore.
	Lease   int64     `json:"lease,omitempty"`
	SavedAt time.Time `json:"saved_at"`
}

// SHA256 is the hex SHA-256 of the value, which the outputs show so that an operator can
// compare values too large to read.
func (s Saved) SHA256() string {
	sum := sha256.Sum256(s.Value)
	return hex.EncodeToString(sum[:])
}

// String describes the value in one line, without showing it: a value may hold secrets.
func (s Saved) String() string {
	return fmt.Sprintf("%s, sha256 %s, the value of mod revision %d, saved %s",
		remediator.HumanBytes(int64(len(s.Value))), s.SHA256()[:12], s.ModRevision, s.SavedAt.UTC().Format(time.RFC3339))
}

func save(ctx context.Context, values Values, cluster string, s Saved) error {
	data, err := json.Marshal(s)
	if err != nil {
		return remediator.Errorf(remediator.EINTERNAL, "keyguard: %q: %w", s.Key, err)
	}
	return values.Put(ctx, cluster, s.Key, data)
}

// load returns the last value saved of key, and whether there is one.
func load(ctx context.Context, values Values, cluster, key string) (Saved, bool, error) {
	data, err := values.Get(ctx, cluster, key)
	if remediator.ErrorCode(err) == remediator.ENOTFOUND {
		return Saved{}, false, nil
	}
	if err != nil {
		return Saved{}, false, err
	}
	var s Saved
	if err := json.Unmarshal(data, &s); err != nil {
		return Saved{}, false, remediator.Errorf(remediator.EINTERNAL, "keyguard: the saved value of %q: %w", key, err)
	}
	if s.Key != key {
		return Saved{}, false, remediator.Errorf(remediator.EINTERNAL, "keyguard: the value saved for %q is that of %q", key, s.Key)
	}
	return s, true, nil
}

// Remediation is etcd-key-restore.
type Remediation struct {
	clients etcdops.Getter
	values  Values
}

// New returns the remediation; it restores the values the guards saved in values.
func New(clients etcdops.Getter, values Values) *Remediation {
	return &Remediation{clients: clients, values: values}
}

// Params are the remediation's parameters.
type Params struct {
	Key string `param:"key" doc:"the guarded key to restore (none: every key named by the label \"key\" of the incident's firing alerts, as the guard's EtcdGuardedKeyMissing alerts carry it)"`
}

// Params lists the remediation's parameters.
func (r *Remediation) Params() []params.Field { return params.Fields(&Params{}) }

// The steps, by name.
const (
	StepPreflight = "preflight"
	StepRestore   = "restore"
	StepVerify    = "verify"
)

// Plan returns the steps for the given parameters.
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, r.steps)
}

func (r *Remediation) steps(s Params) ([]remediator.PlannedStep, error) {
	which := "the keys the alerts name"
	if s.Key != "" {
		which = fmt.Sprintf("%q", s.Key)
	}
	run := &run{Remediation: r, Params: s}
	return []remediator.PlannedStep{
		{Name: StepPreflight, Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: fmt.Sprintf("every member healthy; %s absent; the value the guard saved last (size, sha256, revision, time) shown for approval", which)},
		// Not destructive: the write only creates a key that is absent, so nothing that exists
		// is changed and there is nothing to back up; the saved value itself stays in
		// JetStream. High all the same: the application acts on the value at once.
		{Name: StepRestore, Risk: remediator.RiskHigh, Run: run.restore,
			Description: "write the value shown by preflight back, in a transaction that writes only while the key is still absent: a value someone else wrote meanwhile is left as it is",
			Undo:        "delete the key again (etcdctl del KEY); what the application did with the value meanwhile is not undone"},
		{Name: StepVerify, Risk: remediator.RiskReadOnly, Run: run.verify,
			Description: "the key reads back with exactly the saved value, and every member has applied the write"},
	}, nil
}

type run struct {
	*Remediation
	Params
}

// keys are the keys to restore: the parameter, or else those the incident's alerts name.
func (r *run) keys(inc remediator.Incident) []string {
	if r.Key != "" {
		return []string{r.Key}
	}
	var keys []string
	for _, a := range inc.Evidence {
		if k := a.Labels["key"]; k != "" && a.Status == remediator.AlertFiring && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// planned is a key preflight found restorable, and the value it showed for approval.
type planned struct {
	Key         string `json:"key"`
	ModRevision int64  `json:"mod_revision"`
	SHA256      string `json:"sha256"`
}

type preflightProgress struct {
	Keys []planned `json:"keys"`
}

// read returns the key as the cluster holds it now, or nil if it is absent.
func read(ctx context.Context, kv clientv3.KV, key string) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := kv.Get(ctx, key)
	return resp, etcdops.Classify(err, "read %q", key)
}

func (r *run) preflight(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	out := append(slices.Clone(v.Notes), strings.TrimSuffix(etcdops.Describe(v.Statuses), "\n"))
	res := remediator.StepResult{Before: v.Statuses}
	if err := etcdops.Safe(v.Statuses); err != nil {
		res.Output = strings.Join(out, "\n")
		return res, remediator.Errorf(remediator.EPRECONDITION, "refusing to restore: %w", err)
	}
	for _, s := range v.Statuses {
		if slices.Contains(s.Alarms, etcdserverpb.AlarmType_NOSPACE.String()) {
			res.Output = strings.Join(out, "\n")
			return res, remediator.Errorf(remediator.EPRECONDITION, "refusing to restore: member %s (%s) has a NOSPACE alarm, so etcd refuses every write (see etcd-nospace-recovery)", s.Name, s.ID)
		}
	}
	keys := r.keys(in.Incident)
	if len(keys) == 0 {
		res.Output = strings.Join(out, "\n")
		return res, remediator.Errorf(remediator.EPRECONDITION, "no key to restore: the incident's alerts carry no label \"key\" and params.key is not set")
	}
	var (
		restorable []planned
		present    []string // keys that need nothing
		refused    []string // keys that cannot be restored
	)
	for _, key := range keys {
		cur, err := read(ctx, v.Client, key)
		if err != nil {
			return res, err
		}
		last, found, err := load(ctx, r.values, in.Incident.Cluster, key)
		if err != nil {
			return res, err
		}
		switch {
		case len(cur.Kvs) > 0:
			kv := cur.Kvs[0]
			same := "a different value than the saved one"
			if !found {
				same = "no value of it was saved"
			} else if bytes.Equal(kv.Value, last.Value) {
				same = "the saved value"
			}
			present = append(present, fmt.Sprintf("%q is present (mod revision %d, %s): %s", key, kv.ModRevision, remediator.HumanBytes(int64(len(kv.Value))), same))
		case !found:
			refused = append(refused, fmt.Sprintf("%q is absent at revision %d, and no guard saved a value of it on cluster %q: it cannot be restored (is it among the cluster's guarded keys?)", key, cur.Header.Revision, in.Incident.Cluster))
		case last.Lease != 0:
			refused = append(refused, fmt.Sprintf("%q was attached to lease %x: it is ephemeral, and its owner re-creates it", key, last.Lease))
		default:
			restorable = append(restorable, planned{Key: key, ModRevision: last.ModRevision, SHA256: last.SHA256()})
			out = append(out, fmt.Sprintf("%q is absent at revision %d; will restore %s", key, cur.Header.Revision, last))
		}
	}
	out = append(out, present...)
	res.Output = strings.Join(out, "\n")
	switch {
	case len(refused) > 0:
		return res, remediator.Errorf(remediator.EPRECONDITION, "refusing to restore: %s", strings.Join(refused, "; "))
	case len(restorable) == 0:
		return res, remediator.NothingToDof("every key is present: %s", strings.Join(present, "; "))
	}
	if err := in.SaveProgress(ctx, preflightProgress{Keys: restorable}); err != nil {
		return res, err
	}
	return res, nil
}

// plannedKeys returns what preflight found restorable.
func plannedKeys(inc remediator.Incident) ([]planned, error) {
	p, _, err := remediator.Findings[preflightProgress](inc, StepPreflight)
	if err != nil {
		return nil, err
	}
	if len(p.Keys) == 0 {
		return nil, remediator.Errorf(remediator.EPRECONDITION, "preflight recorded no key to restore: not writing a value nobody was shown")
	}
	return p.Keys, nil
}

// restoreProgress is the revision each key was written at, so that a repeated attempt knows
// its own write from someone else's.
type restoreProgress struct {
	Written map[string]int64 `json:"written"`
}

func (r *run) restore(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	keys, err := plannedKeys(in.Incident)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{}, err
	}
	p, _, err := remediator.Progress[restoreProgress](in) // none yet: nothing was written
	if err != nil {
		return remediator.StepResult{}, err
	}
	if p.Written == nil {
		p.Written = map[string]int64{}
	}
	var out, conflicts []string
	result := func() remediator.StepResult { return remediator.StepResult{Output: strings.Join(out, "\n")} }
	for _, k := range keys {
		last, found, err := load(ctx, r.values, in.Incident.Cluster, k.Key)
		if err != nil {
			return result(), err
		}
		// The approval covers the value preflight showed, not a newer one the guard saved
		// since. The same value at a later revision is fine: it is the guard saving the
		// restore of an interrupted attempt, or a re-creation of the same value.
		if !found || last.SHA256() != k.SHA256 {
			now := "none"
			if found {
				now = last.String()
			}
			return result(), remediator.Errorf(remediator.EPRECONDITION,
				"the saved value of %q changed since preflight (it showed mod revision %d, sha256 %s; now: %s): not writing a value nobody was shown",
				k.Key, k.ModRevision, k.SHA256[:12], now)
		}
		tctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := cl.Txn(tctx).
			If(clientv3.Compare(clientv3.CreateRevision(k.Key), "=", 0)).
			Then(clientv3.OpPut(k.Key, string(last.Value))).
			Else(clientv3.OpGet(k.Key)).
			Commit()
		cancel()
		if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
			return result(), remediator.Errorf(remediator.EPRECONDITION, "restore %q: etcd is out of space and refuses writes (see etcd-nospace-recovery): %w", k.Key, err)
		}
		if err != nil {
			return result(), etcdops.Classify(err, "restore %q", k.Key)
		}
		if resp.Succeeded {
			rev := resp.Header.Revision
			p.Written[k.Key] = rev
			if err := in.SaveProgress(ctx, p); err != nil {
				return result(), err
			}
			out = append(out, fmt.Sprintf("restored %q at revision %d: %s; to undo: etcdctl del %q, only while its mod revision is still %d",
				k.Key, rev, last, k.Key, rev))
			continue
		}
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			return result(), remediator.Errorf(remediator.EINTERNAL, "restore %q: the key exists, and reads as absent", k.Key)
		}
		kv := kvs[0]
		switch {
		case p.Written[k.Key] == kv.ModRevision:
			out = append(out, fmt.Sprintf("%q was restored by an earlier attempt, at revision %d", k.Key, kv.ModRevision))
		case bytes.Equal(kv.Value, last.Value):
			out = append(out, fmt.Sprintf("%q came back with the saved value before the restore (mod revision %d): left as it is", k.Key, kv.ModRevision))
		default:
			sum := sha256.Sum256(kv.Value)
			conflicts = append(conflicts, fmt.Sprintf("%q came back before the restore with another value (mod revision %d, %s, sha256 %s): left as it is",
				k.Key, kv.ModRevision, remediator.HumanBytes(int64(len(kv.Value))), hex.EncodeToString(sum[:])[:12]))
		}
	}
	if len(conflicts) > 0 {
		return result(), remediator.Errorf(remediator.EPRECONDITION,
			"not overwriting what someone else wrote: %s. Compare it with the saved value before deciding which one the application needs",
			strings.Join(conflicts, "; "))
	}
	return result(), nil
}

// settleTimeout bounds the wait for every member to apply the restore.
const settleTimeout = 10 * time.Second

func (r *run) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	keys, err := plannedKeys(in.Incident)
	if err != nil {
		return remediator.StepResult{}, err
	}
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	var (
		out   []string
		wrong []string
		need  int64 // the revision every member must have applied
	)
	for _, k := range keys {
		cur, err := read(ctx, v.Client, k.Key)
		if err != nil {
			return remediator.StepResult{}, err
		}
		if len(cur.Kvs) == 0 {
			wrong = append(wrong, fmt.Sprintf("%q is absent at revision %d", k.Key, cur.Header.Revision))
			continue
		}
		kv := cur.Kvs[0]
		sum := sha256.Sum256(kv.Value)
		if got := hex.EncodeToString(sum[:]); got != k.SHA256 {
			wrong = append(wrong, fmt.Sprintf("%q holds another value than the saved one (mod revision %d, sha256 %s, want %s)", k.Key, kv.ModRevision, got[:12], k.SHA256[:12]))
			continue
		}
		need = max(need, kv.ModRevision)
		out = append(out, fmt.Sprintf("%q reads back with the saved value (%s, sha256 %s) at mod revision %d",
			k.Key, remediator.HumanBytes(int64(len(kv.Value))), k.SHA256[:12], kv.ModRevision))
	}
	if len(wrong) > 0 {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, remediator.Errorf(remediator.EPRECONDITION, "the restore did not hold: %s", strings.Join(wrong, "; "))
	}
	statuses, err := settled(ctx, v, need)
	res := remediator.StepResult{Output: strings.Join(append(out, strings.TrimSuffix(etcdops.Describe(statuses), "\n")), "\n"), After: statuses}
	if err != nil {
		return res, err
	}
	return res, etcdops.Safe(statuses)
}

// settled waits until every member is at revision need or later: the write is on each of
// them, not only on a quorum.
func settled(ctx context.Context, v etcdops.View, need int64) ([]remediator.MemberStatus, error) {
	var (
		statuses []remediator.MemberStatus
		behind   []string
	)
	err := poll.Looks(ctx, settleTimeout, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		var err error
		if statuses, err = v.Status(ctx); err != nil {
			return false, poll.Stop(err)
		}
		behind = nil
		for _, s := range statuses {
			if s.Error == "" && s.Revision < need {
				behind = append(behind, fmt.Sprintf("member %s (%s) is at revision %d", s.Name, s.ID, s.Revision))
			}
		}
		return len(behind) == 0, nil
	})
	switch {
	case err == nil:
		return statuses, nil
	case ctx.Err() != nil:
		return statuses, etcdops.Classify(ctx.Err(), "wait for the members to apply the restore")
	case errors.Is(err, poll.ErrTimeout):
		return statuses, remediator.Errorf(remediator.EUNAVAILABLE, "after %s, %s, behind the restore's %d", settleTimeout, strings.Join(behind, ", "), need)
	}
	return statuses, err
}
