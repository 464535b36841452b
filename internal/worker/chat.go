package worker

import (
	"context"
	"fmt"
	"strings"

	"github.com/remediator/remediator"
)

// MayAnswer says whether a chat user may answer the incident's approval request, under the
// rules a click of theirs would meet (Answer): for the App Home's "waiting for you". A
// look-up of chat that fails counts as no.
func (w *Worker) MayAnswer(ctx context.Context, inc *remediator.Incident, userID string) bool {
	a := remediator.Answer{Incident: inc.ID, By: userID, Person: userID, Via: remediator.ViaSlack, Approve: true}
	if name, ok := w.People[userID]; ok {
		a.Person = name
	}
	denied, err := w.denial(ctx, inc, a)
	return err == nil && denied == nil
}

// Explain says what an alert would lead to if it arrived now, touching nothing: the policy
// that matches, and the plan with its gates, as the simulate command shows it. cluster is the
// alert's, already resolved.
func (w *Worker) Explain(a remediator.Alert) (string, error) {
	d, ok, err := w.Policies.Match(a)
	var b strings.Builder
	switch {
	case err != nil:
		return "", remediator.Errorf(remediator.EINVALID, "the policies cannot decide: %v", err)
	case !ok:
		return fmt.Sprintf("No policy matches %s on %s: nothing would happen.", a.Name(), a.Cluster), nil
	case d.Mode == remediator.ModeDeny:
		return fmt.Sprintf("Policy %s denies remediation of %s on %s: nothing would happen.", d.Policy, a.Name(), a.Cluster), nil
	case d.Mode == remediator.ModeContext:
		return fmt.Sprintf("Policy %s keeps %s as evidence for the incidents around it on %s: nothing runs.", d.Policy, a.Name(), a.Cluster), nil
	}
	plan, err := w.Remediations.Plan(d.Remediation, d.Params)
	if err != nil {
		return "", err
	}
	sim := Simulate(d, a.Cluster, plan, w.Now(), w.DryRun)
	fmt.Fprintf(&b, "Policy %s would open an incident on %s: %s (mode %s). The run %s.\n", d.Policy, a.Cluster, w.Remediations.Title(d.Remediation), d.Mode, sim.Start)
	for i, s := range sim.Steps {
		fmt.Fprintf(&b, "%d. %s (%s): %s\n", i+1, s.Name, s.Risk, s.Description)
		if s.Gate != "" {
			fmt.Fprintf(&b, "    ↳ %s\n", s.Gate)
		}
	}
	b.WriteString("Nothing was touched: this is a simulation.")
	return b.String(), nil
}
