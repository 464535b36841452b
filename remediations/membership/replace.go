package membership

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// ReplaceName is the name of etcd-member-replace in policies.
const ReplaceName = "etcd-member-replace"

// Replace is etcd-member-replace (seed 001): a member whose data is gone or corrupt is taken
// out of the cluster and added back empty, to be filled by the leader, while the other
// members keep the quorum.
type Replace struct{ deps }

// deps are what both membership remediations work with.
type deps struct {
	clients   etcdops.Getter
	nodes     Nodes
	backupDir string
}

// NewReplace returns etcd-member-replace; snapshots go under backupDir/<cluster>/<incident>.db.
func NewReplace(clients etcdops.Getter, nodes Nodes, backupDir string) *Replace {
	return &Replace{deps{clients: clients, nodes: nodes, backupDir: backupDir}}
}

// ReplaceParams are etcd-member-replace's parameters.
type ReplaceParams struct {
	Member string `param:"member" doc:"the name of the member to replace (none: the one the alerts name in a member, name, node, pod or instance label)"`
	Force  bool   `param:"force" default:"false" doc:"replace the member even though it is healthy and not CORRUPT"`
	timing
}

// Params lists etcd-member-replace's parameters.
func (r *Replace) Params() []params.Field { return params.Fields(&ReplaceParams{}) }

// The steps both membership remediations share, by name.
const (
	StepPreflight = "preflight"
	StepSnapshot  = "snapshot"
	StepVerify    = "verify"
)

// etcd-member-replace's other steps, by name.
const (
	StepStop       = "stop"
	StepMoveData   = "move-data"
	StepRemove     = "remove"
	StepAddLearner = "add-learner"
	StepSetFlags   = "set-flags"
	StepStart      = "start"
	StepPromote    = "promote"
)

// Plan returns the steps for the given parameters.
func (r *Replace) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, r.steps)
}

func (r *Replace) steps(s ReplaceParams) ([]remediator.PlannedStep, error) {
	run := &replaceRun{Replace: r, ReplaceParams: s}
	return []remediator.PlannedStep{
		{Name: StepPreflight, Risk: remediator.RiskReadOnly, Run: run.preflight,
			Description: "list the members and their status; go on only if the member is unhealthy, CORRUPT or forced, every other member is healthy, and they keep a quorum without it"},
		{Name: StepSnapshot, Risk: remediator.RiskReadOnly, Run: etcdops.SnapshotStep(r.backupDir, run.snapshotSource),
			Description: "save a snapshot of the keyspace from a healthy member before changing the membership"},
		{Name: StepStop, Risk: remediator.RiskHigh, Run: run.stop,
			Description: "stop the member's etcd on its node (its manifest moved out of the manifests folder) and wait until it no longer answers",
			Undo:        "start it again: put its manifest back in the manifests folder"},
		{Name: StepMoveData, Risk: remediator.RiskDestructive, Run: run.moveData,
			Description: "move the member's data dir into the node's backup dir, leaving it empty for the new member",
			Undo:        "move the data dir back from the node's backup dir and start the member; once step remove ran, that data belongs to a removed member and cannot rejoin"},
		{Name: StepRemove, Risk: remediator.RiskDestructive, Run: run.remove,
			Description: "remove the member from the cluster (member remove), after checking again that the others keep a quorum without it",
			Undo:        "irreversible: the member's ID is gone from the cluster; the steps after it add the member back as a new one, or etcdctl member add it by hand"},
		{Name: StepAddLearner, Risk: remediator.RiskLow, Run: run.addLearner,
			Description: "add the member back as a learner with its peer URLs: a learner does not vote, so it cannot cost the quorum"},
		{Name: StepSetFlags, Risk: remediator.RiskLow, Run: run.setFlags,
			Description: "set --initial-cluster to the members as etcd lists them and --initial-cluster-state=existing in the member's manifest"},
		{Name: StepStart, Risk: remediator.RiskLow, Run: run.start,
			Description: "start the member's etcd, which fetches the data from the leader, and wait until it answers as the new member"},
		{Name: StepPromote, Risk: remediator.RiskHigh, Run: run.promote,
			Description: "promote the learner to a voting member once the leader finds it in sync",
			Undo:        "etcd cannot demote a member: to take its vote away, remove it and add it back as a learner"},
		{Name: StepVerify, Risk: remediator.RiskLow, Run: run.verify,
			Description: fmt.Sprintf("every member votes and is healthy, a write under %s reads back from every member, and the raft indexes agree", s.ProbePrefix)},
	}, nil
}

type replaceRun struct {
	*Replace
	ReplaceParams
}

func (r *replaceRun) joiner(in remediator.StepInput) joiner {
	return joiner{nodes: r.nodes, cluster: in.Incident.Cluster, incident: in.Incident.ID, timing: r.timing}
}

// target is the member preflight chose, as it was then.
func (r *replaceRun) target(in remediator.StepInput) (target, error) {
	t, _, err := remediator.Findings[target](in.Incident, StepPreflight)
	if err != nil {
		return t, err
	}
	if t.Name == "" {
		return t, remediator.Errorf(remediator.EPRECONDITION, "preflight recorded no member to replace")
	}
	return t, nil
}

// onTarget runs a step's body on the member preflight chose, with a view of the cluster
// through the other members.
func (r *replaceRun) onTarget(ctx context.Context, in remediator.StepInput, body func(target, *view) (remediator.StepResult, error)) (remediator.StepResult, error) {
	t, err := r.target(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	v, err := r.look(ctx, in, t)
	if err != nil {
		return remediator.StepResult{}, err
	}
	defer v.close()
	return body(t, v)
}

// look lists the members through any member but the one being replaced, whose endpoint may
// be gone from the member list.
func (r *replaceRun) look(ctx context.Context, in remediator.StepInput, t target) (*view, error) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return nil, err
	}
	return look(ctx, cl, lookOptions{avoid: append([]string{t.Endpoint}, t.ClientURLs...), absent: t.ClientURLs})
}

func (r *replaceRun) preflight(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	cl, err := r.clients.Get(in.Incident.Cluster)
	if err != nil {
		return remediator.StepResult{}, err
	}
	v, err := look(ctx, cl, lookOptions{})
	if remediator.ErrorCode(err) == remediator.EUNAVAILABLE {
		// No member with a leader answers: what the members say on their own shows why.
		v, err = look(ctx, cl, lookOptions{serializable: true})
	}
	if err != nil {
		return remediator.StepResult{}, err
	}
	defer v.close()
	statuses, alarmErr := v.statuses(ctx)
	res := remediator.StepResult{Output: strings.Join(append(v.notes, etcdops.Describe(statuses)), "\n"), Before: statuses}
	name := r.Member
	if name == "" {
		if name, err = memberFromAlerts(in.Incident.Evidence, v.members); err != nil {
			return res, err
		}
	}
	i := slices.IndexFunc(v.members, func(m member) bool { return m.Name == name })
	if i < 0 {
		var names []string
		for _, m := range v.members {
			names = append(names, m.Name)
		}
		return res, remediator.Errorf(remediator.EPRECONDITION, "member %q is not in the cluster's member list (%s)", name, strings.Join(names, ", "))
	}
	m, st := v.members[i], statuses[i]
	var why string
	switch {
	case st.Error != "":
		why = "it is unhealthy: " + st.Error
	case corrupt(st):
		why = "it has a CORRUPT alarm: its data disagrees with the others'"
	case r.Force:
		why = "params.force is true"
	default:
		return res, remediator.NothingToDof("member %s is healthy and has no CORRUPT alarm: it needs no replacing (set params.force=true to replace it anyway)", m.Member)
	}
	if err := checkWithout(v.members, statuses, hexID(m.ID), m.Member.String()); err != nil {
		return res, err
	}
	if alarmErr != nil {
		return res, alarmErr
	}
	t := targetOf(m)
	if len(t.PeerURLs) == 0 || t.Endpoint == "" {
		return res, remediator.Errorf(remediator.EPRECONDITION, "member %s advertises no peer or client URL: it cannot be added back as it was", m.Member)
	}
	if _, err := r.joiner(in).checkNode(ctx, t); err != nil {
		return res, err
	}
	if err := in.SaveProgress(ctx, t); err != nil {
		return res, err
	}
	res.Output = fmt.Sprintf("replacing member %s at %s: %s; the %d other members keep a quorum without it\n%s",
		m.Member, t.Endpoint, why, len(v.members)-1, res.Output)
	return res, nil
}

// snapshotSource is a healthy member other than the one being replaced.
func (r *replaceRun) snapshotSource(ctx context.Context, in remediator.StepInput) (etcdops.SnapshotSource, error) {
	t, err := r.target(in)
	if err != nil {
		return etcdops.SnapshotSource{}, err
	}
	v, err := r.look(ctx, in, t)
	if err != nil {
		return etcdops.SnapshotSource{}, err
	}
	statuses, err := v.statuses(ctx)
	if err != nil {
		v.close()
		return etcdops.SnapshotSource{}, err
	}
	return etcdops.SnapshotSource{Maintenance: v.maintenance(), Via: v.via, Statuses: statuses, Close: v.close}, nil
}

// checkStill refuses, where the member is still in the cluster, unless the others keep a
// quorum without it: a forced member may be healthy, and another may have failed since
// preflight.
func (r *replaceRun) checkStill(ctx context.Context, v *view, t target) error {
	if _, ok := v.byID(t.ID); !ok {
		return nil
	}
	statuses, alarmErr := v.statuses(ctx)
	if err := checkWithout(v.members, statuses, t.ID, t.String()); err != nil {
		return err
	}
	return alarmErr
}

func (r *replaceRun) stop(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return r.onTarget(ctx, in, func(t target, v *view) (remediator.StepResult, error) {
		if err := r.checkStill(ctx, v, t); err != nil {
			return remediator.StepResult{}, err
		}
		out, err := r.joiner(in).stop(ctx, t)
		return remediator.StepResult{Output: out}, err
	})
}

func (r *replaceRun) moveData(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	t, err := r.target(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	res, err := r.joiner(in).moveData(ctx, t)
	if err != nil {
		return remediator.StepResult{}, err
	}
	return remediator.StepResult{Output: fmt.Sprintf("node %s: %s", res.Node, res.Output)}, nil
}

func (r *replaceRun) remove(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return r.onTarget(ctx, in, func(t target, v *view) (remediator.StepResult, error) {
		did := "was already removed"
		if m, ok := v.byID(t.ID); ok {
			if err := r.removeMember(ctx, in, v, t, m); err != nil {
				return remediator.StepResult{}, err
			}
			did = "is removed"
		}
		out := []string{fmt.Sprintf("member %s %s; the members are %s", t, did, describeMembers(v.members))}
		disarmed, err := disarmGone(ctx, v)
		out = append(out, disarmed...)
		return remediator.StepResult{Output: strings.Join(out, "\n")}, err
	})
}

func (r *replaceRun) removeMember(ctx context.Context, in remediator.StepInput, v *view, t target, m member) error {
	// A removed member that still runs keeps calling the others, and a restarted one would
	// come back with whatever its data dir holds.
	ins, err := r.joiner(in).act(ctx, t, remediator.ActionInspect, nil, nil)
	if err != nil {
		return err
	}
	if ins.Running || ins.HasData {
		return remediator.Errorf(remediator.EPRECONDITION,
			"member %s's etcd on node %s is configured to run (%v) or has data (%v) again: not removing it; the stop and move-data steps must hold", t, ins.Node, ins.Running, ins.HasData)
	}
	if err := r.checkStill(ctx, v, t); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	if _, err := v.cluster.MemberRemove(rctx, m.ID); err != nil && !errorIs(err, rpctypes.ErrMemberNotFound) {
		return etcdops.Classify(err, "remove member %s", m.Member)
	}
	return v.refresh(ctx)
}

// learner is what add-learner saved: the ID of the member added back.
type learner struct {
	ID string `json:"id"`
}

func (r *replaceRun) learnerID(in remediator.StepInput) (uint64, error) {
	l, ok, err := remediator.Findings[learner](in.Incident, StepAddLearner)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, remediator.Errorf(remediator.EPRECONDITION, "add-learner recorded no new member")
	}
	return parseID(l.ID)
}

func (r *replaceRun) addLearner(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return r.onTarget(ctx, in, func(t target, v *view) (remediator.StepResult, error) {
		id, out, err := r.joiner(in).addLearner(ctx, v, t)
		if err != nil {
			return remediator.StepResult{Output: out}, err
		}
		return remediator.StepResult{Output: out}, in.SaveProgress(ctx, learner{ID: hexID(id)})
	})
}

// joining runs a phase that needs the member, the new member's ID and the cluster.
func (r *replaceRun) joining(ctx context.Context, in remediator.StepInput, phase func(joiner, context.Context, *view, target, uint64) (string, error)) (remediator.StepResult, error) {
	id, err := r.learnerID(in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	return r.onTarget(ctx, in, func(t target, v *view) (remediator.StepResult, error) {
		out, err := phase(r.joiner(in), ctx, v, t, id)
		return remediator.StepResult{Output: out}, err
	})
}

func (r *replaceRun) setFlags(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return r.joining(ctx, in, joiner.setFlags)
}

func (r *replaceRun) start(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return r.joining(ctx, in, joiner.start)
}

func (r *replaceRun) promote(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return r.joining(ctx, in, joiner.promote)
}

func (r *replaceRun) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	t, err := r.target(in)
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
	i := slices.IndexFunc(v.members, func(m member) bool { return m.Name == t.Name })
	switch {
	case i < 0:
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "member %s is not in the cluster (%s)", t.Name, describeMembers(v.members))
	case hexID(v.members[i].ID) == t.ID:
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "member %s still has its old ID %s: it was not replaced", t.Name, t.ID)
	case v.members[i].Learner:
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "member %s (%x) is still a learner", t.Name, v.members[i].ID)
	}
	out, statuses, err := settleAndProbe(ctx, v, r.ProbePrefix, in.Incident.ID, r.HealthTimeout)
	out = fmt.Sprintf("member %s is back as voting member %x (it was %s)\n%s", t.Name, v.members[i].ID, t.ID, out)
	return remediator.StepResult{Output: out, After: statuses}, err
}

// settleAndProbe waits for the members to be healthy and in step, proves with a probe write
// that each of them has the data, and waits for them to be in step again.
func settleAndProbe(ctx context.Context, v *view, prefix, incident string, timeout time.Duration) (string, []remediator.MemberStatus, error) {
	if statuses, err := settle(ctx, v, timeout); err != nil {
		return etcdops.Describe(statuses), statuses, err
	}
	probed, err := etcdops.Probe(ctx, v.cl, v.kv, v.via, v.plain(), etcdops.ProbeKey(prefix, incident))
	if err != nil {
		return "", nil, err
	}
	statuses, err := settle(ctx, v, timeout)
	return probed + "\n" + etcdops.Describe(statuses), statuses, err
}

func describeMembers(members []member) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.Member.String()
		if m.Learner {
			parts[i] += " learner"
		}
	}
	return strings.Join(parts, ", ")
}

// alertLabels are the labels that may name the member an alert is about, most telling first.
var alertLabels = []string{"member", "name", "node", "pod", "instance"}

// memberFromAlerts finds the one member the incident's alerts (the firing ones, if any) are
// about.
func memberFromAlerts(alerts []remediator.Alert, members []member) (string, error) {
	var firing []remediator.Alert
	for _, a := range alerts {
		if a.Status == remediator.AlertFiring {
			firing = append(firing, a)
		}
	}
	if len(firing) == 0 {
		firing = alerts
	}
	found := map[string]bool{}
	var labels []string
	for _, a := range firing {
		for _, key := range alertLabels {
			value := a.Labels[key]
			if value == "" {
				continue
			}
			labels = append(labels, key+"="+value)
			if name, ok := memberNamed(key, value, members); ok {
				found[name] = true
				break
			}
		}
	}
	names := slices.Sorted(maps.Keys(found))
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", remediator.Errorf(remediator.EPRECONDITION, "the alerts do not say which member to replace (their labels %v name no member of %s): set params.member",
			labels, describeMembers(members))
	}
	return "", remediator.Errorf(remediator.EPRECONDITION, "the alerts name several members (%s): set params.member to the one to replace", strings.Join(names, ", "))
}

// memberNamed finds the member a label value names: by its name (a kubeadm pod is
// etcd-<node>), or by the host and port, or else the host alone, of one of its URLs.
func memberNamed(label, value string, members []member) (string, bool) {
	for _, m := range members {
		if m.Started && (m.Name == value || label == "pod" && "etcd-"+m.Name == value) {
			return m.Name, true
		}
	}
	host := value
	if h, _, err := net.SplitHostPort(value); err == nil {
		host = h
	}
	for _, same := range []func(u string) bool{
		func(u string) bool { return hostPort(u) == value },
		func(u string) bool { h, _, _ := net.SplitHostPort(hostPort(u)); return h == host },
	} {
		var hits []string
		for _, m := range members {
			if slices.ContainsFunc(slices.Concat(m.ClientURLs, m.PeerURLs), same) {
				hits = append(hits, m.Name)
			}
		}
		if len(hits) == 1 {
			return hits[0], true
		}
		if len(hits) > 1 {
			return "", false
		}
	}
	return "", false
}
