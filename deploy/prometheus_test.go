package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/policies"
	"github.com/remediator/remediator/remediations"
)

const (
	promRules     = "prometheus/etcd-rules.yaml"
	promRuleTests = "prometheus/etcd-rules_test.yaml"
)

// TestPrometheusRules runs promtool's checks and the rules' unit tests.
func TestPrometheusRules(t *testing.T) {
	if out, err := run(t, "promtool", "check", "rules", promRules); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", promRules, err, out)
	}
	if out, err := run(t, "promtool", "test", "rules", promRuleTests); err != nil {
		t.Errorf("promtool test rules %s: %v\n%s", promRuleTests, err, out)
	}
}

// TestPrometheusRuleTestsFailOnBrokenRules breaks the rules one way at a time and checks that
// the unit tests notice: tests that cannot fail check nothing.
func TestPrometheusRuleTestsFailOnBrokenRules(t *testing.T) {
	rules, err := os.ReadFile(promRules)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(promRuleTests)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"quota threshold raised", `*100 > 95`, `*100 > 99`},
		{"quota fires sooner", "*100 > 95\n        for: 10m", "*100 > 95\n        for: 5m"},
		// The end-to-end test scrapes a plain etcd as job "etcd".
		{"quota only for kube-prometheus-stack's job",
			`(last_over_time(etcd_mvcc_db_total_size_in_bytes{job=~".*etcd.*"}[5m]) / last_over_time(etcd_server_quota_backend_bytes{job=~".*etcd.*"}[5m]))`,
			`(last_over_time(etcd_mvcc_db_total_size_in_bytes{job="kube-etcd"}[5m]) / last_over_time(etcd_server_quota_backend_bytes{job="kube-etcd"}[5m]))`},
		{"no leader inverted", `etcd_server_has_leader{job=~".*etcd.*"} == 0`, `etcd_server_has_leader{job=~".*etcd.*"} == 1`},
		// remediator resolves the etcd cluster from this label.
		{"no leader loses the cluster label",
			`etcd_server_has_leader{job=~".*etcd.*"} == 0`, `sum without (cluster) (etcd_server_has_leader{job=~".*etcd.*"}) == 0`},
		{"quorum check loses the cluster label",
			`sum(up{job=~".*etcd.*"} == bool 1) without (instance, pod) <`, `sum(up{job=~".*etcd.*"} == bool 1) without (instance, pod, cluster) <`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := strings.Count(string(rules), tc.from); n != 1 {
				t.Fatalf("%q is in %s %d times, want once: update this case", tc.from, promRules, n)
			}
			dir := t.TempDir()
			broken := strings.Replace(string(rules), tc.from, tc.to, 1)
			for name, data := range map[string][]byte{filepath.Base(promRules): []byte(broken), filepath.Base(promRuleTests): tests} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := run(t, "promtool", "check", "rules", filepath.Join(dir, filepath.Base(promRules))); err != nil {
				t.Fatalf("the broken rules are not even valid, so this case proves nothing: %v\n%s", err, out)
			}
			if out, err := run(t, "promtool", "test", "rules", filepath.Join(dir, filepath.Base(promRuleTests))); err == nil {
				t.Errorf("promtool test rules passes with %q replaced by %q:\n%s", tc.from, tc.to, out)
			}
		})
	}
}

// ruleFile is Prometheus's rule file format, decoded into the Prometheus Operator's types.
type ruleFile struct {
	Groups []monitoringv1.RuleGroup `json:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(promRules)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", promRules, err)
	}
	return f
}

// TestPrometheusRuleMatchesRuleFile checks that the PrometheusRule of the Kubernetes build
// carries the same groups as the rule file.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	f := readRules(t)
	var found bool
	for _, o := range build(t).objects {
		pr, ok := o.value.(*monitoringv1.PrometheusRule)
		if !ok {
			continue
		}
		found = true
		if !reflect.DeepEqual(pr.Spec.Groups, f.Groups) {
			t.Errorf("%v: its groups differ from %s: copy the file's groups into monitoring/prometheusrule.yaml", o, promRules)
		}
	}
	if !found {
		t.Errorf("no PrometheusRule in the build")
	}
}

// TestQuotaRuleForEndToEnd pins what the end-to-end test relies on: etcdDatabaseQuotaLowSpace
// in group etcd, over the two metrics a plain etcd exports, for any job with etcd in its name.
func TestQuotaRuleForEndToEnd(t *testing.T) {
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "etcdDatabaseQuotaLowSpace" {
				continue
			}
			if g.Name != "etcd" {
				t.Errorf("etcdDatabaseQuotaLowSpace is in group %q, want etcd", g.Name)
			}
			for _, s := range []string{`etcd_mvcc_db_total_size_in_bytes{job=~".*etcd.*"}`, `etcd_server_quota_backend_bytes{job=~".*etcd.*"}`, "> 95"} {
				if !strings.Contains(r.Expr.String(), s) {
					t.Errorf("etcdDatabaseQuotaLowSpace's expression lacks %s: %s", s, r.Expr.String())
				}
			}
			return
		}
	}
	t.Errorf("no etcdDatabaseQuotaLowSpace in %s", promRules)
}

// defaultPolicies are remediator's built-in policies.
var defaultPolicies = sync.OnceValues(func() (*policies.Set, error) {
	return policies.Default(remediations.New(remediations.Deps{}))
})

// policyFor returns the name of the built-in policy an alert with these labels and
// annotations matches, or "" if none does.
func policyFor(t *testing.T, labels, annotations map[string]string) string {
	t.Helper()
	set, err := defaultPolicies()
	if err != nil {
		t.Fatal(err)
	}
	d, ok, _ := set.Match(remediator.Alert{Source: remediator.SourceAlertmanager, Status: remediator.AlertFiring,
		Cluster: "prod", Labels: labels, Annotations: annotations})
	if !ok {
		return ""
	}
	return d.Policy
}

// TestPrometheusAlertsPickTheirPolicy checks which built-in policy each alert of the rule file
// reaches, as Alertmanager would send it (the rule's labels, the series' labels, alertname).
func TestPrometheusAlertsPickTheirPolicy(t *testing.T) {
	want := map[string]string{
		"etcdDatabaseQuotaLowSpace":          "etcd-nospace",
		"etcdDatabaseHighFragmentationRatio": "etcd-fragmented",
		"etcdInsufficientMembers":            "etcd-quorum-lost",
		"etcdNoLeader":                       "etcd-quorum-lost",
		// Evidence for the incidents around them: a slow disk explains what fails after it.
		"etcdHighFsyncDurations":  "etcd-slow-disk",
		"etcdHighCommitDurations": "etcd-slow-disk",
		// For humans: no built-in policy acts on it.
		"etcdMembersDown": "",
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			t.Run(r.Alert+"/"+r.Labels["severity"], func(t *testing.T) {
				policy, ok := want[r.Alert]
				if !ok {
					t.Fatalf("%s is not in this test's table: say which policy it should reach", r.Alert)
				}
				labels := map[string]string{"alertname": r.Alert, "cluster": "prod", "job": "etcd", "instance": "10.0.0.11:2379"}
				for k, v := range r.Labels {
					labels[k] = v
				}
				if got := policyFor(t, labels, r.Annotations); got != policy {
					t.Errorf("reaches policy %q, want %q", got, policy)
				}
			})
		}
	}
}
