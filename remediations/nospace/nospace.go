// Package nospace is the etcd-nospace-recovery remediation (seed 004): an etcd over its space
// quota raises NOSPACE and turns read-only. Compaction alone does not help, because the quota
// is checked against the physical size of the backend, so the runbook is: check every member,
// snapshot, compact, defragment every member one at a time with the leader last, disarm the
// alarm only where the member is now well under its quota, and prove that writes work again.
package nospace

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "etcd-nospace-recovery"

// Clients gives the etcd client of a cluster.
type Clients interface {
	Get(cluster string) (*clientv3.Client, error)
}

// Remediation is etcd-nospace-recovery.
type Remediation struct {
	clients   Clients
	backupDir string
}

// New returns the remediation; snapshots go under backupDir/<cluster>/<incident>.db.
func New(clients Clients, backupDir string) *Remediation {
	return &Remediation{clients: clients, backupDir: backupDir}
}

// settings are the remediation's parameters.
type settings struct {
	probePrefix   string
	minQuotaRatio float64
	disarmBelow   float64
	quota         int64
	pause         time.Duration
	compactWait   time.Duration
	defragTimeout time.Duration
	healthTimeout time.Duration
}

func parse(p map[string]string) (settings, error) {
	r := params.New(p)
	s := settings{
		probePrefix:   r.String("probe_prefix", "remediator/probe"),
		minQuotaRatio: r.Float("min_quota_ratio", 0.95, 0, 1),
		disarmBelow:   r.Float("disarm_below_ratio", 0.8, 0, 1),
		quota:         r.Bytes("quota_bytes", 0),
		pause:         r.Duration("pause_between_members", 0, 0),
		compactWait:   r.Duration("compact_settle_timeout", 2*time.Minute, 0),
		defragTimeout: r.Duration("defrag_timeout", 5*time.Minute, time.Second),
		healthTimeout: r.Duration("health_timeout", 30*time.Second, time.Second),
	}
	return s, r.Err()
}

// Plan returns the steps for the given parameters:
//
//	probe_prefix            key prefix of the verification write (remediator/probe)
//	min_quota_ratio         act without a NOSPACE alarm only where a member's db size /
//	                        quota is at least this (0.95); with neither, there is nothing to do
//	disarm_below_ratio      disarm only where db size / quota is below this (0.8)
//	quota_bytes             the members' --quota-backend-bytes, for etcd before 3.6,
//	                        which does not report it (none: such members are not disarmed,
//	                        and without an alarm how full they are is unknown)
//	compact_settle_timeout  longest to wait for every member to finish compacting (2m)
//	pause_between_members   wait between two members' defragmentation (0s)
//	defrag_timeout          longest one member's defragmentation may take (5m)
//	health_timeout          longest a member may take to be healthy after it (30s)
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	s, err := parse(p)
	if err != nil {
		return nil, err
	}
	run := &run{Remediation: r, settings: s}
	return []remediator.PlannedStep{
		{Name: "preflight", Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: fmt.Sprintf("status of every member (db size, quota, leader, revision, alarms); stop if one is unreachable or CORRUPT, and find nothing to do unless one has a NOSPACE alarm or a db at %.4g%% of its quota or more", s.minQuotaRatio*100)},
		{Name: "snapshot", Risk: remediator.RiskReadOnly, Run: run.snapshot,
			Description: "save a snapshot of the keyspace under data_dir/backups before changing anything"},
		{Name: "compact", Risk: remediator.RiskDestructive, Run: run.compact,
			Description: "compact the keyspace to the revision of the snapshot, physically, and wait for every member to finish; older revisions are gone"},
		{Name: "defragment", Risk: remediator.RiskHigh, Run: run.defragment,
			Description: "defragment one member at a time, followers first and the leader last, each healthy before the next"},
		{Name: "disarm", Risk: remediator.RiskLow, Run: run.disarm,
			Description: fmt.Sprintf("disarm NOSPACE where the member's db is now below %.0f%% of its quota", s.disarmBelow*100)},
		{Name: "verify", Risk: remediator.RiskLow, Run: run.verify,
			Description: fmt.Sprintf("no alarms remain, and a write under %s succeeds and is deleted", s.probePrefix)},
	}, nil
}

type run struct {
	*Remediation
	settings
}

func (r *run) preflight(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	out := strings.Join(append(v.Notes, etcdops.Describe(v.Statuses)), "\n")
	res := remediator.StepResult{Output: out, Before: v.Statuses}
	if err := etcdops.Safe(v.Statuses); err != nil {
		return res, remediator.Errorf(remediator.EPRECONDITION, "refusing to remediate: %w", err)
	}
	act, why := r.fullness(v.Statuses)
	res.Output = why + "\n" + res.Output
	if !act {
		return res, remediator.NothingToDof("%s", why)
	}
	return res, nil
}

// fullness says whether the members' space needs the recovery, and why or why not: a NOSPACE
// alarm on any member, or a member whose db has reached min_quota_ratio of its quota. Without
// either, compacting away the history and blocking every member for a defragmentation would
// answer a problem that is not there.
func (s settings) fullness(statuses []remediator.MemberStatus) (act bool, why string) {
	var (
		armed, unknown []string
		fullest        remediator.MemberStatus
		fullestQuota   int64
		ratio          = -1.0
	)
	for _, st := range statuses {
		if slices.Contains(st.Alarms, pb.AlarmType_NOSPACE.String()) {
			armed = append(armed, fmt.Sprintf("%s (%s)", st.Name, st.ID))
		}
		quota := cmp.Or(st.Quota, s.quota)
		if quota <= 0 {
			unknown = append(unknown, fmt.Sprintf("%s (etcd %s)", st.Name, st.Version))
			continue
		}
		if r := float64(st.DBSize) / float64(quota); r > ratio {
			fullest, fullestQuota, ratio = st, quota, r
		}
	}
	if len(armed) > 0 {
		return true, "NOSPACE is armed on " + strings.Join(armed, ", ")
	}
	if ratio < 0 {
		return false, fmt.Sprintf("no member has a NOSPACE alarm, and no member reports its quota (%s; etcd reports it from 3.6 on), so how full they are is unknown: set params.quota_bytes to the members' --quota-backend-bytes",
			strings.Join(unknown, ", "))
	}
	// Whole percents rounded down, so that a member just under the ratio does not read as at it.
	at := fmt.Sprintf("%s, is at %d%% of its %s quota (acts from %.4g%%)",
		fullest.Name, fullest.DBSize*100/fullestQuota, remediator.HumanBytes(fullestQuota), s.minQuotaRatio*100)
	if ratio >= s.minQuotaRatio {
		return true, "no member has a NOSPACE alarm yet, but the fullest, " + at
	}
	why = "no member has a NOSPACE alarm, and the fullest, " + at
	if len(unknown) > 0 {
		why += fmt.Sprintf("; %s report no quota (set params.quota_bytes to judge them too)", strings.Join(unknown, ", "))
	}
	return false, why
}

func (r *run) snapshot(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	path := filepath.Join(r.backupDir, in.Incident.Cluster, in.Incident.ID+".db")
	var saved etcdops.SnapshotInfo
	if json.Unmarshal(in.Progress, &saved) == nil && saved.Path == path {
		if fi, err := os.Stat(path); err == nil && fi.Size() == saved.Size {
			return remediator.StepResult{Output: describeSnapshot(saved) + " (by an earlier attempt)"}, nil
		}
	}
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	var largest, revision int64
	for _, s := range v.Statuses {
		largest = max(largest, s.DBSize)
		revision = max(revision, s.Revision)
	}
	need := largest + largest/10 + 1<<20
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	info, err := etcdops.Snapshot(ctx, v.Client, path, need)
	if err != nil {
		return remediator.StepResult{}, err
	}
	info.Revision = revision
	if err := in.SaveProgress(ctx, info); err != nil {
		return remediator.StepResult{}, err
	}
	return remediator.StepResult{Output: describeSnapshot(info)}, nil
}

func describeSnapshot(s etcdops.SnapshotInfo) string {
	return fmt.Sprintf("saved %s (cluster at revision %d, etcd storage %s) to %s, sha256 %s",
		remediator.HumanBytes(s.Size), s.Revision, s.Version, s.Path, s.SHA256)
}

type compactProgress struct {
	Revision int64 `json:"revision"`
}

func (r *run) compact(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	// The revision is the snapshot's, so that the snapshot holds every revision the
	// compaction removes; a repeated attempt compacts to the same revision.
	var snap etcdops.SnapshotInfo
	in.Incident.StepProgress("snapshot", &snap)
	if snap.Revision == 0 {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no snapshot revision recorded: not compacting without a snapshot")
	}
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if err := etcdops.Safe(v.Statuses); err != nil {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "not compacting: %w", err)
	}
	if err := in.SaveProgress(ctx, compactProgress{Revision: snap.Revision}); err != nil {
		return remediator.StepResult{}, err
	}
	already, err := etcdops.Compact(ctx, v.Client, snap.Revision)
	if err != nil {
		return remediator.StepResult{}, err
	}
	out := fmt.Sprintf("compacted to revision %d, the snapshot's; it holds the older revisions", snap.Revision)
	if already {
		out = fmt.Sprintf("the keyspace was already compacted at or after revision %d", snap.Revision)
	}
	settled, err := etcdops.WaitCompacted(ctx, v.Client, v.Members, r.compactWait)
	return remediator.StepResult{Output: out + "\n" + settled}, err
}

type defragProgress struct {
	Done []etcdops.Defragmented `json:"done"`
}

func (r *run) defragment(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, false)
	if err != nil {
		return remediator.StepResult{}, err
	}
	var p defragProgress
	_ = json.Unmarshal(in.Progress, &p) // no progress yet: start from the first member
	done, err := etcdops.Defragment(ctx, v.Client, v.Members, etcdops.DefragOptions{
		Timeout:       r.defragTimeout,
		HealthTimeout: r.healthTimeout,
		Pause:         r.pause,
		Done:          p.Done,
		Fence:         in.Fence,
		OnDone: func(ctx context.Context, done []etcdops.Defragmented) error {
			return in.SaveProgress(ctx, defragProgress{Done: done})
		},
	})
	var b strings.Builder
	for _, d := range done {
		fmt.Fprintln(&b, d)
	}
	return remediator.StepResult{Output: b.String()}, err
}

func (r *run) disarm(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if err := etcdops.Safe(v.Statuses); err != nil {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "not disarming without every member's size: %w", err)
	}
	d, err := etcdops.DisarmNOSPACE(ctx, v.Client, v.Statuses, etcdops.DisarmOptions{Below: r.disarmBelow, Quota: r.quota})
	out := d.Lines()
	if len(out) == 0 && len(d.Refused) == 0 {
		out = append(out, "no NOSPACE alarm was armed")
	}
	res := remediator.StepResult{Output: strings.Join(out, "\n")}
	if err != nil {
		return res, err
	}
	return res, d.RefusedError()
}

func (r *run) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, false)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl := v.Client
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	alarms, err := cl.AlarmList(ctx)
	if err != nil {
		return remediator.StepResult{}, etcdops.Classify(err, "alarm list")
	}
	if len(alarms.Alarms) > 0 {
		var armed []string
		for _, a := range alarms.Alarms {
			armed = append(armed, fmt.Sprintf("%s on %x", a.Alarm, a.MemberID))
		}
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "alarms are still armed: %s", strings.Join(armed, ", "))
	}
	key := strings.TrimSuffix(r.probePrefix, "/") + "/" + in.Incident.ID
	value := time.Now().UTC().Format(time.RFC3339Nano)
	put, err := cl.Put(ctx, key, value)
	if err != nil {
		if errors.Is(rpctypes.Error(err), rpctypes.ErrNoSpace) {
			return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "the probe write to %s was refused: %w", key, err)
		}
		return remediator.StepResult{}, etcdops.Classify(err, "probe write to %s", key)
	}
	got, err := cl.Get(ctx, key)
	if err != nil {
		return remediator.StepResult{}, etcdops.Classify(err, "probe read of %s", key)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != value {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "the probe key %s did not read back what was written", key)
	}
	if _, err := cl.Delete(ctx, key); err != nil {
		return remediator.StepResult{}, etcdops.Classify(err, "probe delete of %s", key)
	}
	statuses, err := etcdops.Status(ctx, cl, v.Members)
	if err != nil {
		return remediator.StepResult{}, err
	}
	out := fmt.Sprintf("no alarms; wrote %s at revision %d, read it back and deleted it\n%s", key, put.Header.Revision, etcdops.Describe(statuses))
	cause, followUps := findings(in.Incident.Before, statuses)
	return remediator.StepResult{Output: out, After: statuses, RootCause: cause, FollowUps: followUps}, etcdops.Safe(statuses)
}

// liveDataShare is the share of the quota that live data may fill before the quota itself is
// too small: compaction and defragmentation cannot give back what is live.
const liveDataShare = 0.8

// findings says what filled the database, from the largest member before and after: old
// revisions and free pages that the recovery gave back, or live data that it could not.
func findings(before, after []remediator.MemberStatus) (string, []string) {
	largest := func(ss []remediator.MemberStatus) (m remediator.MemberStatus) {
		for _, s := range ss {
			if s.Error == "" && s.DBSize > m.DBSize {
				m = s
			}
		}
		return m
	}
	// The member that was fullest, before and after: one member's figures, not two.
	b := largest(before)
	i := slices.IndexFunc(after, func(s remediator.MemberStatus) bool { return s.ID == b.ID && s.Error == "" })
	if b.DBSize == 0 || i < 0 || after[i].Quota == 0 {
		return "", nil
	}
	a := after[i]
	autoCompaction := "turn on auto-compaction on every member (--auto-compaction-mode=periodic --auto-compaction-retention=1h, or revision mode) so that old revisions do not pile up again"
	if float64(a.DBSizeInUse) > liveDataShare*float64(a.Quota) {
		return fmt.Sprintf("Live data fills the quota: after compaction and defragmentation %s of the %s quota is still in use on %s (%s before). "+
				"The recovery gave back what was history, not what is live.",
				remediator.HumanBytes(a.DBSizeInUse), remediator.HumanBytes(a.Quota), a.Name, remediator.HumanBytes(b.DBSize)),
			[]string{
				fmt.Sprintf("raise --quota-backend-bytes above %s on every member (etcd suggests at most 8 GiB), or find what writes so much (etcdctl get --prefix --keys-only / | cut -d/ -f1-3 | sort | uniq -c)", remediator.HumanBytes(a.Quota)),
				autoCompaction,
			}
	}
	return fmt.Sprintf("History, not live data, filled the database: %s reached %s of its %s quota with only %s in use after compaction and defragmentation. "+
			"Old revisions and the free pages they left were never compacted away.",
			b.Name, remediator.HumanBytes(b.DBSize), remediator.HumanBytes(b.Quota), remediator.HumanBytes(a.DBSizeInUse)),
		[]string{autoCompaction, "defragment when fragmentation grows (remediator's etcd-fragmented policy answers etcdDatabaseHighFragmentationRatio)"}
}
