package worker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/remediator/remediator"
)

// verdict is what the gates say about starting a run now; its name is the metric label.
type verdict string

const (
	admitRun     verdict = "run"
	admitDryRun  verdict = "dry_run"
	admitSkip    verdict = "skip"
	admitWait    verdict = "wait"
	admitApprove verdict = "approve"
)

func (v verdict) String() string { return string(v) }

// admission is a verdict plus its reason.
type admission struct {
	verdict verdict
	reason  string
	// until is when to look again, for admitWait.
	until time.Time
}

// admit applies the incident's gates to a run about to start. history holds the incidents of
// the same cluster and remediation; nil means it is not known (a simulation), and the gates
// that need it are not applied.
func admit(inc *remediator.Incident, history []remediator.Run, now time.Time, dryRun bool) admission {
	g := inc.Gates
	switch {
	case dryRun:
		return admission{verdict: admitDryRun, reason: "dry-run: remediator runs with dry_run on; the remediation is planned and none of it runs"}
	case inc.Mode == remediator.ModeDryRun:
		return admission{verdict: admitDryRun, reason: fmt.Sprintf("dry-run: policy %q plans this remediation and runs none of it", inc.Policy)}
	}
	escalate := func(reason string) admission {
		if g.Approval != nil {
			return admission{verdict: admitApprove, reason: reason + "; approve to run it anyway"}
		}
		return admission{verdict: admitSkip, reason: reason + "; not run, and the policy names no approvers who could allow it"}
	}
	if g.Cooldown > 0 && history != nil {
		if last := lastRun(inc, history); last != nil && now.Sub(last.FinishedAt) < time.Duration(g.Cooldown) {
			return escalate(fmt.Sprintf("cooldown: %s last ran on %s %s ago (incident %s, %s), within the %s cooldown: the problem came back",
				inc.Remediation, inc.Cluster, now.Sub(last.FinishedAt).Round(time.Second), last.Incident, last.State, time.Duration(g.Cooldown)))
		}
	}
	if g.MaxAttempts > 0 && history != nil {
		window := time.Duration(g.AttemptsWindow)
		if n := runsSince(history, now.Add(-window)); n >= g.MaxAttempts {
			return escalate(fmt.Sprintf("max_attempts: %s ran %d times on %s in the last %s (retries included), the most the policy allows",
				inc.Remediation, n, inc.Cluster, window))
		}
	}
	if m := g.Maintenance; m != nil && !inWindow(m, now) {
		next, ok := remediator.NextOpen(m.Windows, now)
		switch {
		case m.Outside == remediator.OutsideApprove:
			return escalate("outside the maintenance windows")
		case !ok:
			return escalate("outside the maintenance windows, and none opens within eight days")
		}
		return admission{verdict: admitWait, until: next,
			reason: fmt.Sprintf("outside the maintenance windows: waiting for the next, at %s", next.UTC().Format(time.RFC3339))}
	}
	return admission{verdict: admitRun}
}

// beforeStep applies the gates that hold before every step and not only at the start: a step
// that changes something does not run with dry_run turned on meanwhile, outside the
// maintenance windows of a policy that waits for them, or, at or above the approval risk,
// without approval (one of its own, at or above per_step_from).
func beforeStep(inc *remediator.Incident, step remediator.PlannedStep, now time.Time, dryRun bool) admission {
	changes := step.Risk != remediator.RiskReadOnly
	if changes && dryRun {
		return admission{verdict: admitDryRun, reason: fmt.Sprintf("dry-run: dry_run was turned on while the remediation ran; stopped before %s", step.Name)}
	}
	if m := inc.Gates.Maintenance; changes && m != nil && m.Outside == remediator.OutsideWait && !inWindow(m, now) {
		next, _ := remediator.NextOpen(m.Windows, now)
		return admission{verdict: admitWait, until: next,
			reason: fmt.Sprintf("outside the maintenance windows: %s waits for the next, at %s", step.Name, next.UTC().Format(time.RFC3339))}
	}
	if needsApproval(inc, step) {
		rule := inc.Gates.Approval
		if rule.PerStep(step.Risk) {
			return admission{verdict: admitApprove, reason: fmt.Sprintf("step %s is %s risk, and policy %q asks for a fresh approval of each step from %s risk on: an earlier approval does not cover it",
				step.Name, step.Risk, inc.Policy, rule.PerStepFrom)}
		}
		return admission{verdict: admitApprove, reason: fmt.Sprintf("step %s is %s risk, and policy %q asks for approval from %s risk on",
			step.Name, step.Risk, inc.Policy, rule.FromRisk)}
	}
	return admission{verdict: admitRun}
}

// inWindow says whether now is in one of the maintenance windows.
func inWindow(m *remediator.Maintenance, now time.Time) bool {
	return slices.ContainsFunc(m.Windows, func(w remediator.Window) bool { return w.Contains(now) })
}

// lastRun returns the other incident whose run (one that changed something: a run that only
// looked, and was then rejected, say, does not count) finished last.
func lastRun(inc *remediator.Incident, history []remediator.Run) *remediator.Run {
	var last *remediator.Run
	for i, h := range history {
		if h.Incident != inc.ID && !h.Changed.IsZero() && !h.FinishedAt.IsZero() && (last == nil || h.FinishedAt.After(last.FinishedAt)) {
			last = &history[i]
		}
	}
	return last
}

// runsSince counts the runs that started changing things after since: the other incidents',
// and this one's own earlier attempts (a retry is a run too). The history holds finished runs
// only, so this attempt is not among them.
func runsSince(history []remediator.Run, since time.Time) int {
	n := 0
	for _, h := range history {
		if h.Changed.After(since) {
			n++
		}
	}
	return n
}

// needsApproval says whether the step may run only once a human approved: its risk is at or
// above the policy's approval gate, and no approval was granted for this run yet or, for a
// step at or above per_step_from, none was granted for this very step.
func needsApproval(inc *remediator.Incident, step remediator.PlannedStep) bool {
	rule := inc.Gates.Approval
	if rule == nil || rule.FromRisk == "" || !step.Risk.AtLeast(rule.FromRisk) {
		return false
	}
	a := inc.Approval
	switch {
	case a == nil || !a.Granted:
		return true
	case rule.PerStep(step.Risk):
		return a.Gate != step.Name
	}
	return false
}

// Simulation is what would happen to an incident opened now, touching nothing.
type Simulation struct {
	// Start says whether the run would start, and why not.
	Start string
	Steps []SimulatedStep
}

// SimulatedStep is one planned step and its gate.
type SimulatedStep struct {
	Name, Description string
	Risk              remediator.Risk
	// Gate says what would happen before the step: "" (it runs), or why it would wait.
	Gate string
}

// Simulate applies a decision's gates to its plan at the given time. Cooldown and
// max_attempts depend on the incidents before, which a simulation does not read: it says so.
func Simulate(d remediator.Decision, cluster string, plan []remediator.PlannedStep, now time.Time, dryRun bool) Simulation {
	inc := remediator.NewIncident("simulated", cluster, d, now)
	a := admit(inc, nil, now, dryRun)
	sim := Simulation{Start: "starts at once"}
	switch a.verdict {
	case admitDryRun, admitSkip:
		sim.Start = "does not run: " + a.reason
	case admitWait:
		sim.Start = "waits: " + a.reason
	case admitApprove:
		sim.Start = "needs approval first (" + d.Gates.Approval.Approvers() + "): " + a.reason
	}
	var notes []string
	if d.Gates.Cooldown > 0 {
		notes = append(notes, fmt.Sprintf("a %s cooldown applies after each run", time.Duration(d.Gates.Cooldown)))
	}
	if d.Gates.MaxAttempts > 0 {
		notes = append(notes, fmt.Sprintf("at most %d runs per %s", d.Gates.MaxAttempts, time.Duration(d.Gates.AttemptsWindow)))
	}
	if len(notes) > 0 {
		sim.Start += " (not checked here, as they depend on earlier incidents: " + strings.Join(notes, "; ") + ")"
	}
	// The run is walked as the worker would, each approval granted as soon as asked.
	if a.verdict == admitApprove && len(plan) > 0 {
		inc.Approval = &remediator.ApprovalRequest{Gate: plan[0].Name, Granted: true}
	}
	for _, p := range plan {
		s := SimulatedStep{Name: p.Name, Description: p.Description, Risk: p.Risk}
		if needsApproval(inc, p) {
			rule := d.Gates.Approval
			s.Gate = fmt.Sprintf("waits for %d approval(s) from %s (risk %s is at least %s); the approval covers the steps after it",
				rule.Required, rule.Approvers(), p.Risk, rule.FromRisk)
			switch {
			case rule.PerStep(p.Risk):
				s.Gate = fmt.Sprintf("waits for a fresh approval, %d from %s (risk %s is at least per_step_from %s), whatever was approved before; the approval covers only this step of those at %s risk or above",
					rule.Required, rule.Approvers(), p.Risk, rule.PerStepFrom, rule.PerStepFrom)
			case rule.PerStepFrom != "":
				s.Gate += fmt.Sprintf(" but those at %s risk or above, which ask again", rule.PerStepFrom)
			}
			inc.Approval = &remediator.ApprovalRequest{Gate: p.Name, Granted: true}
		}
		sim.Steps = append(sim.Steps, s)
	}
	return sim
}
