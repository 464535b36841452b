// Package apiserver is the apiserver-etcd-healthcheck-timeout remediation (seed 002):
// kube-apiserver restarts every few minutes because its etcd check fails. etcd, on a disk too
// slow for it, does not answer the check's read of /registry/health within the 2s
// kube-apiserver gives it by default (`[-]etcd failed: reason withheld`, and in etcd's log
// `took too long (2.000041013s) to execute`). The fix that holds is a faster disk; the one that
// buys time is a longer timeout. So this measures the disk from etcd's own latency histograms,
// doubles --etcd-healthcheck-timeout and --etcd-readycheck-timeout in kube-apiserver.yaml up
// to a cap, one control-plane node at a time, keeps a raise only where kube-apiserver is then
// ready, and says what the disk measured.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/poll"
	"github.com/remediator/remediator/remediations/nodeops"
	"github.com/remediator/remediator/remediations/params"
)

// Name is the remediation's name in policies.
const Name = "apiserver-etcd-healthcheck-timeout"

const (
	healthcheckFlag = "etcd-healthcheck-timeout"
	readycheckFlag  = "etcd-readycheck-timeout"
	// defaultTimeout is what kube-apiserver gives both checks when its flag is absent.
	defaultTimeout = 2 * time.Second
	// oneLook makes the agent's health action ask once instead of waiting for a 200, so that
	// a failure between two ready answers is seen.
	oneLook = remediator.Duration(time.Millisecond)
)

// Etcd gives a cluster's etcd client, to list its members, and an HTTP client with the
// cluster's TLS settings, to read their metrics; *etcdops.Clients is one.
type Etcd interface {
	Get(cluster string) (*clientv3.Client, error)
	HTTPClient(cluster string) (*http.Client, error)
}

// Remediation is apiserver-etcd-healthcheck-timeout.
type Remediation struct {
	etcd  Etcd
	nodes *nodeops.Nodes
}

// New returns the remediation. It reaches kube-apiserver through the agents of nodes, by node
// name; nodes.Names says which node each etcd member runs on, for the nodes to act on when
// neither the parameters nor the alerts name one.
func New(etcd Etcd, nodes *nodeops.Nodes) *Remediation {
	return &Remediation{etcd: etcd, nodes: nodes}
}

// Params are the remediation's parameters.
type Params struct {
	Node          string        `param:"node" doc:"the control-plane node(s) whose kube-apiserver restarts, comma-separated (none: the nodes the alerts name by label node, pod kube-apiserver-NODE, or instance; if they name none, every node that runs an etcd member, one at a time: a slow etcd fails every kube-apiserver's check)"`
	MaxTimeout    time.Duration `param:"max_timeout" default:"8s" min:"2s" doc:"the longest timeout the doubling goes to (two doublings of the 2s default, past the seed's 4s, and well under the 15s in which kubeadm's probes give up on /readyz and /livez; at most 1m)"`
	HealthTimeout time.Duration `param:"health_timeout" default:"3m" min:"1s" doc:"how long a kube-apiserver may take to be ready after its restart"`
	StableFor     time.Duration `param:"stable_for" default:"30s" doc:"how long it must then stay ready: a ready answer right after the edit may still come from the old pod"`
	SampleWindow  time.Duration `param:"sample_window" default:"30s" doc:"how long to watch etcd's disk latency for the p99 of now (0s reads only the totals since each member started)"`
}

// Params lists the remediation's parameters.
func (r *Remediation) Params() []params.Field { return params.Fields(&Params{}) }

// The steps, by name: later steps read what earlier ones saved.
const (
	StepEvidence = "evidence"
	StepInspect  = "inspect"
	StepRaise    = "raise"
	StepVerify   = "verify"
)

func splitNodes(s string) []string {
	var out []string
	for n := range strings.SplitSeq(s, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// Plan returns the steps for the given parameters.
func (r *Remediation) Plan(p map[string]string) ([]remediator.PlannedStep, error) {
	return params.Plan(p, r.steps)
}

func (r *Remediation) steps(s Params) ([]remediator.PlannedStep, error) {
	// The agent's health action gives a check no longer than this.
	if s.MaxTimeout > remediator.MaxCheckTimeout {
		return nil, params.Invalid(fmt.Errorf("params.max_timeout: must be at most %s (the node agent sets no longer timeout)", remediator.MaxCheckTimeout))
	}
	run := &run{Remediation: r, Params: s}
	return []remediator.PlannedStep{
		{Name: StepEvidence, Risk: remediator.RiskReadOnly, Run: run.evidence,
			Description: "quote the alerts' etcd check failures and slow requests, and read every etcd member's p99 WAL fsync and backend commit latency from its /metrics against etcd's guidance (under 10ms and 25ms); nothing to do if neither shows etcd slow"},
		{Name: StepInspect, Risk: remediator.RiskReadOnly, Run: run.inspect,
			Description: fmt.Sprintf("read kube-apiserver's etcd check timeouts on each node (2s when unset) and plan to double them, up to %s; refuse where they already are at it", s.MaxTimeout)},
		{Name: StepRaise, Risk: remediator.RiskHigh, Run: run.raise,
			Description: "set the doubled --etcd-healthcheck-timeout and --etcd-readycheck-timeout in kube-apiserver.yaml after a backup, one node at a time: the kubelet restarts kube-apiserver there, and it must be ready again before the next node's is touched",
			Undo:        "step verify rolls back a kube-apiserver that is not ready; by hand, put back each node's kube-apiserver.yaml from the backup the step kept (kube-apiserver restarts once more)"},
		{Name: StepVerify, Risk: remediator.RiskLow, Run: run.verify,
			Description: fmt.Sprintf("every raised kube-apiserver is ready within %s and stays ready for %s; one that is not is rolled back to its manifest as found, which restarts it once more", s.HealthTimeout, s.StableFor)},
	}, nil
}

type run struct {
	*Remediation
	Params
}

// ask sends an action about kube-apiserver to the agent of a node.
func (r *run) ask(ctx context.Context, in remediator.StepInput, node string, act remediator.NodeAction) (remediator.NodeResult, error) {
	act.Component, act.Incident = remediator.ComponentAPIServer, in.Incident.ID
	return r.nodes.Ask(ctx, in.Incident.Cluster, node, act)
}

// nodePlan is what inspect found on a node and what raise sets there.
type nodePlan struct {
	Node string `json:"node"`
	// Found holds each flag's value as found; an absent flag is not in it.
	Found map[string]string `json:"found"`
	Set   map[string]string `json:"set"`
	// Current describes every check timeout considered, as found.
	Current string `json:"current"`
	// Note says why a flag is left alone.
	Note string `json:"note,omitempty"`
}

func (p nodePlan) String() string {
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(p.Set)) {
		was, ok := p.Found[f]
		if !ok {
			was = defaultTimeout.String() + " (unset, kube-apiserver's default)"
		}
		parts = append(parts, fmt.Sprintf("--%s %s -> %s", f, was, p.Set[f]))
	}
	out := p.Node + ": " + strings.Join(parts, ", ")
	if p.Note != "" {
		out += "; " + p.Note
	}
	return out
}

// flagsText writes the flags as they appear on the command line.
func flagsText(set map[string]string) string {
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(set)) {
		parts = append(parts, "--"+f+"="+set[f])
	}
	return strings.Join(parts, ", ")
}

// inspection is the inspect step's progress: the plan the later steps carry out, fixed once,
// so that a repeated raise does not double what it already doubled.
type inspection struct {
	Why   string     `json:"why"`
	Nodes []nodePlan `json:"nodes"`
}

func (i inspection) String() string {
	lines := []string{i.Why}
	for _, p := range i.Nodes {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

func (r *run) inspect(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	saved, _, err := remediator.Progress[inspection](in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if len(saved.Nodes) > 0 {
		return remediator.StepResult{Output: saved.String() + "\n(planned by an earlier attempt)"}, nil
	}
	nodes, why, err := r.targets(ctx, in)
	if err != nil {
		return remediator.StepResult{}, err
	}
	plan := inspection{Why: why}
	var atCap []string
	for _, node := range nodes {
		p, err := r.plan(ctx, in, node)
		if err != nil {
			return remediator.StepResult{Output: plan.String()}, err
		}
		if len(p.Set) == 0 {
			atCap = append(atCap, fmt.Sprintf("kube-apiserver on %s already gives etcd's checks %s", node, p.Current))
			continue
		}
		plan.Nodes = append(plan.Nodes, p)
	}
	if len(atCap) > 0 {
		ev, _, err := remediator.Findings[evidence](in.Incident, StepEvidence)
		if err != nil {
			return remediator.StepResult{Output: plan.String()}, err
		}
		return remediator.StepResult{Output: plan.String()}, remediator.Errorf(remediator.EPRECONDITION,
			"%s, and max_timeout is %s: a longer wait would only hide an etcd that is failing. etcd itself must answer faster: move its data dir to an SSD. %s",
			strings.Join(atCap, "; "), r.MaxTimeout, ev.diskSummary())
	}
	if err := in.SaveProgress(ctx, plan); err != nil {
		return remediator.StepResult{}, err
	}
	return remediator.StepResult{Output: plan.String()}, nil
}

// plan reads kube-apiserver's flags on a node and doubles each check timeout below the cap.
func (r *run) plan(ctx context.Context, in remediator.StepInput, node string) (nodePlan, error) {
	res, err := r.ask(ctx, in, node, remediator.NodeAction{Kind: remediator.ActionInspect})
	if err != nil {
		return nodePlan{}, remediator.Errorf(remediator.ErrorCode(err), "inspect kube-apiserver: %w", err)
	}
	if !res.Running {
		return nodePlan{}, remediator.Errorf(remediator.EPRECONDITION,
			"kube-apiserver on node %s is stopped (its manifest is out of the manifests folder): not raising a timeout of a kube-apiserver someone stopped", node)
	}
	p := nodePlan{Node: node, Found: map[string]string{}, Set: map[string]string{}}
	flags := []string{healthcheckFlag}
	if ok, note := r.knowsReadycheck(ctx, in, node, res.Flags); ok {
		flags = append(flags, readycheckFlag)
	} else {
		p.Note = note
	}
	var current []string
	for _, f := range flags {
		cur := defaultTimeout
		current = append(current, fmt.Sprintf("--%s=%s (unset)", f, cur))
		if v, ok := res.Flags[f]; ok {
			current[len(current)-1] = "--" + f + "=" + v
			p.Found[f] = v
			if cur, err = time.ParseDuration(v); err != nil || cur <= 0 {
				return nodePlan{}, remediator.Errorf(remediator.EPRECONDITION,
					"kube-apiserver on node %s has --%s=%q, which is no positive duration: not guessing what it meant", node, f, v)
			}
		}
		if cur < r.MaxTimeout {
			p.Set[f] = min(2*cur, r.MaxTimeout).String()
		}
	}
	p.Current = strings.Join(current, ", ")
	return p, nil
}

// knowsReadycheck says whether kube-apiserver has --etcd-readycheck-timeout (1.26 and later),
// from its /readyz?verbose: an older one does not start with a flag it does not know.
func (r *run) knowsReadycheck(ctx context.Context, in remediator.StepInput, node string, flags map[string]string) (bool, string) {
	if _, ok := flags[readycheckFlag]; ok {
		return true, ""
	}
	res, _ := r.ask(ctx, in, node, remediator.NodeAction{Kind: remediator.ActionHealth, Timeout: oneLook})
	return listsReadycheck(res.HealthOutput)
}

// listsReadycheck reads a /readyz?verbose answer: one that lists checks but no etcd-readiness
// comes from a kube-apiserver older than 1.26. No list (no answer) is taken for a newer one.
func listsReadycheck(readyz string) (bool, string) {
	listed := strings.Contains(readyz, "[+]") || strings.Contains(readyz, "[-]")
	if listed && !strings.Contains(readyz, "etcd-readiness") {
		return false, fmt.Sprintf("its /readyz lists no etcd-readiness check, so it is older than 1.26 and would not start with --%s: left unset", readycheckFlag)
	}
	return true, ""
}

// raised is one node whose manifest raise changed.
type raised struct {
	Node   string `json:"node"`
	Backup string `json:"backup,omitempty"`
	Output string `json:"output"`
}

type raiseProgress struct {
	Raised []raised `json:"raised"`
}

func (r *run) raise(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	plan, _, err := remediator.Findings[inspection](in.Incident, StepInspect)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if len(plan.Nodes) == 0 {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no plan recorded by the inspect step: not raising anything")
	}
	p, _, err := remediator.Progress[raiseProgress](in) // none yet: start with the first node
	if err != nil {
		return remediator.StepResult{}, err
	}
	var out []string
	for _, d := range p.Raised {
		out = append(out, d.Output+" (by an earlier attempt)")
	}
	for i, np := range plan.Nodes {
		if slices.ContainsFunc(p.Raised, func(d raised) bool { return d.Node == np.Node }) {
			continue
		}
		if i > 0 {
			// Restarting the next kube-apiserver while the last one is not serving again
			// could leave the cluster with none.
			prev := plan.Nodes[i-1]
			res, ok, err := r.ready(ctx, in, prev.Node)
			if err != nil {
				return remediator.StepResult{Output: strings.Join(out, "\n")}, err
			}
			if !ok {
				rolled, err := r.rollBack(ctx, in, prev.Node, p.Raised)
				out = append(out, rolled)
				if err != nil {
					return remediator.StepResult{Output: strings.Join(out, "\n")}, err
				}
				var rest []string
				for _, n := range plan.Nodes[i:] {
					rest = append(rest, n.Node)
				}
				return remediator.StepResult{Output: strings.Join(out, "\n")}, remediator.Errorf(remediator.EPRECONDITION,
					"%s; rolled it back and left %s alone. %s", r.notReady(prev, res), strings.Join(rest, ", "), tooSlow(prev))
			}
			out = append(out, fmt.Sprintf("%s: kube-apiserver ready for %s", prev.Node, r.StableFor))
		}
		res, err := r.ask(ctx, in, np.Node, remediator.NodeAction{Kind: remediator.ActionSetFlags, Set: np.Set})
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, remediator.Errorf(remediator.ErrorCode(err), "raise the etcd check timeouts: %w", err)
		}
		line := fmt.Sprintf("%s: %s%s", np.Node, res.Output, restarts(res, "; the kubelet restarts kube-apiserver"))
		p.Raised = append(p.Raised, raised{Node: np.Node, Backup: res.Backup, Output: line})
		if err := in.SaveProgress(ctx, p); err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		out = append(out, line)
	}
	return remediator.StepResult{Output: strings.Join(out, "\n")}, nil
}

type verifyProgress struct {
	RolledBack []string `json:"rolled_back,omitempty"`
}

func (r *run) verify(ctx context.Context, in remediator.StepInput) (remediator.StepResult, error) {
	plan, planned, err := remediator.Findings[inspection](in.Incident, StepInspect)
	if err != nil {
		return remediator.StepResult{}, err
	}
	done, didRaise, err := remediator.Findings[raiseProgress](in.Incident, StepRaise)
	if err != nil {
		return remediator.StepResult{}, err
	}
	if !planned || !didRaise {
		return remediator.StepResult{}, remediator.Errorf(remediator.EPRECONDITION, "no raise recorded: nothing to verify")
	}
	ev, _, err := remediator.Findings[evidence](in.Incident, StepEvidence)
	if err != nil {
		return remediator.StepResult{}, err
	}
	p, _, err := remediator.Progress[verifyProgress](in) // none yet: nothing rolled back
	if err != nil {
		return remediator.StepResult{}, err
	}
	var out, failed []string
	for _, np := range plan.Nodes {
		if !slices.ContainsFunc(done.Raised, func(d raised) bool { return d.Node == np.Node }) {
			continue
		}
		if slices.Contains(p.RolledBack, np.Node) {
			// An earlier attempt found it not ready and rolled it back: it stays failed,
			// whatever it answers now at its old timeout.
			rolled, err := r.rollBack(ctx, in, np.Node, done.Raised)
			out = append(out, rolled)
			if err != nil {
				return remediator.StepResult{Output: strings.Join(out, "\n")}, err
			}
			failed = append(failed, fmt.Sprintf("kube-apiserver on %s was not ready with %s and was rolled back by an earlier attempt", np.Node, flagsText(np.Set)))
			continue
		}
		res, ok, err := r.ready(ctx, in, np.Node)
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		if ok {
			out = append(out, fmt.Sprintf("%s: kube-apiserver ready for %s with %s", np.Node, r.StableFor, flagsText(np.Set)))
			continue
		}
		p.RolledBack = append(p.RolledBack, np.Node)
		if err := in.SaveProgress(ctx, p); err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		out = append(out, fmt.Sprintf("%s: not ready; /readyz?verbose said:\n%s", np.Node, indent(failures(res.HealthOutput))))
		rolled, err := r.rollBack(ctx, in, np.Node, done.Raised)
		out = append(out, rolled)
		if err != nil {
			return remediator.StepResult{Output: strings.Join(out, "\n")}, err
		}
		failed = append(failed, r.notReady(np, res)+"; rolled it back. "+tooSlow(np))
	}
	out = append(out, ev.rootCause())
	res := remediator.StepResult{Output: strings.Join(out, "\n")}
	if len(failed) > 0 {
		return res, remediator.Errorf(remediator.EPRECONDITION, "%s", strings.Join(failed, "\n"))
	}
	return res, nil
}

// ready waits until the node's kube-apiserver answers ready, for up to health_timeout, and
// then until it has answered ready on every look for stable_for. Not ready is no error; an
// agent that does not answer, or cannot look, is.
func (r *run) ready(ctx context.Context, in remediator.StepInput, node string) (remediator.NodeResult, bool, error) {
	var (
		since time.Time
		last  remediator.NodeResult
	)
	// The health_timeout bounds how long it may take to become ready; a node ready by then
	// gets its stable_for.
	deadline := time.Now().Add(r.HealthTimeout)
	every := min(max(r.StableFor/10, 100*time.Millisecond), 2*time.Second)
	err := poll.Until(ctx, 0, every, func(ctx context.Context) (bool, error) {
		res, err := r.ask(ctx, in, node, remediator.NodeAction{Kind: remediator.ActionHealth, Timeout: oneLook})
		now := time.Now()
		switch {
		case err == nil:
			last = res
			if since.IsZero() {
				since = now
			}
			if now.Sub(since) >= r.StableFor {
				return true, nil
			}
		case res.Node == "" || remediator.ErrorCode(err) != remediator.EUNAVAILABLE:
			last = res
			return false, poll.Stop(remediator.Errorf(remediator.ErrorCode(err), "health of kube-apiserver: %w", err))
		default:
			last, since = res, time.Time{}
		}
		if since.IsZero() && now.After(deadline) {
			return false, poll.Stop(poll.ErrTimeout)
		}
		return false, nil
	})
	switch {
	case err == nil:
		return last, true, nil
	case ctx.Err() != nil:
		return last, false, ctx.Err()
	case errors.Is(err, poll.ErrTimeout):
		return last, false, nil
	}
	return last, false, err
}

// rollBack puts the node's kube-apiserver manifest back as raise found it.
func (r *run) rollBack(ctx context.Context, in remediator.StepInput, node string, done []raised) (string, error) {
	// Without a recorded backup (raise's reply was lost) the agent takes the incident's
	// first backup of the file, which is the file as found.
	var backup string
	if i := slices.IndexFunc(done, func(d raised) bool { return d.Node == node }); i >= 0 {
		backup = done[i].Backup
	}
	res, err := r.ask(ctx, in, node, remediator.NodeAction{Kind: remediator.ActionRollback, Backup: backup})
	if err != nil {
		return "", remediator.Errorf(remediator.ErrorCode(err), "roll back kube-apiserver, which is not ready: %w", err)
	}
	return fmt.Sprintf("%s: %s%s", node, res.Output, restarts(res, "; the kubelet restarts kube-apiserver with its old timeouts")), nil
}

// restarts says what the kubelet does after an edit: restart kube-apiserver, or nothing when
// the manifest was already as asked.
func restarts(res remediator.NodeResult, says string) string {
	if !res.Changed {
		return "; kube-apiserver is not restarted"
	}
	return says
}

func (r *run) notReady(p nodePlan, res remediator.NodeResult) string {
	said := failures(res.HealthOutput)
	if said == "" {
		said = "(nothing: " + res.Output + ")"
	}
	return fmt.Sprintf("kube-apiserver on %s was not ready for %s within %s of %s; its /readyz?verbose said:\n%s",
		p.Node, r.StableFor, r.HealthTimeout, flagsText(p.Set), indent(said))
}

// failures is what a /readyz?verbose answer says is wrong: its lines but the passed checks,
// which it counts. kube-apiserver 1.37 lists some forty checks, and one or two fail.
func failures(readyz string) string {
	var (
		out    []string
		passed int
	)
	for line := range strings.Lines(strings.TrimSpace(readyz)) {
		if strings.HasPrefix(line, "[+]") {
			passed++
			continue
		}
		out = append(out, strings.TrimRight(line, "\n"))
	}
	if passed > 0 {
		out = append(out, fmt.Sprintf("(and %d checks ok)", passed))
	}
	return strings.Join(out, "\n")
}

func tooSlow(p nodePlan) string {
	var longest time.Duration
	for _, v := range p.Set {
		d, _ := time.ParseDuration(v)
		longest = max(longest, d)
	}
	return fmt.Sprintf("Raising the timeouts was not enough: etcd answers kube-apiserver's checks slower than %s. Only a faster etcd helps: move its data dir to an SSD.", longest)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ")
}
