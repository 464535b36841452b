package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shell runs remediator with args and stdin as a shell would: what it printed to stdout, to
// stderr (the error last, as main prints it), and its exit code.
func shell(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runCLI(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestLintReportsEveryProblemOfEveryFileAndFolder(t *testing.T) {
	stdout, stderr, code := shell(t, "", "policy", "lint", "../../policies/default.yaml",
		"../../policies/testdata/invalid/cel-block.yaml", "../../policies/testdata/invalid/every-key.yaml",
		"../../policies/testdata/duplicate", "../../policies/missing.yaml")
	if code != exitFailed {
		t.Errorf("exit code %d, want %d", code, exitFailed)
	}
	wantErr := `../../policies/testdata/invalid/cel-block.yaml:7:12: policy "literal": match: undeclared reference to 'label' (did you mean 'labels'?)
../../policies/testdata/invalid/cel-block.yaml:13:22: policy "folded": match: undeclared reference to 'contans' (did you mean 'contains'?)
../../policies/testdata/invalid/every-key.yaml:11: policy "wrong-types": mode: "sometimes" must be one of [auto approve dry-run deny context]
../../policies/testdata/invalid/every-key.yaml:12: policy "wrong-types": max_attempts: "lots" is not a whole number
../../policies/testdata/invalid/every-key.yaml:14: policy "wrong-types": approval.users: must be a list
../../policies/testdata/invalid/every-key.yaml:17: policy "wrong-types": cooldown: appears again (first at line 16)
../../policies/testdata/invalid/every-key.yaml:18: policy "#2": must be a mapping of keys to values, such as name: and match:
../../policies/testdata/invalid/every-key.yaml:23: policy "fine": name is already used in ../../policies/testdata/invalid/every-key.yaml:19
../../policies/testdata/duplicate/b.yaml:2: policy "nospace": name is already used in ../../policies/testdata/duplicate/a.yaml:2
../../policies/missing.yaml: no such file or directory
remediator: policy lint: 10 problem(s)
`
	if stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, wantErr)
	}
	// The valid policies are still listed, the first of two with one name among them.
	wantOut := []string{
		"ok  ../../policies/default.yaml: etcd-nospace -> etcd-liveness-probe-guard (auto)",
		"ok  ../../policies/testdata/invalid/every-key.yaml: fine -> etcd-nospace-recovery (auto)",
		"ok  ../../policies/testdata/duplicate/a.yaml: nospace -> etcd-nospace-recovery (approve)",
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	for _, want := range wantOut {
		if !slices.Contains(lines, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if n := len(lines); n != 10 {
		t.Errorf("%d ok lines, want 10 (8 defaults and 2 valid test policies):\n%s", n, stdout)
	}
}

func TestLintOfGoodPoliciesAndOfNothing(t *testing.T) {
	stdout, stderr, code := shell(t, "", "policy", "lint", "../../policies")
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, "ok  ../../policies/default.yaml: etcd-guarded-key-missing -> etcd-key-restore (auto)\n") {
		t.Errorf("lint of the defaults: exit code %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	_, stderr, code = shell(t, "", "policy", "lint")
	if want := "remediator: remediator policy lint needs the policy files or folders to check; see 'remediator policy lint --help'\n"; code != exitUsage || stderr != want {
		t.Errorf("lint of nothing: exit code %d, stderr %q, want %d, %q", code, stderr, exitUsage, want)
	}
}

// Every payload shipped in testdata goes through simulate with no --config: those for the
// cluster the defaults have show the plan, the others say how to add their cluster.
func TestSimulateShippedPayloadsOnTheDefaults(t *testing.T) {
	addCluster := `unknown cluster "prod" (configured: default); to take it, add it as clusters[].name, with its etcd.endpoints, to the file given to --config`
	for _, tc := range []struct {
		file   string
		stdout []string // the lines it starts with
		stderr string
	}{
		{file: "alertmanager/nospace-firing.json", stdout: []string{
			"payload ../../testdata/alertmanager/nospace-firing.json: an Alertmanager webhook payload",
			"alerts:",
			"  etcdDatabaseQuotaLowSpace (firing) on default: policy etcd-nospace -> etcd-liveness-probe-guard (mode auto)",
			"  etcdDatabaseQuotaLowSpace (firing) on default: policy etcd-nospace -> etcd-liveness-probe-guard (mode auto)",
			"  etcdDatabaseQuotaLowSpace (firing) on default: policy etcd-nospace -> etcd-liveness-probe-guard (mode auto)",
			"",
			"incident on default: etcd-liveness-probe-guard for 3 alert(s), policy etcd-nospace, mode auto",
		}},
		{file: "alertmanager/nospace-resolved.json", stdout: []string{
			"payload ../../testdata/alertmanager/nospace-resolved.json: an Alertmanager webhook payload",
			"alerts:",
			"  etcdDatabaseQuotaLowSpace (resolved) on default: policy etcd-nospace: joins the incident it fired into; nothing new runs",
			"  etcdDatabaseQuotaLowSpace (resolved) on default: policy etcd-nospace: joins the incident it fired into; nothing new runs",
			"  etcdDatabaseQuotaLowSpace (resolved) on default: policy etcd-nospace: joins the incident it fired into; nothing new runs",
		}},
		{file: "alertmanager/log-space-exceeded.json", stderr: "no alert is for a configured cluster: alerts[0] (EtcdLogDatabaseSpaceExceeded): " + addCluster},
		{file: "kubernetes/apiserver-readiness.json", stderr: "no event is for a configured cluster: events[0] (kube-system/kube-apiserver-cp2.187a2b9e3c1d5f70): " + addCluster},
		{file: "kubernetes/etcd-backoff.json", stderr: "no event is for a configured cluster: events[0] (kube-system/etcd-cp1.187a2c5b0e4f7d21): " + addCluster},
		{file: "kubernetes/etcd-liveness-unhealthy.json", stderr: "no event is for a configured cluster: events[0] (kube-system/etcd-cp1.187a2c4f9b1d0e3a): " + addCluster},
		{file: "kubernetes/pulled.json", stderr: "no event is for a configured cluster: events[0] (shop/web-7d9f8b6c5d-x2k9p.187a2c70a1b2c3d4): " + addCluster},
		{file: "kubernetes/replicaset-nospace.json", stderr: "no event is for a configured cluster: events[0] (shop/web-7d9f8b6c5d.187a2c61f2a3b4c5): " + addCluster},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := "../../testdata/" + tc.file
			stdout, stderr, code := shell(t, "", "simulate", "--payload", path, "--at", "2026-11-23T12:00:00Z")
			if tc.stderr != "" {
				if want := "remediator: payload " + path + ": " + tc.stderr + "\n"; stderr != want || code != exitUsage || stdout != "" {
					t.Errorf("exit code %d, stdout %q, stderr:\n%s\nwant %d and:\n%s", code, stdout, stderr, exitUsage, want)
				}
				return
			}
			if want := strings.Join(tc.stdout, "\n") + "\n"; code != exitOK || stderr != "" || !strings.HasPrefix(stdout, want) {
				t.Errorf("exit code %d, stderr %q, stdout:\n%s\nwant it to start with:\n%s", code, stderr, stdout, want)
			}
		})
	}
	// The table covers every payload shipped.
	files, _ := filepath.Glob("../../testdata/*/*.json")
	if len(files) != 8 {
		t.Errorf("%d payloads in testdata, the table has 8: %v", len(files), files)
	}
}

// writeProdConfig writes a configuration whose one cluster is prod, the shipped events'.
func writeProdConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "remediator.yaml")
	if err := os.WriteFile(path, []byte("clusters:\n  - name: prod\n    etcd: {endpoints: [\"127.0.0.1:2379\"]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSimulateKubernetesEvents(t *testing.T) {
	config := writeProdConfig(t)
	var events []string
	for _, name := range []string{"etcd-liveness-unhealthy.json", "pulled.json", "replicaset-nospace.json"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/kubernetes", name))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, string(b))
	}
	// An array of events, from stdin, is told from an Alertmanager payload by its content.
	stdout, stderr, code := shell(t, "["+strings.Join(events, ",")+"]", "simulate", "--config", config, "--payload", "-", "--at", "2026-11-23T12:00:00Z")
	want := `payload stdin: Kubernetes events
ignored: 1 event(s) that are not signals remediator acts on
alerts:
  EtcdPodUnhealthy (firing) on prod: no policy matches: kept as evidence for the incidents around it on prod; nothing runs
  EtcdErrorEvent (firing) on prod: policy etcd-nospace would run etcd-liveness-probe-guard, but the event is not of a control-plane pod in kube-system nor of kubernetes.trusted_objects: kept as evidence for the incidents around it on prod; nothing runs
`
	if code != exitOK || stderr != "" || !strings.HasPrefix(stdout, want) {
		t.Errorf("exit code %d, stderr %q, stdout:\n%s\nwant it to start with:\n%s", code, stderr, stdout, want)
	}
	// So is one Event, from a file.
	stdout, _, code = shell(t, "", "simulate", "--config", config, "--payload", "../../testdata/kubernetes/etcd-backoff.json")
	want = `payload ../../testdata/kubernetes/etcd-backoff.json: Kubernetes events
alerts:
  EtcdPodBackOff (firing) on prod: no policy matches: kept as evidence for the incidents around it on prod; nothing runs
`
	if code != exitOK || stdout != want {
		t.Errorf("exit code %d, stdout:\n%s\nwant:\n%s", code, stdout, want)
	}
}

// Each mistake is said in the payload's and the command line's terms, with where to look.
func TestSimulateRefusesInAPersonsWords(t *testing.T) {
	firing := "../../testdata/alertmanager/nospace-firing.json"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"time in words", "", []string{"--payload", firing, "--at", "tomorrow"}, exitUsage,
			`--at "tomorrow": not a time; use RFC 3339, such as 2026-12-07T03:00:00Z, or 2026-12-07T03:00 or "2026-12-07 03:00" for UTC; see 'remediator simulate --help'`},
		{"unknown kind", "", []string{"--payload", firing, "--kind", "prometheus"}, exitUsage,
			`--kind "prometheus": not a kind of payload (kinds: alertmanager, kubernetes); see 'remediator simulate --help'`},
		{"no such file", "", []string{"--payload", "alerts.json"}, exitUsage, "payload alerts.json: no such file or directory"},
		{"not JSON", "alertname=etcdDatabaseQuotaLowSpace", []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 1, column 1: malformed JSON: invalid character 'a' at start of value"},
		{"broken on line 4", "{\n  \"version\": \"4\",\n  \"alerts\": [\n    {\"status\": firing}]}", []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 4, column 17: malformed JSON in field alerts[0].status: invalid character 'i' in literal false (expecting 'a')"},
		{"cut short", "{\n  \"version\": \"4\",\n  \"alerts\": [\n", []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 4, column 1: malformed JSON: the payload ends early, cut short"},
		{"a key twice", `{"version": "4", "version": "3"}`, []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 1, column 18: malformed JSON: field version appears twice"},
		{"empty", "", []string{"--payload", "-"}, exitUsage, "payload stdin: the payload is empty: it must be JSON"},
		{"wrong kind of value", `{"version": "4", "alerts": {"status": "firing"}}`, []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 1, column 28: field alerts must be an array, not an object"},
		{"not a time", `{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "x"}, "startsAt": "yesterday"}]}`, []string{"--payload", "-"}, exitUsage,
			`payload stdin: line 1, column 92: field alerts[0].startsAt: "yesterday" is not an RFC 3339 time such as 2026-11-21T09:58:11Z`},
		{"negative count", `{"version": "4", "truncatedAlerts": -1}`, []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 1, column 37: field truncatedAlerts: -1 is not a whole number, 0 or more"},
		{"label value not a string", `{"version": "4", "alerts": [{"labels": {"app.kubernetes.io/name": 1}}]}`, []string{"--payload", "-"}, exitUsage,
			`payload stdin: line 1, column 67: field alerts[0].labels["app.kubernetes.io/name"] must be a string, not a number`},
		{"event count in words", `[{"reason": "BackOff"}, {"reason": "BackOff", "count": "three"}]`, []string{"--payload", "-"}, exitUsage,
			"payload stdin: line 1, column 56: field events[1].count must be a whole number, not a string"},
		{"event not an object", `"an event"`, []string{"--payload", "-", "--kind", "kubernetes"}, exitUsage,
			"payload stdin: line 1, column 1: the payload must be an object, or an array of them, not a string"},
		{"kind unclear", `{"labels": {}}`, []string{"--payload", "-"}, exitUsage,
			"payload stdin: cannot tell an Alertmanager payload (an object with alerts) from Kubernetes events (an Event object with involvedObject and reason, or an array of them): say which with --kind alertmanager or --kind kubernetes; see 'remediator simulate --help'"},
		{"kind said", "", []string{"--payload", firing, "--kind", "kubernetes"}, exitUsage,
			"payload " + firing + ": events[0]: involvedObject must name the object's kind and name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := shell(t, tc.stdin, append([]string{"simulate"}, tc.args...)...)
			if want := "remediator: " + tc.want + "\n"; code != tc.code || stderr != want || stdout != "" {
				t.Errorf("exit code %d, stdout %q, stderr:\n%s\nwant %d and:\n%s", code, stdout, stderr, tc.code, want)
			}
		})
	}
}

// --at takes RFC 3339 and, in UTC, the shorter forms a person types.
func TestSimulateAtTakesTheTimesItLists(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "p.yaml"), []byte(`policies:
  - name: nights-only
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-nospace-recovery
    mode: auto
    maintenance:
      windows: [{days: [mon-fri], start: "22:00", end: "06:00", timezone: UTC}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "remediator.yaml")
	if err := os.WriteFile(config, []byte("policies_dir: policies\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{"2026-11-23T12:00:00Z", "2026-11-23T13:00:00+01:00", "2026-11-23T12:00", "2026-11-23 12:00"} {
		stdout, stderr, code := shell(t, "", "simulate", "--config", config, "--payload", "../../testdata/alertmanager/nospace-firing.json", "--at", at)
		if want := "the run waits: outside the maintenance windows: waiting for the next, at 2026-11-23T22:00:00Z"; code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("--at %q: exit code %d, stderr %q, stdout lacks %q:\n%s", at, code, stderr, want, stdout)
		}
	}
}
