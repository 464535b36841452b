package membership

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// QuorumRestoreName is the name of etcd-quorum-restore in policies.
const QuorumRestoreName = "etcd-quorum-restore"

// QuorumRestore is etcd-quorum-restore (seed 003): a cluster whose majority is gone for good
// is restarted from its most up-to-date survivor with --force-new-cluster, which makes it a
// one-member cluster with the same data and cluster ID, and the other members are added back
// empty one at a time. Forcing a new cluster while the old majority still runs somewhere
// would split the cluster in two, so it refuses while a majority answers or any member has a
// leader, and stops every other member whose node agent answers before it forces anything.
// A member whose etcd and agent both stay silent is taken as lost: that is the judgement the
// approvers make.
type QuorumRestore struct{ deps }

// NewQuorumRestore returns etcd-quorum-restore; snapshots go under
// backupDir/<cluster>/<incident>.db.
func NewQuorumRestore(clients etcdops.Getter, nodes Nodes, backupDir string) *QuorumRestore {
	return &QuorumRestore{deps{clients: clients, nodes: nodes, backupDir: backupDir}}
}

// RestoreParams are etcd-quorum-restore's parameters.
type RestoreParams struct {
	Survivor string `param:"survivor" doc:"the name of the member to restart the cluster from (none: of the members that answer, the one with the highest raft index, then revision)"`
	timing
}

// Params lists etcd-quorum-restore's parameters.
func (q *QuorumRestore) Params() []params.Field { return params.Fields(&RestoreParams{}) }

// etcd-quorum-restore's other steps, by name.
const (
	StepFence           = "fence"
	StepBackup          = "backup"
	StepForceNewCluster = "force-new-cluster"
	StepRemoveFlag      = "remove-flag"
	StepReadd           = "re-add"
)

// Plan returns the steps for the given parameters.
func (q *QuorumRestore) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, q.steps)
}

func (q *QuorumRestore) steps(s RestoreParams) ([]remediator.PlannedStep, error) {
	run := &restoreRun{QuorumRestore: q, RestoreParams: s}
	return []remediator.PlannedStep{
		{Name: StepPreflight, Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: "ask every member; go on only if no member has a leader and fewer than a quorum answer; choose the survivor with the highest raft index"},
		{Name: StepSnapshot, Risk: remediator.RiskReadOnly, Run: etcdops.SnapshotStep(q.backupDir, run.snapshotSource),
			Description: "save a snapshot of the survivor's keyspace before changing anything"},
		{Name: StepFence, Risk: remediator.RiskHigh, Run: run.fence,
			Description: "check again that the quorum is lost, then stop etcd on every other member whose node agent answers, so that none comes back into the old cluster",
			Undo:        "start etcd again on each stopped member (its manifest back in the manifests folder): the old cluster comes back, still without a quorum"},
		{Name: StepBackup, Risk: remediator.RiskHigh, Run: run.backup,
			Description: "stop the survivor's etcd and copy its data dir into its node's backup dir",
			Undo:        "start the survivor's etcd again (its manifest back in the manifests folder); the copy of its data dir stays in its node's backup dir"},
		{Name: StepForceNewCluster, Risk: remediator.RiskDestructive, Run: run.forceNewCluster,
			Description: "start the survivor once with --force-new-cluster: it becomes the leader of a one-member cluster with the same data, and the other members are dropped",
			Undo:        "irreversible: the other members are dropped from the cluster; the survivor's data dir as it was is in its node's backup dir (step backup), and the keyspace in step snapshot's snapshot"},
		{Name: StepRemoveFlag, Risk: remediator.RiskHigh, Run: run.removeFlag,
			Description: "restart the survivor without --force-new-cluster, so that a later restart does not drop the members added back",
			Undo:        "nothing to undo: the survivor only restarts without --force-new-cluster, as it must run from now on"},
		{Name: StepReadd, Risk: remediator.RiskDestructive, Run: run.readd,
			Description: "add every other member back, one at a time: stop it, move its data dir aside, add it as a learner, set --initial-cluster and --initial-cluster-state=existing, start it, promote it once in sync",
			Undo:        "irreversible for each member's old data, moved aside into its node's backup dir; a re-added member leaves again with etcdctl member remove"},
		{Name: StepVerify, Risk: remediator.RiskLow, Run: run.verify,
			Description: "every member votes and is healthy, the data is at least at the survivor's revision, a probe write reads back from every member, and the raft indexes agree"},
	}, nil
}

type restoreRun struct {
	*QuorumRestore
	RestoreParams
}

func (r *restoreRun) joiner(in remediator.StepInput) joiner {
	return joiner{nodes: r.nodes, cluster: in.Incident.Cluster, incident: in.Incident.ID, timing: r.timing}
}

// restorePlan is what preflight found: the member to restart from, the members to add back,
// and how far the survivor's data went.
type restorePlan struct {
	Survivor  target   `json:"survivor"`
	Others    []target `json:"others"`
	Revision  int64    `json:"revision"`
	RaftIndex uint64   `json:"raft_index"`
}

func (p restorePlan) absent() []string {
	var urls []string
	for _, o := range p.Others {
		urls = append(urls, o.Endpoint)
		urls = append(urls, o.ClientURLs...)
	}
	return urls
}

func (r *restoreRun) plan(in remediator.StepInput) (restorePlan, error) {
	p, _, err := remediator.Findings[restorePlan](in.Incident, StepPreflight)
	if err != nil {
		return p, err
	}
	if p.Survivor.Name == "" {
		return p, remediator.Errorf(remediator.EPRECONDITION, "preflight recorded no survivor")
	}
	return p, nil
}

// assessment is what each member says, with the quorum lost: nothing answers linearizably,
// so the member list is the one the answering members keep themselves.
type assessment struct {
	v        *view
	statuses []remediator.MemberStatus
	// answers holds each member's own status, or nil where it does not answer as itself.
	answers []*clientv3.StatusResponse
	voters  int
	alive   []member
	// quorate names the member that answered with a leader, if one did: the cluster it
	// belongs to has a quorum.
	quorate string
}

// assess asks every member, and refuses unless the quorum is lost: a member that has a leader
// is in a cluster that has a quorum, and a majority that answers can elect one.
func assess(ctx context.Context, cl *clientv3.Client) (*assessment, error) {
	v, err := look(ctx, cl, lookOptions{serializable: true})
	if err != nil {
		return nil, err
	}
	a := &assessment{v: v}
	a.statuses, _ = v.statuses(ctx) // the alarm list needs a leader; there is none to ask
	mt := v.maintenance()
	for _, m := range v.members {
		var answer *clientv3.StatusResponse
		if m.Endpoint != "" {
			if st, err := mt.Status(ctx, m.Endpoint); err == nil && st.Header.MemberId == m.ID {
				answer = st
			}
		}
		a.answers = append(a.answers, answer)
		if answer != nil && answer.Leader != 0 {
			a.quorate = fmt.Sprintf("member %s answers with leader %x", m.Member, answer.Leader)
			return a, remediator.Errorf(remediator.EPRECONDITION,
				"%s: the cluster has a quorum; not forcing a new cluster (replace dead members with etcd-member-replace)", a.quorate)
		}
		if m.Learner {
			continue
		}
		a.voters++
		if answer != nil {
			a.alive = append(a.alive, m)
		}
	}
	if len(a.alive) >= quorum(a.voters) {
		return a, remediator.Errorf(remediator.EPRECONDITION,
			"%d of the %d voting members answer (%s): a majority that can elect a leader once they reach each other; not forcing a new cluster",
			len(a.alive), a.voters, describeMembers(a.alive))
	}
	if len(a.alive) == 0 {
		return a, remediator.Errorf(remediator.EUNAVAILABLE, "no voting member answers as itself: there is no survivor to restart the cluster from")
	}
	clusterID := a.answers[slices.IndexFunc(a.answers, func(s *clientv3.StatusResponse) bool { return s != nil })].Header.ClusterId
	for i, s := range a.answers {
		if s != nil && s.Header.ClusterId != clusterID {
			return a, remediator.Errorf(remediator.EPRECONDITION, "member %s belongs to cluster %x, another answering member to %x: a human must say which is the cluster",
				v.members[i].Member, s.Header.ClusterId, clusterID)
		}
	}
	return a, nil
}

func (a *assessment) close() { a.v.close() }

// pick returns the survivor: the named member, which must answer, or the answering voting
// member whose log goes furthest (raft index, then revision), the one that lost least.
func (a *assessment) pick(name string) (member, *clientv3.StatusResponse, error) {
	best := -1
	for i, m := range a.v.members {
		st := a.answers[i]
		switch {
		case m.Learner || st == nil:
			if name != "" && m.Name == name {
				return m, nil, remediator.Errorf(remediator.EPRECONDITION, "member %s does not answer as a voting member: it cannot be the survivor", m.Member)
			}
			continue
		case name != "":
			if m.Name == name {
				return m, st, nil
			}
			continue
		}
		if best < 0 || further(st, a.answers[best]) {
			best = i
		}
	}
	if best < 0 {
		return member{}, nil, remediator.Errorf(remediator.EPRECONDITION, "member %q is not in the member list (%s)", name, describeMembers(a.v.members))
	}
	return a.v.members[best], a.answers[best], nil
}

func further(a, b *clientv3.StatusResponse) bool {
	if a.RaftIndex != b.RaftIndex {
		return a.RaftIndex > b.RaftIndex
	}
	return a.Header.Revision > b.Header.Revision
}

func (r *restoreRun) preflight(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{}, err
	}
	a, err := assess(ctx, cl)
	if a == nil {
		return remediator.StepResult{}, err
	}
	defer a.close()
	res := remediator.StepResult{Output: strings.Join(append(a.v.notes, etcdops.Describe(a.statuses)), "\n"), Before: a.statuses}
	if a.quorate != "" {
		// A leader is the proof that the quorum this restores is not lost. A majority that
		// answers without one stays a refusal: the cluster is down, and a human must look.
		return res, remediator.NothingToDof("%s: the cluster has a quorum, and there is none to restore (replace dead members with etcd-member-replace)", a.quorate)
	}
	if err != nil {
		return res, err
	}
	m, st, err := a.pick(r.Survivor)
	if err != nil {
		return res, err
	}
	p := restorePlan{Survivor: targetOf(m), RaftIndex: st.RaftIndex, Revision: st.Header.Revision}
	j := r.joiner(in)
	ins, err := j.checkNode(ctx, p.Survivor)
	if err != nil {
		return res, err
	}
	if !ins.HasData {
		return res, remediator.Errorf(remediator.EPRECONDITION, "survivor %s has no data in %s on node %s", p.Survivor, ins.DataDir, ins.Node)
	}
	lines := []string{fmt.Sprintf("%d of %d voting members answer, none with a leader: the quorum is lost. Survivor: %s at raft index %d, revision %d",
		len(a.alive), a.voters, p.Survivor, p.RaftIndex, p.Revision)}
	for _, o := range a.v.members {
		if o.ID == m.ID {
			continue
		}
		t := targetOf(o)
		if len(t.PeerURLs) == 0 || t.Endpoint == "" {
			return res, remediator.Errorf(remediator.EPRECONDITION, "member %s advertises no peer or client URL: it cannot be added back as it was", o.Member)
		}
		p.Others = append(p.Others, t)
		lines = append(lines, fmt.Sprintf("to add back: %s (%s)", t, nodeState(ctx, j, t)))
	}
	if err := in.SaveProgress(ctx, p); err != nil {
		return res, err
	}
	res.Output = strings.Join(lines, "\n") + "\n" + res.Output
	return res, nil
}

// nodeState says what the agent of a member's node says about its etcd.
func nodeState(ctx context.Context, j joiner, t target) string {
	ins, err := j.act(ctx, t, remediator.ActionInspect, nil, nil)
	switch {
	case err != nil:
		return fmt.Sprintf("its node's agent: %v", err)
	case ins.Running:
		return fmt.Sprintf("node %s: etcd configured to run, data %v", ins.Node, ins.HasData)
	}
	return fmt.Sprintf("node %s: etcd stopped, data %v", ins.Node, ins.HasData)
}

// survivorView lists the members through the survivor, serializably: before the survivor
// forms a cluster of its own, nothing answers otherwise.
func (r *restoreRun) survivorView(ctx context.Context, in remediator.StepInput, p restorePlan) (*view, error) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return nil, err
	}
	return look(ctx, cl, lookOptions{serializable: true, avoid: p.absent(), absent: p.absent()})
}

// snapshotSource is the survivor, listed serializably: nothing answers otherwise.
func (r *restoreRun) snapshotSource(ctx context.Context, in remediator.StepInput) (etcdops.SnapshotSource, error) {
	p, err := r.plan(in)
	if err != nil {
		return etcdops.SnapshotSource{}, err
	}
	v, err := r.survivorView(ctx, in, p)
	if err != nil {
		return etcdops.SnapshotSource{}, err
	}
	statuses, _ := v.statuses(ctx) // no alarms without a leader; the sizes are what counts
	return etcdops.SnapshotSource{Maintenance: v.maintenance(), Via: v.via, Statuses: statuses, Revision: p.Revision, Close: v.close}, nil
}

func (r *restoreRun) fence(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	p, err := r.plan(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{}, err
	}
	// Approval may have taken hours: the quorum may be back.
	a, err := assess(ctx, cl)
	if a != nil {
		a.close()
	}
	if err != nil {
		return remediator.StepResult{}, err
	}
	j := r.joiner(in)
	var out []string
	for _, o := range p.Others {
		if _, err := j.act(ctx, o, remediator.ActionInspect, nil, nil); remediator.ErrorCode(err) == remediator.EUNAVAILABLE {
			out = append(out, fmt.Sprintf("%s: its node's agent does not answer (%v): taken as lost", o, err))
			continue
		}
		stopped, err := j.stop(ctx, o)
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		out = append(out, fmt.Sprintf("%s: %s", o, stopped))
	}
	return remediator.StepResult{Output: strings.Join(out, "\n")}, nil
}

// backupProgress is how far backup came.
type backupProgress struct {
	Backup string `json:"backup"`
}

func (r *restoreRun) backup(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	p, err := r.plan(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	done, _, err := remediator.Progress[backupProgress](in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if done.Backup != "" {
		return remediator.StepResult{Output: fmt.Sprintf("the survivor's data dir was copied to %s by an earlier attempt", done.Backup)}, nil
	}
	j := r.joiner(in)
	stopped, err := j.stop(ctx, p.Survivor)
	if err != nil {
		return remediator.StepResult{}, err
	}
	res, err := j.act(ctx, p.Survivor, remediator.ActionCopyData, nil, nil)
	if err != nil {
		return remediator.StepResult{Output: stopped}, err
	}
	if res.Backup == "" {
		return remediator.StepResult{Output: stopped}, remediator.Errorf(remediator.EPRECONDITION, "node %s made no copy of the survivor's data: %s", res.Node, res.Output)
	}
	out := fmt.Sprintf("%s\nnode %s: %s", stopped, res.Node, res.Output)
	return remediator.StepResult{Output: out}, in.SaveProgress(ctx, backupProgress{Backup: res.Backup})
}

func (r *restoreRun) forceNewCluster(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	p, err := r.plan(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	j := r.joiner(in)
	set, err := j.act(ctx, p.Survivor, remediator.ActionSetFlags, map[string]string{"force-new-cluster": ""}, nil)
	if err != nil {
		return remediator.StepResult{}, err
	}
	started, err := j.act(ctx, p.Survivor, remediator.ActionStart, nil, nil)
	if err != nil {
		return remediator.StepResult{}, err
	}
	out := fmt.Sprintf("node %s: %s\nnode %s: %s", set.Node, set.Output, started.Node, started.Output)
	alone, err := r.waitAlone(ctx, in, p)
	return remediator.StepResult{Output: out + "\n" + alone}, err
}

// waitAlone waits until the survivor answers as its own leader, and checks that it is the
// only member.
func (r *restoreRun) waitAlone(ctx context.Context, in remediator.StepInput, p restorePlan) (string, error) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return "", err
	}
	id, err := parseID(p.Survivor.ID)
	if err != nil {
		return "", err
	}
	took, err := waitAnswers(ctx, cl, p.Survivor, id, true, r.StartTimeout)
	if err != nil {
		return "", err
	}
	v, err := r.survivorView(ctx, in, p)
	if err != nil {
		return "", err
	}
	defer v.close()
	if len(v.members) != 1 {
		return "", remediator.Errorf(remediator.EPRECONDITION, "the survivor %s leads, but its cluster has the members %s, not only itself", p.Survivor, describeMembers(v.members))
	}
	return fmt.Sprintf("%s leads a cluster of itself alone after %s", p.Survivor, took.Round(100*time.Millisecond)), nil
}

func (r *restoreRun) removeFlag(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	p, err := r.plan(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	j := r.joiner(in)
	ins, err := j.act(ctx, p.Survivor, remediator.ActionInspect, nil, nil)
	if err != nil {
		return remediator.StepResult{}, err
	}
	var out []string
	// Stopped first, so that the member that answers afterwards is the one started without
	// the flag, whatever runs it.
	if _, ok := ins.Flags["force-new-cluster"]; ok {
		if ins.Running {
			stopped, err := j.stop(ctx, p.Survivor)
			if err != nil {
				return remediator.StepResult{}, err
			}
			out = append(out, stopped)
		}
		set, err := j.act(ctx, p.Survivor, remediator.ActionSetFlags, nil, []string{"force-new-cluster"})
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		out = append(out, fmt.Sprintf("node %s: %s", set.Node, set.Output))
	}
	started, err := j.act(ctx, p.Survivor, remediator.ActionStart, nil, nil)
	if err != nil {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, err
	}
	out = append(out, fmt.Sprintf("node %s: %s", started.Node, started.Output))
	alone, err := r.waitAlone(ctx, in, p)
	out = append(out, alone)
	if err != nil {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, err
	}
	v, err := r.survivorView(ctx, in, p)
	if err != nil {
		return remediator.StepResult{Output: strings.Join(out, "\n")}, err
	}
	defer v.close()
	disarmed, err := disarmGone(ctx, v)
	out = append(out, disarmed...)
	return remediator.StepResult{Output: strings.Join(out, "\n")}, err
}

// rejoin is how far adding one member back came.
type rejoin struct {
	Stopped  bool   `json:"stopped,omitempty"`
	Moved    bool   `json:"moved,omitempty"`
	Backup   string `json:"backup,omitempty"`
	ID       string `json:"id,omitempty"`
	Flagged  bool   `json:"flagged,omitempty"`
	Started  bool   `json:"started,omitempty"`
	Promoted bool   `json:"promoted,omitempty"`
	Settled  bool   `json:"settled,omitempty"`
}

type readdProgress struct {
	Members map[string]*rejoin `json:"members"`
}

func (r *restoreRun) readd(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	p, err := r.plan(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	prog, _, err := remediator.Progress[readdProgress](in) // none yet: start from the first member
	if err != nil {
		return remediator.StepResult{}, err
	}
	if prog.Members == nil {
		prog.Members = map[string]*rejoin{}
	}
	var out []string
	for _, o := range p.Others {
		if prog.Members[o.Name] == nil {
			prog.Members[o.Name] = &rejoin{}
		}
		lines, err := r.rejoin(ctx, in, p, o, prog.Members[o.Name], func() error { return in.SaveProgress(ctx, prog) })
		out = append(out, lines...)
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
	}
	return remediator.StepResult{Output: strings.Join(out, "\n")}, nil
}

// rejoin adds one member back, phase by phase, saving after each, and waits until every
// member is healthy and in step before the next member: etcd takes one learner at a time.
func (r *restoreRun) rejoin(ctx context.Context, in remediator.StepInput, p restorePlan, o target, st *rejoin, save func() error) ([]string, error) {
	if st.Settled {
		return []string{fmt.Sprintf("%s: added back as %s by an earlier attempt", o, st.ID)}, nil
	}
	j := r.joiner(in)
	var out []string
	note := func(s string) {
		for _, line := range strings.Split(s, "\n") {
			out = append(out, o.Name+": "+line)
		}
	}
	if !st.Stopped {
		if _, err := j.checkNode(ctx, o); err != nil {
			return out, err
		}
		stopped, err := j.stop(ctx, o)
		if err != nil {
			return out, err
		}
		note(stopped)
		st.Stopped = true
		if err := save(); err != nil {
			return out, err
		}
	}
	if !st.Moved {
		res, err := j.moveData(ctx, o)
		if err != nil {
			return out, err
		}
		note(fmt.Sprintf("node %s: %s", res.Node, res.Output))
		st.Moved, st.Backup = true, res.Backup
		if err := save(); err != nil {
			return out, err
		}
	}
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return out, err
	}
	v, err := look(ctx, cl, lookOptions{absent: p.absent()})
	if err != nil {
		return out, err
	}
	defer v.close()
	if st.ID == "" {
		id, added, err := j.addLearner(ctx, v, o)
		if err != nil {
			return out, err
		}
		note(added)
		st.ID = hexID(id)
		if err := save(); err != nil {
			return out, err
		}
		if err := v.refresh(ctx); err != nil {
			return out, err
		}
	}
	id, err := parseID(st.ID)
	if err != nil {
		return out, err
	}
	phases := []struct {
		done *bool
		run  func(joiner, context.Context, *view, target, uint64) (string, error)
	}{{&st.Flagged, joiner.setFlags}, {&st.Started, joiner.start}, {&st.Promoted, joiner.promote}}
	for _, ph := range phases {
		if *ph.done {
			continue
		}
		did, err := ph.run(j, ctx, v, o, id)
		if did != "" {
			note(did)
		}
		if err != nil {
			return out, err
		}
		*ph.done = true
		if err := save(); err != nil {
			return out, err
		}
	}
	if err := v.refresh(ctx); err != nil {
		return out, err
	}
	if _, err := settle(ctx, v, r.HealthTimeout); err != nil {
		return out, err
	}
	note(fmt.Sprintf("healthy and in step; the members are %s", describeMembers(v.members)))
	st.Settled = true
	return out, save()
}

func (r *restoreRun) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	p, err := r.plan(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{}, err
	}
	v, err := look(ctx, cl, lookOptions{})
	if err != nil {
		return remediator.StepResult{}, err
	}
	defer v.close()
	var problems []string
	if len(v.members) != 1+len(p.Others) {
		problems = append(problems, fmt.Sprintf("the cluster has %d members, not %d", len(v.members), 1+len(p.Others)))
	}
	for _, t := range append([]target{p.Survivor}, p.Others...) {
		i := slices.IndexFunc(v.members, func(m member) bool { return m.Name == t.Name })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("%s is not a member", t.Name))
		case v.members[i].Learner:
			problems = append(problems, fmt.Sprintf("%s is still a learner", t.Name))
		case t.Name == p.Survivor.Name && hexID(v.members[i].ID) != t.ID:
			problems = append(problems, fmt.Sprintf("the survivor %s is now %x, no longer %s", t.Name, v.members[i].ID, t.ID))
		case t.Name != p.Survivor.Name && hexID(v.members[i].ID) == t.ID:
			problems = append(problems, fmt.Sprintf("%s still has its old ID %s", t.Name, t.ID))
		}
	}
	if len(problems) > 0 {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "the cluster is not whole again: %s (members: %s)", strings.Join(problems, "; "), describeMembers(v.members))
	}
	out, statuses, err := settleAndProbe(ctx, v, r.ProbePrefix, in.Incident.ID, r.HealthTimeout)
	res := remediator.StepResult{Output: out, After: statuses}
	if err != nil {
		return res, err
	}
	for _, s := range statuses {
		if s.Revision < p.Revision {
			return res, remediator.Errorf(remediator.EPRECONDITION, "member %s is at revision %d, behind the survivor's %d before the restore: data was lost", s.Name, s.Revision, p.Revision)
		}
	}
	res.Output = fmt.Sprintf("%d voting members, every one at or past the survivor's revision %d before the restore\n%s", len(statuses), p.Revision, out)
	return res, nil
}
