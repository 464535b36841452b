package probeguard_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/steptest"
)

// A recovery that finds nothing to do still turns the probes it suspended back on: the
// restore is a clean-up step, and nothing to do stops only the recovery's own steps.
func TestProbesComeBackWhenTheRecoveryFindsNothingToDo(t *testing.T) {
	s := start(t, "etcd-kubeadm-1.13.yaml", 1) // no NOSPACE, far below the quota
	r := steptest.New(t, s.guard.Plan, "test", nil)
	results, failed, err := r.All()
	var nothing *remediator.NothingToDo
	if failed != "preflight" || !errors.As(err, &nothing) || !strings.Contains(nothing.Reason, "no member has a NOSPACE alarm") {
		t.Errorf("step %q: %v; want the recovery's preflight to find nothing to do", failed, err)
	}
	if !strings.Contains(results["suspend-probes"].Output, "commented out") {
		t.Fatalf("suspend-probes did not suspend the old probe, so there is nothing to restore:\n%s", results["suspend-probes"].Output)
	}
	if !strings.Contains(results["restore-probes"].Output, "restored") {
		t.Errorf("restore-probes did not run after nothing to do:\n%s", results["restore-probes"].Output)
	}
	for _, step := range r.Incident.Steps {
		want := remediator.StepSkipped
		switch step.Name {
		case "check-probes", "suspend-probes", "preflight", "restore-probes":
			want = remediator.StepSucceeded
		}
		if step.State != want {
			t.Errorf("%s is %s, want %s", step.Name, step.State, want)
		}
	}
	s.assertManifestsAsFound(t)
}
