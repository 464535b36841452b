// Package snapshotmissing is the etcd-snapshot-missing-recovery remediation (seed 003): a
// member panics on start with "failed to recover v3 backend from snapshot" / "failed to find
// database snapshot file" because its raft log's latest snapshot is newer than its backend
// (member/snap/db), as after an unclean stop, often once it had hit its quota. The runbook:
// stop the member, back up its data dir, raise --quota-backend-bytes if the quota was the
// cause, remove the raft snapshot files (member/snap/*.snap) and start it; if it still fails
// and it is the cluster's only member, rebuild it from its own backend with snapshot restore
// (etcdutl, or etcdctl on etcd 3.4, as the node's agent picks from the manifest's image tag);
// then disarm NOSPACE, defragment, and prove that writes work.
//
// Removing the .snap files is what cures etcd before 3.7, which takes the raft snapshot from
// the newest of them and, with none, replays its WAL from the start onto the backend (as long
// as no WAL file was purged). etcd 3.7 rebuilds the snapshot from the WAL's own records and
// reads no .snap file, so there only the restore cures the panic. A member that hit its quota
// comes back with its NOSPACE alarm, which etcd 3.4's health check reports as a bare
// {"health":"false"}: its status names the alarm.
// A member of a cluster of several is never restored from its own backend: that would make it
// a cluster of its own; it is replaced (etcd-member-replace) instead.
package snapshotmissing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "etcd-snapshot-missing-recovery"

const (
	// defaultQuota is etcd's --quota-backend-bytes when the flag is absent or 0.
	defaultQuota = 2 << 30
	// fullRatio is how much of its quota a backend fills before the quota counts as the
	// cause, and above which a NOSPACE alarm is not disarmed: etcd raises NOSPACE when a write
	// would pass the quota, so a backend this close to it has hit it or soon will.
	fullRatio = 0.9
	// probePrefix is where verify writes its probe key.
	probePrefix = "remediator/probe/"
	// replaceRemediation is what a member of a cluster of several needs when starting it
	// again did not help.
	replaceRemediation = "etcd-member-replace"
)

// Nodes reaches the agent of the node an etcd member runs on.
type Nodes interface {
	Do(ctx context.Context, cluster, member string, act remediator.NodeAction) (remediator.NodeResult, error)
	// Node names the node the member runs on.
	Node(cluster, member string) string
}

// Remediation is etcd-snapshot-missing-recovery.
type Remediation struct {
	clients etcdops.Getter
	nodes   Nodes
}

// New returns the remediation.
func New(clients etcdops.Getter, nodes Nodes) *Remediation {
	return &Remediation{clients: clients, nodes: nodes}
}

// Params are the remediation's parameters. The quota counts as the cause when the member's
// backend file fills 90% of it or more.
type Params struct {
	Member        string        `param:"member" doc:"the member that fails to start (none: the one the incident's alerts name with a member label, or by its node with a node or pod label)"`
	Quota         params.Bytes  `param:"quota_bytes" doc:"the new --quota-backend-bytes when the quota was the cause (none: double the current one, or etcd's 2 GiB default, up to max_quota_bytes)"`
	MaxQuota      params.Bytes  `param:"max_quota_bytes" default:"8589934592" doc:"the largest quota the remediation sets (8 GiB, etcd's recommended maximum)"`
	StopTimeout   time.Duration `param:"stop_timeout" default:"1m" min:"1s" doc:"longest etcd may take to stop serving once stopped"`
	HealthTimeout time.Duration `param:"health_timeout" default:"2m" min:"1s" doc:"longest a started member may take to serve"`
	DataTimeout   time.Duration `param:"data_timeout" default:"10m" min:"1s" doc:"longest a copy, move or restore of the data dir may take"`
	DefragTimeout time.Duration `param:"defrag_timeout" default:"5m" min:"1s" doc:"longest the member's defragmentation may take"`
}

// Params lists the remediation's parameters.
func (r *Remediation) Params() []params.Field { return params.Fields(&Params{}) }

// The steps, by name: later steps read what earlier ones saved.
const (
	StepPreflight       = "preflight"
	StepStop            = "stop"
	StepBackup          = "backup"
	StepRaiseQuota      = "raise-quota"
	StepRemoveSnapFiles = "remove-snap-files"
	StepStart           = "start"
	StepRestore         = "restore"
	StepDisarm          = "disarm"
	StepDefragment      = "defragment"
	StepVerify          = "verify"
)

// Plan returns the steps for the given parameters.
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, r.steps)
}

func (r *Remediation) steps(s Params) ([]remediator.PlannedStep, error) {
	if s.Quota > s.MaxQuota {
		return nil, params.Invalid(fmt.Errorf("params.quota_bytes: %d is above params.max_quota_bytes (%d)", s.Quota, s.MaxQuota))
	}
	run := &run{Remediation: r, Params: s}
	return []remediator.PlannedStep{
		{Name: StepPreflight, Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: "find the failing member and its node; its flags, data dir, backend size against its quota and raft snapshot files; the other members must all be healthy"},
		{Name: StepStop, Risk: remediator.RiskLow, Run: run.stop,
			Description: "stop the member (its manifest out of the manifests folder), only if it still does not answer; starting it again undoes this"},
		{Name: StepBackup, Risk: remediator.RiskLow, Run: run.backup,
			Description: "copy the member's data dir into the node's backup dir, before anything in it changes"},
		{Name: StepRaiseQuota, Risk: remediator.RiskLow, Run: run.raiseQuota,
			Description: "raise --quota-backend-bytes in the member's manifest, only if a full backend was the cause (the manifest is backed up)"},
		{Name: StepRemoveSnapFiles, Risk: remediator.RiskDestructive, Run: run.removeSnapFiles,
			Description: "delete the member's raft snapshot files (member/snap/*.snap), so that etcd before 3.7 replays its WAL; only the backup has them afterwards",
			Undo:        "with the member stopped, copy member/snap/*.snap back from the data dir copy step backup took into the node's backup dir"},
		{Name: StepStart, Risk: remediator.RiskHigh, Run: run.start,
			Description: "start the member and wait for it to serve; it rejoins with the data it rebuilt. A member that still fails is left to the restore step",
			Undo:        "stop the member again (its manifest out of the manifests folder); the data it rebuilt on start stays"},
		{Name: StepRestore, Risk: remediator.RiskDestructive, Run: run.restore,
			Description: "only if the member still fails, and only for a one-member cluster: rebuild its data dir from the backed-up member/snap/db (etcdutl snapshot restore, or etcdctl's on etcd 3.4); writes the backend had not stored yet are lost. A member of a cluster of several is refused: replace it (" + replaceRemediation + ")",
			Undo:        "irreversible for the writes only the WAL held; the data dir as it was is moved aside on the node, and step backup's copy is in the node's backup dir: stop the member and put either back"},
		{Name: StepDisarm, Risk: remediator.RiskLow, Run: run.disarm,
			Description: fmt.Sprintf("disarm the member's NOSPACE alarm if its backend is below %.0f%% of its quota", fullRatio*100)},
		{Name: StepDefragment, Risk: remediator.RiskHigh, Run: run.defragment,
			Description: "defragment the member, which blocks it while it runs, with every member healthy first",
			Undo:        "nothing to undo: defragmentation changes no key, it only blocks the member while it runs"},
		{Name: StepVerify, Risk: remediator.RiskLow, Run: run.verify,
			Description: "no alarms remain, every member is healthy, and a write under " + probePrefix + " succeeds, reads back on every member and is deleted"},
	}, nil
}

type run struct {
	*Remediation
	Params
}

// findings is what preflight found, saved as its progress for the later steps.
type findings struct {
	Member string `json:"member"`
	// Endpoint is where the member serves clients; Members is how many the cluster has.
	Endpoint   string `json:"endpoint"`
	Members    int    `json:"members"`
	DataDir    string `json:"data_dir"`
	DBSize     int64  `json:"db_size"`
	Quota      int64  `json:"quota"`
	QuotaCause bool   `json:"quota_cause"`
	NewQuota   int64  `json:"new_quota,omitempty"`
}

// quotaNow is the member's quota once raise-quota has run.
func (f findings) quotaNow() int64 {
	if f.QuotaCause {
		return f.NewQuota
	}
	return f.Quota
}

func found(in remediator.StepInput) (findings, error) {
	f, _, err := remediator.Findings[findings](in.Incident, StepPreflight)
	if err != nil {
		return f, err
	}
	if f.Member == "" {
		return f, remediator.Errorf(remediator.EPRECONDITION, "preflight recorded no findings: not acting on an unchecked member")
	}
	return f, nil
}

// ask sends an etcd action to the agent of the member's node.
func (r *run) ask(ctx context.Context, in remediator.StepInput, member string, kind remediator.ActionKind, timeout time.Duration, backup string) (remediator.NodeResult, error) {
	act := remediator.NodeAction{Kind: kind, Component: remediator.ComponentEtcd, Incident: in.Incident.ID,
		Timeout: remediator.Duration(timeout), Backup: backup}
	res, err := r.nodes.Do(ctx, in.Incident.Cluster, member, act)
	if err != nil {
		return res, remediator.Errorf(remediator.ErrorCode(err), "%s of member %s on node %s: %w", kind, member, r.nodes.Node(in.Incident.Cluster, member), err)
	}
	return res, nil
}

func (r *run) preflight(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{}, err
	}
	// A one-member cluster whose member fails answers nothing: that is no error here.
	members, notes, err := etcdops.Members(ctx, cl, cl.Endpoints())
	if err != nil && remediator.ErrorCode(err) != remediator.EUNAVAILABLE {
		return remediator.StepResult{}, err
	}
	answered := err == nil
	var known []string
	for _, m := range members {
		known = append(known, m.Name)
	}
	member, err := r.memberOf(in, known)
	if err != nil {
		return remediator.StepResult{}, err
	}
	node := r.nodes.Node(in.Incident.Cluster, member)
	insp, err := r.ask(ctx, in, member, remediator.ActionInspect, 0, "")
	if err != nil {
		return remediator.StepResult{}, err
	}
	if name := insp.Flags["name"]; name != member {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION,
			"node %s runs the etcd member %q, not %s: fix the cluster's nodes mapping (clusters[].nodes) or params.member", node, name, member)
	}
	if !insp.HasData {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION,
			"member %s on node %s has no data in %s: there is nothing to recover; a member without data is replaced (%s)", member, node, insp.DataDir, replaceRemediation)
	}
	f := findings{Member: member, DataDir: insp.DataDir, DBSize: insp.DBSize}
	state := "configured to run, and not serving"
	if !insp.Running {
		state = "stopped (its manifest is out of the manifests folder)"
	}
	out := append(notes, fmt.Sprintf("member %s on node %s: %s; data dir %s; raft snapshot files: %s",
		member, node, state, insp.DataDir, cmp.Or(strings.Join(insp.SnapFiles, ", "), "none")))

	var res remediator.StepResult
	if answered {
		statuses, err := etcdops.Status(ctx, cl, members, nil) // the quota that matters here is the manifest's
		res.Before = statuses
		if err != nil {
			return res, err
		}
		i := slices.IndexFunc(members, func(m etcdops.Member) bool { return m.Name == member })
		if i < 0 {
			return res, remediator.Errorf(remediator.EPRECONDITION,
				"%s is not a member of cluster %s (members: %s): it was removed; add it back with %s", member, in.Incident.Cluster, strings.Join(known, ", "), replaceRemediation)
		}
		if statuses[i].Error == "" {
			res.Output = strings.Join(append(out, strings.TrimSpace(etcdops.Describe(statuses))), "\n")
			return res, remediator.NothingToDof("member %s answers at %s with a leader: it does not fail to start, so there is nothing to recover", member, members[i].Endpoint)
		}
		others := slices.Delete(slices.Clone(statuses), i, i+1)
		if err := etcdops.Safe(others); err != nil {
			return res, remediator.Errorf(remediator.EPRECONDITION, "not touching member %s while another member is unhealthy too (quorum is at stake; a human must look): %w", member, err)
		}
		f.Endpoint, f.Members = members[i].Endpoint, len(members)
		out = append(out, strings.TrimSpace(etcdops.Describe(statuses)))
	} else {
		if err := alone(member, insp.Flags, cl.Endpoints()); err != nil {
			return res, err
		}
		f.Endpoint, f.Members = cl.Endpoints()[0], 1
		out = append(out, fmt.Sprintf("no member answers; %s's --initial-cluster names only itself and the cluster's one endpoint is its own: a one-member cluster", member))
	}

	line, err := r.judgeQuota(&f, insp.Flags)
	if err != nil {
		return res, err
	}
	out = append(out, line)
	res.Output = strings.Join(out, "\n")
	return res, in.SaveProgress(ctx, f)
}

// judgeQuota reads the member's quota, decides whether a full backend was the cause, and if
// so what the quota becomes; it says what it found in a line for the operator.
func (s Params) judgeQuota(f *findings, flags map[string]string) (string, error) {
	var err error
	if f.Quota, err = quotaOf(flags); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "member %s: %w", f.Member, err)
	}
	ratio := float64(f.DBSize) / float64(f.Quota)
	f.QuotaCause = ratio >= fullRatio
	line := fmt.Sprintf("backend %s on disk, %.0f%% of its %s quota", remediator.HumanBytes(f.DBSize), ratio*100, remediator.HumanBytes(f.Quota))
	if !f.QuotaCause {
		return line + ": the quota was not the cause; it stays", nil
	}
	f.NewQuota = cmp.Or(int64(s.Quota), min(2*f.Quota, int64(s.MaxQuota)))
	if f.NewQuota <= f.Quota || float64(f.DBSize) >= fullRatio*float64(f.NewQuota) {
		return "", remediator.Errorf(remediator.EPRECONDITION,
			"member %s: %s, and the quota can only go to %s (quota_bytes, or double up to max_quota_bytes %s), which the backend would still fill: a human must decide how much room etcd gets",
			f.Member, line, remediator.HumanBytes(f.NewQuota), remediator.HumanBytes(int64(s.MaxQuota)))
	}
	return line + fmt.Sprintf(": the quota was the cause; it goes to %s", remediator.HumanBytes(f.NewQuota)), nil
}

// memberOf names the member the incident is about: params.member, or the one its alerts name,
// by a member label or by their node (a node label, or a pod label etcd-<node> as kubeadm
// names etcd's static pod). A node is the member's whose node it is, or, among members not
// known, the member named after it, as kubeadm names them.
func (r *run) memberOf(in remediator.StepInput, known []string) (string, error) {
	if r.Member != "" {
		return r.Member, nil
	}
	var named []string
	for _, a := range in.Incident.Evidence {
		m, node := a.Labels["member"], a.Labels["node"]
		if pod, ok := strings.CutPrefix(a.Labels["pod"], "etcd-"); ok && node == "" {
			node = pod
		}
		if m == "" && node != "" {
			m = node
			if i := slices.IndexFunc(known, func(k string) bool { return r.nodes.Node(in.Incident.Cluster, k) == node }); i >= 0 {
				m = known[i]
			}
		}
		if m != "" && !slices.Contains(named, m) {
			named = append(named, m)
		}
	}
	switch len(named) {
	case 0:
		return "", remediator.Errorf(remediator.EPRECONDITION, "no alert names the failing member (by a member, node or pod label): set params.member")
	case 1:
		return named[0], nil
	}
	return "", remediator.Errorf(remediator.EPRECONDITION, "the alerts name several members (%s): set params.member to the one to recover", strings.Join(named, ", "))
}

// alone refuses unless the member is, as far as can be told while nothing answers, its
// cluster's only member: restoring one member of several from its own backend would split it
// off as a cluster of its own.
func alone(member string, flags map[string]string, endpoints []string) error {
	var names, others []string
	for _, entry := range strings.Split(flags["initial-cluster"], ",") {
		if name, _, _ := strings.Cut(entry, "="); name != "" {
			names = append(names, name)
			if name != member {
				others = append(others, name)
			}
		}
	}
	if !slices.Contains(names, member) {
		return remediator.Errorf(remediator.EPRECONDITION,
			"no member of the cluster answers, and member %s's --initial-cluster (%q) does not name it: it cannot be told whether %s is the only member; a human must look", member, flags["initial-cluster"], member)
	}
	if len(others) > 0 {
		return remediator.Errorf(remediator.EPRECONDITION,
			"no member of the cluster answers, and member %s's --initial-cluster names others too (%s): that is quorum loss, not one member's problem; a human must look", member, strings.Join(others, ", "))
	}
	own := false
	for _, u := range strings.Split(flags["advertise-client-urls"], ",") {
		if len(endpoints) == 1 && hostPort(u) == hostPort(endpoints[0]) {
			own = true
		}
	}
	if !own {
		return remediator.Errorf(remediator.EPRECONDITION,
			"no member of the cluster answers, and its endpoints (%s) are not member %s's own one: it cannot be told whether %s is the only member; a human must look", strings.Join(endpoints, ", "), member, member)
	}
	return nil
}

func hostPort(endpoint string) string {
	if u, err := url.Parse(strings.TrimSpace(endpoint)); err == nil && u.Host != "" {
		return u.Host
	}
	return endpoint
}

// quotaOf is the member's --quota-backend-bytes, or etcd's default where it has none.
func quotaOf(flags map[string]string) (int64, error) {
	v := flags["quota-backend-bytes"]
	if v == "" {
		return defaultQuota, nil
	}
	q, err := strconv.ParseInt(v, 10, 64)
	if err != nil || q < 0 {
		return 0, fmt.Errorf("--quota-backend-bytes=%q is not a number of bytes", v)
	}
	if q == 0 {
		return defaultQuota, nil
	}
	return q, nil
}

// answers says whether the member serves: etcd's status answers at its endpoint, with a leader.
// If it does, alarms are the alarms its status reports ("memberID:... alarm:NOSPACE").
func (r *run) answers(ctx context.Context, in remediator.StepInput, f findings) (ok bool, why string, alarms []string) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return false, err.Error(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, f.Endpoint)
	switch {
	case err != nil:
		return false, err.Error(), nil
	case st.Leader == 0:
		return false, "it has no leader", nil
	}
	for _, e := range st.Errors {
		if strings.Contains(e, "alarm:") {
			alarms = append(alarms, strings.TrimSpace(e))
		}
	}
	return true, "", alarms
}

// up waits up to wait for the member to serve: its agent's health check passes, or fails only
// on an alarm (which the disarm step is for), and etcd's status answers with a leader. etcd 3.4's
// health check fails on an alarm without naming it ({"health":"false"}): there the alarm is
// the one etcd's status reports. When the member does not serve, up says what it last showed.
func (r *run) up(ctx context.Context, in remediator.StepInput, f findings, wait time.Duration) (bool, string, error) {
	why, serves := "not checked", ""
	err := poll.Looks(ctx, wait, time.Second, func(ctx context.Context) (bool, error) {
		h, err := r.ask(ctx, in, f.Member, remediator.ActionHealth, time.Second, "")
		switch {
		case err != nil && remediator.ErrorCode(err) != remediator.EUNAVAILABLE:
			return false, poll.Stop(err)
		case err == nil || strings.Contains(h.HealthOutput, "ALARM"):
			ok, reason, _ := r.answers(ctx, in, f)
			if ok {
				serves = cmp.Or(h.HealthOutput, h.Output)
				return true, nil
			}
			why = "its health check passes but etcd's status does not answer: " + reason
		default:
			why = "its health check fails: " + cmp.Or(h.HealthOutput, h.Output, err.Error())
			if ok, _, alarms := r.answers(ctx, in, f); ok && len(alarms) > 0 {
				serves = fmt.Sprintf("%s, and its status reports %s", cmp.Or(h.HealthOutput, h.Output), strings.Join(alarms, "; "))
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case err == nil:
		return true, serves, nil
	case ctx.Err() != nil:
		return false, why, etcdops.Classify(ctx.Err(), "wait for member %s", f.Member)
	case errors.Is(err, poll.ErrTimeout):
		return false, why, nil
	}
	return false, "", err
}

func (r *run) stop(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	// The member may have recovered on its own while the incident waited for approval.
	if ok, _, _ := r.answers(ctx, in, f); ok {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "member %s answers at %s again: not stopping it", f.Member, f.Endpoint)
	}
	res, err := r.ask(ctx, in, f.Member, remediator.ActionStop, r.StopTimeout, "")
	return remediator.StepResult{Output: res.Output}, err
}

type backupProgress struct {
	Backup string `json:"backup"`
}

func (r *run) backup(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	p, _, err := remediator.Progress[backupProgress](in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if p.Backup != "" {
		return remediator.StepResult{Output: fmt.Sprintf("the data dir was copied to %s by an earlier attempt", p.Backup)}, nil
	}
	res, err := r.ask(ctx, in, f.Member, remediator.ActionCopyData, r.DataTimeout, "")
	if err != nil {
		return remediator.StepResult{Output: res.Output}, err
	}
	if res.Backup == "" {
		return remediator.StepResult{Output: res.Output}, remediator.Errorf(remediator.EPRECONDITION,
			"member %s's data dir %s was not backed up (%s): not changing it without a backup", f.Member, f.DataDir, res.Output)
	}
	return remediator.StepResult{Output: res.Output}, in.SaveProgress(ctx, backupProgress{Backup: res.Backup})
}

func (r *run) raiseQuota(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if !f.QuotaCause {
		return remediator.StepResult{Output: fmt.Sprintf("the backend (%s) is well within its %s quota: the quota stays",
			remediator.HumanBytes(f.DBSize), remediator.HumanBytes(f.Quota))}, nil
	}
	act := remediator.NodeAction{Kind: remediator.ActionSetFlags, Component: remediator.ComponentEtcd, Incident: in.Incident.ID,
		Set: map[string]string{"quota-backend-bytes": strconv.FormatInt(f.NewQuota, 10)}}
	res, err := r.nodes.Do(ctx, in.Incident.Cluster, f.Member, act)
	if err != nil {
		return remediator.StepResult{}, remediator.Errorf(remediator.ErrorCode(err), "raise the quota of member %s: %w", f.Member, err)
	}
	return remediator.StepResult{Output: fmt.Sprintf("quota %s -> %s: %s", remediator.HumanBytes(f.Quota), remediator.HumanBytes(f.NewQuota), res.Output)}, nil
}

func (r *run) removeSnapFiles(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	res, err := r.ask(ctx, in, f.Member, remediator.ActionRemoveSnapFiles, 0, "")
	return remediator.StepResult{Output: res.Output}, err
}

type startProgress struct {
	Serving bool   `json:"serving"`
	Why     string `json:"why,omitempty"`
}

func (r *run) start(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	started, err := r.ask(ctx, in, f.Member, remediator.ActionStart, 0, "")
	if err != nil {
		return remediator.StepResult{}, err
	}
	ok, why, err := r.up(ctx, in, f, r.HealthTimeout)
	if err != nil {
		return remediator.StepResult{Output: started.Output}, err
	}
	out := started.Output + "\n"
	if ok {
		out += fmt.Sprintf("member %s serves again (%s)", f.Member, why)
	} else {
		// Not an error: whether to rebuild the member is the restore step's decision.
		out += fmt.Sprintf("member %s still does not serve %s after its start: %s", f.Member, r.HealthTimeout, why)
	}
	return remediator.StepResult{Output: out}, in.SaveProgress(ctx, startProgress{Serving: ok, Why: why})
}

type restoreProgress struct {
	// Started says the member was stopped to be restored: a repeated attempt finishes the
	// restore rather than look again whether the member serves.
	Started  bool   `json:"started"`
	Moved    string `json:"moved,omitempty"`
	Restored bool   `json:"restored,omitempty"`
}

func (r *run) restore(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	p, _, err := remediator.Progress[restoreProgress](in) // none yet: the restore has not begun
	if err != nil {
		return remediator.StepResult{}, err
	}
	if !p.Started {
		s, _, err := remediator.Findings[startProgress](in.Incident, StepStart)
		if err != nil {
			return remediator.StepResult{}, err
		}
		if s.Serving {
			return remediator.StepResult{Output: fmt.Sprintf("not needed: member %s serves since its start", f.Member)}, nil
		}
		if ok, why, err := r.up(ctx, in, f, 0); err != nil || ok {
			return remediator.StepResult{Output: fmt.Sprintf("not needed: member %s serves now (%s)", f.Member, why)}, err
		}
	}
	b, _, err := remediator.Findings[backupProgress](in.Incident, StepBackup)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if b.Backup == "" {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no backup of member %s's data dir is recorded: not restoring without one", f.Member)
	}
	if !p.Started && f.Members > 1 {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION,
			"member %s still fails after its raft snapshot files were removed, and it is one of %d members: restoring it from its own backend would make it a cluster of its own. Replace it instead (%s: remove it, empty its data dir, add it back); its data dir is left as it is, and as it was before is in %s on node %s",
			f.Member, f.Members, replaceRemediation, b.Backup, r.nodes.Node(in.Incident.Cluster, f.Member))
	}
	db := filepath.Join(b.Backup, "member", "snap", "db")
	var out []string
	if !p.Restored {
		p.Started = true
		if err := in.SaveProgress(ctx, p); err != nil {
			return remediator.StepResult{}, err
		}
		for _, kind := range []remediator.ActionKind{remediator.ActionStop, remediator.ActionMoveData, remediator.ActionRestoreSnapshot} {
			timeout, backup := r.DataTimeout, ""
			switch kind {
			case remediator.ActionStop:
				timeout = r.StopTimeout
			case remediator.ActionRestoreSnapshot:
				backup = db
			}
			res, err := r.ask(ctx, in, f.Member, kind, timeout, backup)
			out = append(out, res.Output)
			if err != nil {
				return remediator.StepResult{Output: strings.Join(out, "\n")}, err
			}
			if kind == remediator.ActionMoveData {
				p.Moved = cmp.Or(res.Backup, p.Moved)
			}
		}
		p.Restored = true
		if err := in.SaveProgress(ctx, p); err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
	}
	started, err := r.ask(ctx, in, f.Member, remediator.ActionStart, 0, "")
	out = append(out, started.Output)
	if err != nil {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, err
	}
	ok, why, err := r.up(ctx, in, f, r.HealthTimeout)
	if err != nil {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, err
	}
	if !ok {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, remediator.Errorf(remediator.EPRECONDITION,
			"member %s still does not serve %s after its restore from %s: %s. Its data dir as it was is in %s and %s", f.Member, r.HealthTimeout, db, why, b.Backup, p.Moved)
	}
	out = append(out, fmt.Sprintf("member %s serves again, rebuilt from its backend %s as a one-member cluster; writes only its WAL held are lost (the WAL is kept in %s)",
		f.Member, db, cmp.Or(p.Moved, b.Backup)))
	return remediator.StepResult{Output: strings.Join(out, "\n")}, nil
}

// look lists the members, asks each for its status, and finds the recovered one among them.
func (r *run) look(ctx context.Context, in remediator.StepInput, f findings) (*clientv3.Client, []etcdops.Member, []remediator.MemberStatus, int, error) {
	v, err := etcdops.Look(ctx, r.clients, in.Incident.Cluster, true)
	cl, members, statuses := v.Client, v.Members, v.Statuses
	if err != nil {
		return cl, members, statuses, 0, err
	}
	i := slices.IndexFunc(members, func(m etcdops.Member) bool { return m.Name == f.Member })
	if i < 0 {
		return cl, members, statuses, 0, remediator.Errorf(remediator.EPRECONDITION, "%s is no longer a member of cluster %s", f.Member, in.Incident.Cluster)
	}
	return cl, members, statuses, i, nil
}

func (r *run) disarm(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, _, statuses, i, err := r.look(ctx, in, f)
	if err != nil {
		return remediator.StepResult{}, err
	}
	st := statuses[i]
	if st.Error != "" {
		return remediator.StepResult{}, remediator.Errorf(remediator.EUNAVAILABLE, "member %s does not answer: %s", f.Member, st.Error)
	}
	// etcd before 3.6 does not report its quota: the manifest's is the one it runs with.
	d, err := etcdops.DisarmNOSPACE(ctx, cl, statuses, etcdops.DisarmOptions{Below: fullRatio, Quota: f.quotaNow(),
		Only: func(s remediator.MemberStatus) bool { return s.ID == st.ID }})
	out := d.Lines()
	if !slices.Contains(st.Alarms, etcdserverpb.AlarmType_NOSPACE.String()) {
		out = append(out, fmt.Sprintf("member %s has no NOSPACE alarm", f.Member))
	}
	res := remediator.StepResult{Output: strings.Join(out, "\n")}
	if err != nil {
		return res, err
	}
	return res, d.RefusedError()
}

func (r *run) defragment(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, members, statuses, i, err := r.look(ctx, in, f)
	if err != nil {
		return remediator.StepResult{}, err
	}
	// Defragmentation blocks the member: with another one down, that could cost quorum.
	if err := etcdops.Safe(statuses); err != nil {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "not defragmenting member %s: %w", f.Member, err)
	}
	done, _, err := etcdops.Defragment(ctx, in, cl, members, etcdops.DefragOptions{
		DefragParams: etcdops.DefragParams{DefragTimeout: r.DefragTimeout, HealthTimeout: r.HealthTimeout},
		Only:         func(st remediator.MemberStatus) bool { return st.ID == statuses[i].ID },
	})
	var out []string
	for _, d := range done {
		out = append(out, "defragmented "+d.String())
	}
	return remediator.StepResult{Output: strings.Join(out, "\n")}, err
}

func (r *run) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	f, err := found(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, members, statuses, _, err := r.look(ctx, in, f)
	if err != nil {
		return remediator.StepResult{}, err
	}
	res := remediator.StepResult{After: statuses}
	if err := etcdops.Safe(statuses); err != nil {
		return res, err
	}
	if err := etcdops.NoAlarms(statuses); err != nil {
		return res, err
	}
	probed, err := etcdops.Probe(ctx, cl, cl, "the client", members, etcdops.ProbeKey(probePrefix, in.Incident.ID))
	if err != nil {
		return res, err
	}
	res.Output = fmt.Sprintf("no alarms; %s, and deleted it\n%s", probed, etcdops.Describe(statuses))
	return res, nil
}
