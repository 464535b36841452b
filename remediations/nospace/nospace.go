// Package nospace is the etcd-nospace-recovery remediation (seed 004): an etcd over its space
// quota raises NOSPACE and turns read-only. Compaction alone does not help, because the quota
// is checked against the physical size of the backend, so the runbook is: check every member,
// snapshot, compact, defragment every member one at a time with the leader last, disarm the
// alarm only where the member is now well under its quota, and prove that writes work again.
package nospace

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "etcd-nospace-recovery"

// Remediation is etcd-nospace-recovery.
type Remediation struct {
	clients   etcdops.Getter
	backupDir string
}

// New returns the remediation; snapshots go under backupDir/<cluster>/<incident>.db.
func New(clients etcdops.Getter, backupDir string) *Remediation {
	return &Remediation{clients: clients, backupDir: backupDir}
}

// Params are the remediation's parameters.
type Params struct {
	ProbePrefix   string        `param:"probe_prefix" default:"remediator/probe" doc:"key prefix of the verification write"`
	MinQuotaRatio float64       `param:"min_quota_ratio" default:"0.95" range:"(0,1]" doc:"without a NOSPACE alarm, act only where a member's db size is at least this share of its quota; with neither, there is nothing to do"`
	DisarmBelow   float64       `param:"disarm_below_ratio" default:"0.8" range:"(0,1]" doc:"disarm NOSPACE only where a member's db size is now below this share of its quota"`
	Quota         params.Bytes  `param:"quota_bytes" doc:"the members' --quota-backend-bytes, for a member that tells it neither in its status (etcd before 3.6) nor at /metrics (none: such members are not disarmed, and without an alarm how full they are is unknown)"`
	CompactWait   time.Duration `param:"compact_settle_timeout" default:"2m" doc:"longest to wait for every member to finish compacting"`
	etcdops.DefragParams
}

// Params lists the remediation's parameters.
func (r *Remediation) Params() []params.Field { return params.Fields(&Params{}) }

// The steps, by name: later steps read what earlier ones saved.
const (
	StepPreflight  = "preflight"
	StepSnapshot   = "snapshot"
	StepCompact    = "compact"
	StepDefragment = "defragment"
	StepDisarm     = "disarm"
	StepVerify     = "verify"
)

// Plan returns the steps for the given parameters.
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, r.steps)
}

func (r *Remediation) steps(s Params) ([]remediator.PlannedStep, error) {
	run := &run{Remediation: r, Params: s}
	return []remediator.PlannedStep{
		{Name: StepPreflight, Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: fmt.Sprintf("status of every member (db size, quota, leader, revision, alarms); stop if one is unreachable or CORRUPT, and find nothing to do unless one has a NOSPACE alarm or a db at %.4g%% of its quota or more", s.MinQuotaRatio*100)},
		{Name: StepSnapshot, Risk: remediator.RiskReadOnly, Run: etcdops.SnapshotStep(r.backupDir, run.snapshotSource),
			Description: "save a snapshot of the keyspace under data_dir/backups before changing anything"},
		{Name: StepCompact, Risk: remediator.RiskDestructive, Run: run.compact,
			Description: "compact the keyspace to the revision of the snapshot, physically, and wait for every member to finish; older revisions are gone",
			Undo:        "irreversible in place: the older revisions are gone; the snapshot step snapshot took (data_dir/backups/<cluster>/<incident>.db) still holds them, and etcdutl snapshot restore rebuilds a cluster from it, without the writes since"},
		{Name: StepDefragment, Risk: remediator.RiskHigh, Run: run.defragment,
			Description: "defragment one member at a time, followers first and the leader last, each healthy before the next",
			Undo:        "nothing to undo: defragmentation changes no key, it only blocks each member while it runs"},
		{Name: StepDisarm, Risk: remediator.RiskLow, Run: run.disarm,
			Description: fmt.Sprintf("disarm NOSPACE where the member's db is now below %.0f%% of its quota", s.DisarmBelow*100)},
		{Name: StepVerify, Risk: remediator.RiskLow, Run: run.verify,
			Description: fmt.Sprintf("no alarms remain, and a write under %s succeeds, reads back on every member and is deleted", s.ProbePrefix)},
	}, nil
}

type run struct {
	*Remediation
	Params
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
func (s Params) fullness(statuses []remediator.MemberStatus) (act bool, why string) {
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
		quota := cmp.Or(st.Quota, int64(s.Quota))
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
		return false, fmt.Sprintf("no member has a NOSPACE alarm, and no member's quota is known (%s tell it neither in their status nor at /metrics), so how full they are is unknown: set params.quota_bytes to the members' --quota-backend-bytes",
			strings.Join(unknown, ", "))
	}
	// Whole percents rounded down, so that a member just under the ratio does not read as at it.
	at := fmt.Sprintf("%s, is at %d%% of its %s quota (acts from %.4g%%)",
		fullest.Name, fullest.DBSize*100/fullestQuota, remediator.HumanBytes(fullestQuota), s.MinQuotaRatio*100)
	if ratio >= s.MinQuotaRatio {
		return true, "no member has a NOSPACE alarm yet, but the fullest, " + at
	}
	why = "no member has a NOSPACE alarm, and the fullest, " + at
	if len(unknown) > 0 {
		why += fmt.Sprintf("; the quota of %s is unknown (set params.quota_bytes to judge them too)", strings.Join(unknown, ", "))
	}
	return false, why
}

func (r *run) snapshotSource(ctx context.Context, in remediator.StepInput) (etcdops.SnapshotSource, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	return etcdops.SnapshotSource{Maintenance: v.Client, Statuses: v.Statuses}, err
}

type compactProgress struct {
	Revision int64 `json:"revision"`
}

func (r *run) compact(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	// The revision is the snapshot's, so that the snapshot holds every revision the
	// compaction removes; a repeated attempt compacts to the same revision.
	snap, _, err := remediator.Findings[etcdops.SnapshotInfo](in.Incident, StepSnapshot)
	if err != nil {
		return remediator.StepResult{}, err
	}
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
	already, settled, err := etcdops.CompactAndWait(ctx, v, snap.Revision, r.CompactWait)
	if err != nil {
		return remediator.StepResult{Output: settled}, err
	}
	out := fmt.Sprintf("compacted to revision %d, the snapshot's; it holds the older revisions", snap.Revision)
	if already {
		out = fmt.Sprintf("the keyspace was already compacted at or after revision %d", snap.Revision)
	}
	return remediator.StepResult{Output: out + "\n" + settled}, nil
}

func (r *run) defragment(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, false)
	if err != nil {
		return remediator.StepResult{}, err
	}
	done, _, err := etcdops.Defragment(ctx, in, v.Client, v.Members, etcdops.DefragOptions{DefragParams: r.DefragParams})
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
	d, err := etcdops.DisarmNOSPACE(ctx, v.Client, v.Statuses, etcdops.DisarmOptions{Below: r.DisarmBelow, Quota: int64(r.Quota)})
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
	statuses, err := v.Status(ctx)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if err := etcdops.NoAlarms(statuses); err != nil {
		return remediator.StepResult{After: statuses}, err
	}
	probed, err := etcdops.Probe(ctx, cl, cl, "the client", v.Members, etcdops.ProbeKey(r.ProbePrefix, in.Incident.ID))
	if err != nil {
		return remediator.StepResult{After: statuses}, err
	}
	out := fmt.Sprintf("no alarms; %s, and deleted it\n%s", probed, etcdops.Describe(statuses))
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
