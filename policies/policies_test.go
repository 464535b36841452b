package policies

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/errfile"
	"github.com/remediator/remediator/remediations"
)

var catalog = remediations.New(remediations.Deps{})

// Each file is checked through: every problem is reported at its line, not only the first.
func TestInvalidPoliciesFailWithFileLineAndReason(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			ps, errs := Check(catalog, path)
			if err, want := errors.Join(errs...), errfile.Want(t, path); err == nil || err.Error() != want {
				t.Errorf("error:\n%v\nwant:\n%s", err, want)
			}
			for _, err := range errs {
				if e, ok := err.(*Error); !ok || e.File != path || e.Line == 0 {
					t.Errorf("%v: not an *Error at a line of %s", err, path)
				}
			}
			if strings.HasSuffix(path, "every-key.yaml") && (len(ps) != 1 || ps[0].Name != "fine") {
				t.Errorf("valid policies %v, want the first one named fine", ps)
			}
		})
	}
}

// serve loads a folder and refuses it whole, with the problems of every file, in file order.
func TestLoadDirRefusesEveryProblemOfEveryFile(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	var want []string
	for _, path := range files {
		want = append(want, errfile.Want(t, path))
	}
	set, err := LoadDir("testdata/invalid", catalog)
	if set != nil || err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("set %v, error:\n%v\nwant:\n%s", set, err, strings.Join(want, "\n"))
	}
}

func TestLoadDirRefusesADuplicateName(t *testing.T) {
	_, err := LoadDir("testdata/duplicate", catalog)
	want := `testdata/duplicate/b.yaml:2: policy "nospace": name is already used in testdata/duplicate/a.yaml:2`
	if err == nil || err.Error() != want {
		t.Errorf("error: %v\nwant: %s", err, want)
	}
}

func TestLoadTakesFilesAndFolders(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rest.yml"), []byte(`policies:
  - name: everything-else
    match: status == "firing"
    remediation: etcd-nospace-recovery
    mode: deny
`), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(catalog, "testdata/duplicate/a.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range set.Policies() {
		got = append(got, p.Source+": "+p.Name)
	}
	if want := "testdata/duplicate/a.yaml: nospace, " + filepath.Join(dir, "rest.yml") + ": everything-else"; strings.Join(got, ", ") != want {
		t.Errorf("policies %q, want %q", strings.Join(got, ", "), want)
	}

	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"missing file", []string{"testdata/duplicate/a.yaml", "testdata/nothing.yaml"}, "testdata/nothing.yaml: no such file or directory"},
		{"folder without policy files", []string{t.TempDir()}, "%s: holds no policy files (*.yaml or *.yml)"},
		{"files without policies", []string{writeFile(t, "# nothing yet\n"), writeFile(t, "policies: []\n")}, "policies: no policies in %s, %s"},
		{"problems of several arguments", []string{"testdata/invalid/bad-mode.yaml", "testdata/duplicate", "testdata/invalid/not-bool.yaml"},
			`testdata/invalid/bad-mode.yaml:6: policy "nospace": mode: "yolo" must be one of [auto approve dry-run deny context]` + "\n" +
				`testdata/duplicate/b.yaml:2: policy "nospace": name is already used in testdata/duplicate/a.yaml:2` + "\n" +
				`testdata/invalid/not-bool.yaml:4: policy "name-only": match: must be a bool expression, not string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if strings.Contains(want, "%s") {
				args := make([]any, len(tc.paths))
				for i, p := range tc.paths {
					args[i] = p
				}
				want = fmt.Sprintf(want, args...)
			}
			if _, err := Load(catalog, tc.paths...); err == nil || err.Error() != want {
				t.Errorf("error:\n%v\nwant:\n%s", err, want)
			}
		})
	}
}

// writeFile writes a policy file in a folder of its own and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultPoliciesMatchTheSeedsNOSPACESignals(t *testing.T) {
	set, err := Default(catalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		alert remediator.Alert
		want  bool
	}{
		{"mixin alert", remediator.Alert{Status: "firing", Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace"}}, true},
		{"seed 004 log line", remediator.Alert{Status: "firing", Labels: map[string]string{"alertname": "EtcdLogs"},
			Annotations: map[string]string{"description": "etcdserver: mvcc: database space exceeded"}}, true},
		{"alarm in a label", remediator.Alert{Status: "firing", Labels: map[string]string{"alertname": "EtcdAlarm", "alarm": "alarm:NOSPACE"}}, true},
		{"another etcd alert", remediator.Alert{Status: "firing", Labels: map[string]string{"alertname": "etcdMembersDown"}}, false},
		{"no labels at all", remediator.Alert{Status: "firing"}, false},
	} {
		d, ok, err := set.Match(tc.alert)
		if ok != tc.want || err != nil {
			t.Errorf("%s: matched %v (%v), want %v", tc.name, ok, err, tc.want)
		}
		if ok && (d.Remediation != "etcd-liveness-probe-guard" || d.Mode != remediator.ModeAuto || d.Policy != "etcd-nospace") {
			t.Errorf("%s: decision %+v", tc.name, d)
		}
	}
}

// Each seed's signals select its runbook, and the runbooks that ask a human first wait for one.
func TestDefaultPoliciesMatchEverySeed(t *testing.T) {
	set, err := Default(remediations.New(remediations.Deps{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		labels      map[string]string
		text        string
		remediation string
		approvers   int
	}{
		{"seed 000: guarded key lost", map[string]string{"alertname": "EtcdGuardedKeyMissing", "key": "_sd.placement/m3db/prod/m3db"}, "", "etcd-key-restore", 1},
		{"seed 001: member data lost", map[string]string{"alertname": "EtcdLogs"}, "etcdserver: unhealthy cluster", "etcd-member-replace", 1},
		{"seed 002: apiserver etcd check", map[string]string{"alertname": "KubeAPIServerLogs"}, "[-]etcd failed: reason withheld", "apiserver-etcd-healthcheck-timeout", 1},
		{"seed 003: snapshot file missing", map[string]string{"alertname": "EtcdLogs"}, `failed to recover v3 backend from snapshot","error":"failed to find database snapshot file (snap: snapshot file doesn't exist)`, "etcd-snapshot-missing-recovery", 1},
		{"seed 003: quorum lost", map[string]string{"alertname": "etcdInsufficientMembers"}, "", "etcd-quorum-restore", 2},
		{"seed 004 prevention: fragmentation", map[string]string{"alertname": "etcdDatabaseHighFragmentationRatio"}, "", "etcd-defrag-fragmented", 0},
	} {
		a := remediator.Alert{Status: "firing", Labels: tc.labels}
		if tc.text != "" {
			a.Annotations = map[string]string{"description": tc.text}
		}
		d, ok, err := set.Match(a)
		if !ok || err != nil || d.Remediation != tc.remediation {
			t.Errorf("%s: matched %v (%v) -> %q, want %s", tc.name, ok, err, d.Remediation, tc.remediation)
			continue
		}
		got := 0
		if d.Gates.Approval != nil {
			got = d.Gates.Approval.Required
		}
		if got != tc.approvers {
			t.Errorf("%s: %d approvers required, want %d", tc.name, got, tc.approvers)
		}
	}
}

func TestFirstMatchDecidesAndEvaluationErrorsAreReported(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10-prod.yaml", `policies:
  - name: needs-label
    match: labels.env == "prod"
    remediation: etcd-nospace-recovery
    mode: approve
    approval:
      users: [U01OPERATOR]
  - name: staging-dry-run
    match: has(labels.env) && labels.env == "staging"
    remediation: etcd-nospace-recovery
    mode: dry-run
`)
	write("20-rest.yaml", `policies:
  - name: everything-else
    match: status == "firing"
    remediation: etcd-nospace-recovery
    mode: deny
`)
	write("README.md", "not a policy")
	set, err := LoadDir(dir, catalog)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(set.Policies()); n != 3 {
		t.Fatalf("%d policies, want 3", n)
	}
	for _, tc := range []struct {
		labels     map[string]string
		wantPolicy string
		wantErr    bool
	}{
		{map[string]string{"env": "prod"}, "needs-label", false},
		{map[string]string{"env": "staging"}, "staging-dry-run", false},
		{map[string]string{"team": "etcd"}, "everything-else", true}, // labels.env is missing
	} {
		d, ok, err := set.Match(remediator.Alert{Status: "firing", Labels: tc.labels})
		if !ok || d.Policy != tc.wantPolicy || (err != nil) != tc.wantErr {
			t.Errorf("labels %v: policy %q (matched %v, err %v), want %q (error: %v)", tc.labels, d.Policy, ok, err, tc.wantPolicy, tc.wantErr)
		}
	}
}

// The seeds' error strings in Kubernetes events select the same runbooks as the alerts;
// a probe failure alone selects none: it is evidence for the incident around it.
func TestDefaultPoliciesTellKubernetesSignals(t *testing.T) {
	set, err := Default(remediations.New(remediations.Deps{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, alertname, component, message, remediation string
	}{
		{"nospace in a controller's event", "EtcdErrorEvent", "", "Error creating: etcdserver: mvcc: database space exceeded", "etcd-liveness-probe-guard"},
		{"apiserver's etcd check", "KubeAPIServerPodUnhealthy", "kube-apiserver", "Readiness probe failed: etcd failed: reason withheld", "apiserver-etcd-healthcheck-timeout"},
		{"slow etcd request", "KubeAPIServerPodUnhealthy", "kube-apiserver", "Liveness probe failed: request took too long", "apiserver-etcd-healthcheck-timeout"},
		{"snapshot missing", "EtcdPodBackOff", "etcd", "failed to find database snapshot file (snap: snapshot file doesn't exist)", "etcd-snapshot-missing-recovery"},
		{"unhealthy cluster", "EtcdErrorEvent", "", "rpc error: code = Unavailable desc = etcdserver: unhealthy cluster", "etcd-member-replace"},
		{"probe failure alone", "EtcdPodUnhealthy", "etcd", "Liveness probe failed: HTTP probe failed with statuscode: 503", ""},
		{"back-off alone", "EtcdPodBackOff", "etcd", "Back-off restarting failed container etcd in pod etcd-cp1_kube-system(0e6c)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			labels := map[string]string{"alertname": tc.alertname, "cluster": "prod", "reason": "Unhealthy"}
			if tc.component != "" {
				labels["component"] = tc.component
			}
			a := remediator.Alert{Source: remediator.SourceKubernetes, Status: "firing", Labels: labels, Annotations: map[string]string{"message": tc.message}}
			d, ok, err := set.Match(a)
			if err != nil || ok != (tc.remediation != "") || d.Remediation != tc.remediation {
				t.Errorf("matched %v (%v) -> %q, want %q", ok, err, d.Remediation, tc.remediation)
			}
		})
	}
}

// per_step_from reads as a risk at or above from_risk; anything else is refused at its key.
func TestPerStepFrom(t *testing.T) {
	policy := func(approval string) string {
		return "policies:\n  - name: p\n    match: \"true\"\n    remediation: etcd-nospace-recovery\n    mode: auto\n    approval:\n      users: [U01ALICE]\n" + approval
	}
	for _, tc := range []struct {
		name, approval string
		want           remediator.Risk
		err            string
	}{
		{"unset", "      from_risk: high\n", "", ""},
		{"destructive", "      from_risk: high\n      per_step_from: destructive\n", remediator.RiskDestructive, ""},
		{"at from_risk", "      from_risk: high\n      per_step_from: high\n", remediator.RiskHigh, ""},
		{"not a risk", "      from_risk: high\n      per_step_from: scary\n",
			"", `:9: policy "p": approval.per_step_from: "scary" must be one of [read-only low high destructive]`},
		{"below from_risk", "      from_risk: destructive\n      per_step_from: high\n",
			"", `:9: policy "p": approval.per_step_from: "high" is below from_risk "destructive": it must be at or above it, as only the steps from_risk gates wait`},
		{"without from_risk", "      per_step_from: destructive\n",
			"", `:8: policy "p": approval.per_step_from: needs from_risk: a step gets an approval of its own only where steps wait for approval at all`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, policy(tc.approval))
			set, err := Load(catalog, path)
			if tc.err != "" {
				if want := path + tc.err; err == nil || err.Error() != want {
					t.Errorf("error:\n%v\nwant:\n%s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := set.Policies()[0].Decision.Gates.Approval.PerStepFrom; got != tc.want {
				t.Errorf("per_step_from %q, want %q", got, tc.want)
			}
		})
	}
}

// The built-in policies ask again before each destructive step that comes after a high one.
func TestDefaultPoliciesAskAgainBeforeEachDestructiveStep(t *testing.T) {
	set, err := Default(catalog)
	if err != nil {
		t.Fatal(err)
	}
	perStep := map[string]remediator.Risk{}
	for _, p := range set.Policies() {
		if a := p.Decision.Gates.Approval; a != nil && a.PerStepFrom != "" {
			perStep[p.Decision.Remediation] = a.PerStepFrom
		}
	}
	want := map[string]remediator.Risk{"etcd-snapshot-missing-recovery": remediator.RiskDestructive,
		"etcd-quorum-restore": remediator.RiskDestructive, "etcd-member-replace": remediator.RiskDestructive}
	if fmt.Sprint(perStep) != fmt.Sprint(want) {
		t.Errorf("per_step_from by remediation %v, want %v", perStep, want)
	}
}
