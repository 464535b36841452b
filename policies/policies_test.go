package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/errfile"
	"github.com/remediator/remediator/remediations"
)

var catalog = remediations.New(remediations.Deps{})

func TestInvalidPoliciesFailWithFilePolicyAndReason(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			data, _ := os.ReadFile(path)
			_, err := parse(path, data, catalog)
			if want := errfile.Want(t, path); err == nil || err.Error() != want {
				t.Errorf("error:\n%v\nwant:\n%s", err, want)
			}
		})
	}
}

func TestLoadDirRefusesADuplicateName(t *testing.T) {
	_, err := LoadDir("testdata/duplicate", catalog)
	want := `policies testdata/duplicate/b.yaml: policy "nospace": name is already used in testdata/duplicate/a.yaml`
	if err == nil || err.Error() != want {
		t.Errorf("error: %v\nwant: %s", err, want)
	}
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
