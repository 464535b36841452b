// Package probeguard is etcd-liveness-probe-guard (seed 004): a NOSPACE recovery that first
// turns off the etcd liveness probes that would kill etcd while it is being repaired. kubeadm
// manifests older than v1.20 probe /health, which fails while the NOSPACE alarm is armed, so
// the kubelet restarts etcd over and over and defragmentation never finishes. Modern manifests
// probe /health?exclude=NOSPACE and are left as they are. The probes are turned back on after
// the recovery, also when it fails.
package probeguard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "etcd-liveness-probe-guard"

// Nodes sends an action to the agent of the node an etcd member runs on.
type Nodes interface {
	Do(ctx context.Context, cluster, member string, act remediator.NodeAction) (remediator.NodeResult, error)
}

// Recovery is the NOSPACE recovery the guard wraps.
type Recovery interface {
	Plan(params map[string]string) ([]remediator.PlannedStep, error)
	Params() []params.Field
}

// Params are the guard's own parameters; it takes the recovery's too.
type Params struct {
	RestartTimeout time.Duration `param:"restart_timeout" default:"2m" min:"1s" doc:"longest a member may take to answer again after its pod restarts"`
}

// Params lists the guard's parameters, then the recovery's.
func (r *Remediation) Params() []params.Field {
	return append(params.Fields(&Params{}), r.recovery.Params()...)
}

// The guard's steps, by name.
const (
	StepCheckProbes   = "check-probes"
	StepSuspendProbes = "suspend-probes"
	StepRestoreProbes = "restore-probes"
)

// Remediation is etcd-liveness-probe-guard.
type Remediation struct {
	clients  etcdops.Getter
	nodes    Nodes
	recovery Recovery
}

// New returns the remediation around a NOSPACE recovery.
func New(clients etcdops.Getter, nodes Nodes, recovery Recovery) *Remediation {
	return &Remediation{clients: clients, nodes: nodes, recovery: recovery}
}

// Plan returns the guard's steps around the recovery's, with the parameters of both.
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	ownNames := params.Names(params.Fields(&Params{}))
	own, rest := map[string]string{}, map[string]string{}
	for k, v := range p {
		if slices.Contains(ownNames, k) {
			own[k] = v
		} else {
			rest[k] = v
		}
	}
	g := &guard{Remediation: r}
	if err := params.Parse(own, &g.Params); err != nil {
		return nil, err
	}
	steps, err := r.recovery.Plan(rest)
	if err != nil {
		return nil, err
	}
	plan := []remediator.PlannedStep{
		{Name: StepCheckProbes, Risk: remediator.RiskReadOnly, Run: g.check,
			Description: "ask each member's node agent for etcd's liveness probe: one that asks /health without exclude=NOSPACE kills etcd while NOSPACE is armed"},
		// Editing a static pod manifest restarts the pod: each member restarts once.
		{Name: StepSuspendProbes, Risk: remediator.RiskHigh, Run: g.suspend,
			Description: "comment out those probes in etcd.yaml (backup kept), one member at a time, each answering again before the next; modern probes are left alone",
			Undo:        "step restore-probes turns them back on, also after a failure; by hand, put back each node's etcd.yaml from the backup the step kept (the pod restarts once more)"},
	}
	plan = append(plan, steps...)
	return append(plan, remediator.PlannedStep{Name: StepRestoreProbes, Risk: remediator.RiskLow, Always: true, Run: g.restore,
		Description: "turn the suspended probes back on, one member at a time, also when the recovery failed"}), nil
}

type guard struct {
	*Remediation
	Params
}

// probeState is what check-probes found: the members whose probe must be suspended.
type probeState struct {
	Unsafe []string `json:"unsafe"`
}

// excludesNOSPACE says whether a liveness probe target survives an armed NOSPACE alarm: only
// /health without exclude=NOSPACE fails on it.
func excludesNOSPACE(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	return path != "/health" || strings.Contains(query, "exclude=NOSPACE")
}

func (g *guard) check(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	v, err := etcdops.Look(ctx, g.clients, in.Incident.Cluster, false)
	if err != nil {
		return remediator.StepResult{}, err
	}
	members := v.Members
	// Every node at once: an inspection changes nothing, and nodes without an agent each
	// take the no-responder grace to tell.
	results := make([]remediator.NodeResult, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			results[i], errs[i] = g.nodes.Do(ctx, in.Incident.Cluster, m.Name, remediator.NodeAction{
				Kind: remediator.ActionInspect, Component: remediator.ComponentEtcd, Incident: in.Incident.ID})
		})
	}
	wg.Wait()
	var state probeState
	var out []string
	for i, m := range members {
		res, err := results[i], errs[i]
		switch {
		case err != nil:
			// Without an agent the guard can do no more than the plain recovery would.
			out = append(out, fmt.Sprintf("%s: probe not checked (%v); the recovery goes on without the guard there", m, err))
		case res.Probe == nil || !res.Probe.Present:
			out = append(out, fmt.Sprintf("%s: no liveness probe", m))
		case res.Probe.Suspended:
			state.Unsafe = append(state.Unsafe, m.Name)
			out = append(out, fmt.Sprintf("%s: liveness probe %s is already suspended", m, res.Probe.Target))
		case excludesNOSPACE(res.Probe.Target):
			out = append(out, fmt.Sprintf("%s: liveness probe %s survives NOSPACE: left alone", m, res.Probe.Target))
		default:
			state.Unsafe = append(state.Unsafe, m.Name)
			out = append(out, fmt.Sprintf("%s: liveness probe %s fails while NOSPACE is armed: the kubelet would kill etcd during the repair", m, res.Probe.Target))
		}
	}
	if err := in.SaveProgress(ctx, state); err != nil {
		return remediator.StepResult{}, err
	}
	res := remediator.StepResult{Output: strings.Join(out, "\n")}
	if len(state.Unsafe) > 0 {
		res.FollowUps = []string{fmt.Sprintf("point etcd's liveness probe on %s at /health?exclude=NOSPACE (as kubeadm does since v1.20), so that the kubelet does not kill etcd while NOSPACE is armed",
			strings.Join(state.Unsafe, ", "))}
	}
	return res, nil
}

// unsafe is what check-probes found.
func unsafe(inc remediator.Incident) ([]string, error) {
	state, _, err := remediator.Findings[probeState](inc, StepCheckProbes)
	return state.Unsafe, err
}

func (g *guard) suspend(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return g.each(ctx, in, remediator.ActionSuspendProbe)
}

func (g *guard) restore(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	return g.each(ctx, in, remediator.ActionRestoreProbe)
}

// each suspends or restores the probe of every member check-probes found, one at a time: a
// changed manifest restarts the pod, and the next member waits until this one answers.
func (g *guard) each(ctx context.Context, in remediator.StepInput, kind remediator.ActionKind) (remediator.StepResult, error) {
	names, err := unsafe(in.Incident)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if len(names) == 0 {
		return remediator.StepResult{Output: "no liveness probe needs it"}, nil
	}
	v, err := etcdops.Look(ctx, g.clients, in.Incident.Cluster, false)
	if err != nil {
		return remediator.StepResult{}, err
	}
	cl, members := v.Client, v.Members
	var out []string
	for _, name := range names {
		i := slices.IndexFunc(members, func(m etcdops.Member) bool { return m.Name == name })
		if i < 0 {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, remediator.Errorf(remediator.EPRECONDITION, "member %s is no longer in the cluster", name)
		}
		m := members[i]
		res, err := g.nodes.Do(ctx, in.Incident.Cluster, m.Name, remediator.NodeAction{Kind: kind, Component: remediator.ComponentEtcd, Incident: in.Incident.ID})
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		out = append(out, res.Output)
		if !res.Changed {
			continue
		}
		took, err := g.waitAnswers(ctx, cl, m)
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		out = append(out, fmt.Sprintf("%s answers again %s after its pod restarted", m, took.Round(100*time.Millisecond)))
	}
	return remediator.StepResult{Output: strings.Join(out, "\n")}, nil
}

// waitAnswers waits until the member's pod has restarted and it answers a status request with
// a leader. /health cannot tell: it fails while NOSPACE is armed, the very thing being fixed.
func (g *guard) waitAnswers(ctx context.Context, mt clientv3.Maintenance, m etcdops.Member) (time.Duration, error) {
	start := time.Now()
	// The kubelet notices a changed manifest within its sync period; give it time to stop
	// the old pod before the old pod's answer is taken for the new one's.
	if err := poll.Sleep(ctx, time.Second); err != nil {
		return 0, err
	}
	var last error = errors.New("no answer yet")
	err := poll.Looks(ctx, g.RestartTimeout, 250*time.Millisecond, func(ctx context.Context) (bool, error) {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := mt.Status(sctx, m.Endpoint)
		if err == nil && st.Leader == 0 {
			err = errors.New("it has no leader")
		}
		if err != nil {
			last = err
		}
		return err == nil, nil
	})
	if errors.Is(err, poll.ErrTimeout) {
		return 0, remediator.Errorf(remediator.EUNAVAILABLE, "member %s does not answer %s after its manifest changed: %v", m, g.RestartTimeout, last)
	}
	return time.Since(start), err
}
