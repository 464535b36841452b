package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/polltest"
	"github.com/remediator/remediator/internal/slacktest"
)

// cli runs the command line as a shell would, with nothing on standard input, and returns
// its exit code, standard output and standard error.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	stdout, stderr, code = shell(t, "", args...)
	return code, stdout, stderr
}

// consoleService runs the service on a NOSPACE cluster with one policy that runs the default
// NOSPACE remediation (the probe guard around the recovery, whose last step restores the
// probes even after a failure) and asks alice before the destructive compaction.
func consoleService(t *testing.T) (m *Main, server, tokenFile string, cl interface{ Close() error }, alarms func() string, write func() error) {
	t.Helper()
	etcd, client := nospaceCluster(t)
	cfg := testConfig(t, etcd)
	dir := t.TempDir()
	operators := filepath.Join(dir, "operators.yaml")
	writeFile(t, operators, "alice: alices-token\n")
	cfg.API.OperatorsFile = operators
	tokenFile = writeFile(t, filepath.Join(dir, "alice"), "alices-token\n")
	policies := filepath.Join(dir, "policies")
	_ = os.Mkdir(policies, 0o755)
	writeFile(t, filepath.Join(policies, "p.yaml"), `policies:
  - name: nospace-ask-before-compacting
    match: labels.alertname == "etcdDatabaseQuotaLowSpace"
    remediation: etcd-liveness-probe-guard
    mode: auto
    approval: {users: [alice], from_risk: destructive}
`)
	cfg.PoliciesDir = policies
	m = startService(t, cfg)
	return m, "http://" + m.Addr, tokenFile, client,
		func() string { return alarmList(t, client) }, func() error { return probeWrite(client) }
}

// TestTheOperatorsConsole drives an incident from the command line as an operator would at
// 3 a.m.: list and show it, cancel it while it waits before its destructive step (its
// clean-up step still runs, and the cluster stays as it was), pause the cluster and retry it
// (it waits, visibly), resume, approve, and watch it heal the cluster.
func TestTheOperatorsConsole(t *testing.T) {
	m, server, tokenFile, _, alarms, write := consoleService(t)
	as := []string{"--server", server, "--token-file", tokenFile}
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != 202 {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	if inc.Approval.Gate != "compact" {
		t.Fatalf("waiting before %q, want before the destructive compact", inc.Approval.Gate)
	}

	// list, in every output format.
	code, out, errOut := cli(t, append([]string{"list", "--state", "awaiting_approval"}, as...)...)
	if code != exitOK || !strings.HasPrefix(out, "ID ") || !strings.Contains(out, inc.ID+"  default  awaiting_approval  etcd-liveness-probe-guard") {
		t.Errorf("list: %d %q %q", code, out, errOut)
	}
	for _, format := range []string{"json", "yaml"} {
		_, out, _ = cli(t, append([]string{"list", "-o", format}, as...)...)
		var page remediator.Page
		if err := unmarshalAs(format, out, &page); err != nil || len(page.Incidents) != 1 || page.Incidents[0].ID != inc.ID {
			t.Errorf("list -o %s: %v, %q", format, err, out)
		}
	}
	if code, out, _ := cli(t, append([]string{"list", "--state", "running"}, as...)...); code != exitOK || out != "no incidents\n" {
		t.Errorf("list of none: %d %q", code, out)
	}

	// show, in every output format.
	code, out, _ = cli(t, append([]string{"show", inc.ID}, as...)...)
	for _, want := range []string{
		"incident " + inc.ID + " on default: awaiting_approval\n",
		"  remediation  NOSPACE recovery with liveness probes guarded (etcd-liveness-probe-guard), policy nospace-ask-before-compacting, mode auto\n",
		"  waits for    0 of 1 approval(s) before compact, until ",
		"    5. compact",
		"destructive  pending",
		"    4. snapshot",
	} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	for _, format := range []string{"json", "yaml"} {
		_, out, _ = cli(t, append([]string{"show", inc.ID, "-o", format}, as...)...)
		var got remediator.Incident
		if err := unmarshalAs(format, out, &got); err != nil || got.ID != inc.ID || got.State != remediator.StateAwaitingApproval || len(got.Steps) != len(inc.Steps) {
			t.Errorf("show -o %s: %v, %q", format, err, out)
		}
	}

	// cancel: nothing destructive ran, so the cluster keeps its alarm; the clean-up ran.
	code, out, errOut = cli(t, append([]string{"cancel", inc.ID, "--reason", "compacting during the backup window is wrong"}, as...)...)
	if code != exitOK || out != "incident "+inc.ID+": cancel requested; the run stops before its next step, and its clean-up steps still run (remediator watch "+inc.ID+")\n" {
		t.Errorf("cancel: %d %q %q", code, out, errOut)
	}
	inc = waitIncident(t, m.Addr, time.Minute, terminal)
	if inc.State != remediator.StateCancelled || inc.Reason != "cancelled by alice: compacting during the backup window is wrong" {
		t.Fatalf("after cancel: %s (%q)", inc.State, inc.Reason)
	}
	for _, s := range inc.Steps {
		want := remediator.StepSkipped
		if slices.Contains([]string{"check-probes", "suspend-probes", "preflight", "snapshot", "restore-probes"}, s.Name) {
			want = remediator.StepSucceeded
		}
		if s.State != want {
			t.Errorf("step %s: %s (%s), want %s", s.Name, s.State, s.Output, want)
		}
	}
	if a := alarms(); !strings.Contains(a, "NOSPACE") {
		t.Errorf("alarms after the cancel: %q; the cancelled run must not have disarmed anything", a)
	}
	for _, format := range []string{"json", "yaml"} {
		code, out, errOut := cli(t, append([]string{"watch", inc.ID, "-o", format}, as...)...)
		var got remediator.Incident
		if err := unmarshalAs(format, out, &got); err != nil || got.ID != inc.ID || got.State != remediator.StateCancelled {
			t.Errorf("watch -o %s of a cancelled incident wrote %v, %q", format, err, out)
		}
		if code != exitFailed || errOut != "remediator: incident "+inc.ID+" ended cancelled: cancelled by alice: compacting during the backup window is wrong\n" {
			t.Errorf("watch -o %s of a cancelled incident: exit %d, %q", format, code, errOut)
		}
	}

	// pause, then retry: the retry waits, and says why.
	code, out, errOut = cli(t, append([]string{"pause", "--cluster", "default", "--reason", "backup running"}, as...)...)
	if code != exitOK || !strings.HasPrefix(out, "cluster default paused by alice at ") || !strings.HasSuffix(out, ": backup running\n") {
		t.Errorf("pause: %d %q %q", code, out, errOut)
	}
	code, out, errOut = cli(t, append([]string{"retry", inc.ID}, as...)...)
	if code != exitOK || out != "incident "+inc.ID+": retry by alice: attempt 2, from step check-probes (remediator watch "+inc.ID+")\n" {
		t.Errorf("retry: %d %q %q", code, out, errOut)
	}
	inc = waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return strings.HasPrefix(inc.Reason, "paused: ") })
	if inc.State != remediator.StatePending || !strings.HasSuffix(inc.Reason, ": backup running; no step starts until `remediator resume`") {
		t.Errorf("the retried incident on the paused cluster: %s (%q)", inc.State, inc.Reason)
	}
	if body := metrics(t, m.Addr); !strings.Contains(body, `remediator_cluster_paused{cluster="default"} 1`) ||
		!strings.Contains(body, `remediator_incidents{state="pending"} 1`) || !strings.Contains(body, `remediator_incidents_finished_total{state="cancelled"} 1`) {
		t.Errorf("metrics lack the pause, the pending incident or the cancelled one:\n%s", grepLines(body, "remediator_cluster_paused", "remediator_incidents"))
	}
	code, out, _ = cli(t, append([]string{"clusters"}, as...)...)
	if code != exitOK || !strings.Contains(out, "default  by alice: backup running  reachable at ") {
		t.Errorf("clusters: %d %q", code, out)
	}
	if code, out, _ := cli(t, append([]string{"resume", "--cluster", "default"}, as...)...); code != exitOK || out != "cluster default resumed; incidents held back go on within 15s\n" {
		t.Errorf("resume: %d %q", code, out)
	}

	// The retry goes through the same gates: it asks alice again, and heals once she approves.
	inc = waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	if inc.Attempt != 2 || inc.Approval.Gate != "compact" {
		t.Fatalf("the retry waits before %q on attempt %d", inc.Approval.Gate, inc.Attempt)
	}
	var watched syncBuffer
	watchDone := make(chan int, 1)
	go func() {
		var errOut bytes.Buffer
		watchDone <- runCLI(context.Background(), append([]string{"watch", inc.ID, "--interval", "200ms"}, as...), strings.NewReader(""), &watched, &errOut)
	}()
	if code, out, errOut := cli(t, append([]string{"approve", inc.ID}, as...)...); code != exitOK || out != "incident "+inc.ID+" is running\n" {
		t.Fatalf("approve: %d %q %q", code, out, errOut)
	}
	select {
	case code := <-watchDone:
		if code != exitOK {
			t.Errorf("watch exited %d, want 0 for a healed cluster:\n%s", code, watched.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("watch did not end with the incident:\n%s", watched.String())
	}
	inc = waitIncident(t, m.Addr, time.Minute, terminal)
	if inc.State != remediator.StateSucceeded {
		t.Fatalf("after approval: %s (%q)", inc.State, inc.Reason)
	}
	if a := alarms(); a != "" {
		t.Errorf("alarms after the retried run: %q", a)
	}
	if err := write(); err != nil {
		t.Errorf("a write after the retried run: %v", err)
	}
	for _, want := range []string{
		"incident " + inc.ID + " on default: NOSPACE recovery with liveness probes guarded (",
		" compact: succeeded in ",
		" verify: succeeded in ",
		"incident " + inc.ID + " ended succeeded; remediator report " + inc.ID + "\n",
	} {
		if !strings.Contains(watched.String(), want) {
			t.Errorf("watch lacks %q:\n%s", want, watched.String())
		}
	}

	// report: -o is the format, --file the file.
	file := filepath.Join(t.TempDir(), "report.json")
	if code, _, errOut := cli(t, append([]string{"report", inc.ID, "-o", "json", "--file", file}, as...)...); code != exitOK ||
		errOut != "report of incident "+inc.ID+" written to "+file+"\n" {
		t.Errorf("report to a file: %d %q", code, errOut)
	}
	var rep map[string]any
	if data, err := os.ReadFile(file); err != nil || json.Unmarshal(data, &rep) != nil || rep["incident"] != inc.ID {
		t.Errorf("the report file is not the incident's JSON report: %v %.200s", err, data)
	}
}

// TestTheConsolesExitCodesAndMessages checks what scripts and people get when a command
// cannot do what it was asked: the exit code tells the kind, the message says what to do.
func TestTheConsolesExitCodesAndMessages(t *testing.T) {
	m, server, tokenFile, _, _, _ := consoleService(t)
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != 202 {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, time.Minute, func(inc remediator.Incident) bool { return inc.State == remediator.StateAwaitingApproval })
	wrongToken := writeFile(t, filepath.Join(t.TempDir(), "wrong"), "not-a-token\n")
	hostPort := strings.TrimPrefix(server, "http://")
	t.Setenv("REMEDIATOR_SERVER", "")
	t.Setenv("REMEDIATOR_TOKEN_FILE", "")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		// stderr is the whole message.
		stderr string
	}{
		{"unknown incident", nil, []string{"show", "20261207-000000-000000", "--server", server, "--token-file", tokenFile}, exitNotFound,
			`remediator: incident "20261207-000000-000000" not found`},
		{"unknown cluster", nil, []string{"pause", "--cluster", "qa", "--reason", "x", "--server", server, "--token-file", tokenFile}, exitNotFound,
			`remediator: cluster "qa" is not configured (clusters: default; * for all)`},
		{"wrong token", nil, []string{"cancel", inc.ID, "--reason", "x", "--server", server, "--token-file", wrongToken}, exitRefused,
			"remediator: missing or wrong operator token"},
		{"not an approver", nil, []string{"reject", inc.ID, "--server", server, "--token-file", wrongToken}, exitRefused,
			"remediator: missing or wrong operator token"},
		{"retry of an incident still running", nil, []string{"retry", inc.ID, "--server", server, "--token-file", tokenFile}, exitRefused,
			"remediator: incident " + inc.ID + " is awaiting_approval: only a failed or cancelled incident can be retried"},
		{"no token", nil, []string{"cancel", inc.ID, "--reason", "x", "--server", server}, exitUsage,
			"remediator: an operator token is needed: --token-file FILE (or $REMEDIATOR_TOKEN_FILE, or api.bearer_token_file in --config); see 'remediator cancel --help'"},
		{"no reason", nil, []string{"cancel", inc.ID, "--server", server, "--token-file", tokenFile}, exitUsage,
			"remediator: --reason is needed: say why the run is cancelled, for the timeline; see 'remediator cancel --help'"},
		{"no incident named", nil, []string{"show"}, exitUsage, "remediator: remediator show needs INCIDENT; see 'remediator show --help'"},
		{"unknown flag", nil, []string{"list", "--colour"}, exitUsage, "remediator: unknown flag: --colour; see 'remediator list --help'"},
		{"unknown command", nil, []string{"lsit"}, exitUsage, `remediator: unknown command "lsit" for "remediator"; see 'remediator --help'`},
		{"bad output format", nil, []string{"list", "-o", "wide"}, exitUsage, `remediator: -o "wide": not an output format (formats: text, json, yaml); see 'remediator list --help'`},
		{"report format", nil, []string{"report", inc.ID, "-o", "pdf"}, exitUsage, `remediator: -o "pdf": not an output format (formats: md, html, json); see 'remediator report --help'`},
		{"bad log level", nil, []string{"serve", "--log-level", "loud"}, exitUsage, `remediator: --log-level "loud": not a level (levels: debug, info, warn, error); see 'remediator --help'`},
		{"pause names neither", nil, []string{"pause", "--reason", "x"}, exitUsage, "remediator: name one cluster with --cluster NAME, or every cluster with --all; see 'remediator pause --help'"},
		{"unreachable", nil, []string{"list", "--server", "127.0.0.1:1"}, exitUnreachable,
			"remediator: cannot reach remediator at http://127.0.0.1:1: connection refused (is serve running there? --server or $REMEDIATOR_SERVER names another)"},
		{"missing token file", nil, []string{"list", "--server", server, "--token-file", "/nonexistent/token"}, exitUsage,
			"remediator: operator token: /nonexistent/token: no such file"},
		{"host:port and the environment", map[string]string{"REMEDIATOR_SERVER": hostPort, "REMEDIATOR_TOKEN_FILE": tokenFile},
			[]string{"show", "20261207-000000-000000"}, exitNotFound, `remediator: incident "20261207-000000-000000" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, stderr := cli(t, tc.args...)
			if code != tc.code || strings.TrimSuffix(stderr, "\n") != tc.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
	// version and --version say the same.
	_, v1, _ := cli(t, "version")
	_, v2, _ := cli(t, "--version")
	if v1 != v2 || !strings.HasPrefix(v1, "remediator ") || !strings.Contains(v1, "(commit ") {
		t.Errorf("version %q, --version %q", v1, v2)
	}
	if body := metrics(t, m.Addr); !strings.Contains(body, "remediator_build_info{commit=") {
		t.Errorf("no remediator_build_info in the metrics:\n%s", grepLines(body, "remediator_build"))
	}
	// /readyz tells the truth about the cluster.
	polltest.Until(t, 30*time.Second, "/readyz to tell the cluster reachable", func() (bool, string) {
		body := readyz(t, m.Addr)
		return strings.Contains(body, "cluster default: etcd reachable (checked "), body
	})
}

func unmarshalAs(format, out string, v any) error {
	if format == "yaml" {
		return yaml.Unmarshal([]byte(out), v)
	}
	return json.Unmarshal([]byte(out), v)
}

func grepLines(body string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

func readyz(t *testing.T, addr string) string { return getText(t, "http://"+addr+"/readyz") }

// A pause shows where the humans look: the incident's Slack message says its cluster is
// paused, by whom and why, while it waits.
func TestAPausedClustersIncidentSaysSoInSlack(t *testing.T) {
	etcd, _ := nospaceCluster(t)
	slack := slacktest.New(t, botToken)
	cfg := testConfig(t, etcd)
	withSlack(t, &cfg, slack, "auto", "      users: [alice]\n      from_risk: destructive")
	dir := t.TempDir()
	cfg.API.OperatorsFile = writeFile(t, filepath.Join(dir, "operators.yaml"), "alice: alices-token\n")
	tokenFile := writeFile(t, filepath.Join(dir, "alice"), "alices-token\n")
	m := startService(t, cfg)
	as := []string{"--server", "http://" + m.Addr, "--token-file", tokenFile}
	if code, _, errOut := cli(t, append([]string{"pause", "--all", "--reason", "change freeze until Monday"}, as...)...); code != exitOK {
		t.Fatalf("pause: %d %s", code, errOut)
	}
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != 202 {
		t.Fatalf("POST: %d %v", code, body)
	}
	polltest.Until(t, time.Minute, "the Slack message to say the cluster is paused", func() (bool, string) {
		var shown []string
		for _, c := range append(slack.Calls("chat.postMessage"), slack.Calls("chat.update")...) {
			shown = append(shown, c.Form.Get("blocks"))
		}
		all := strings.Join(shown, "\n")
		return strings.Contains(all, "paused: alice paused every cluster at ") && strings.Contains(all, ": change freeze until Monday; no step starts until `remediator resume`"), all
	})
	inc := waitIncident(t, m.Addr, time.Minute, func(remediator.Incident) bool { return true })
	if inc.State != remediator.StatePending || slices.ContainsFunc(inc.Steps, func(s remediator.Step) bool { return s.Attempts > 0 }) {
		t.Errorf("on a paused cluster the incident is %s with steps %+v; want pending, nothing run", inc.State, inc.Steps)
	}
}

// TestCancelStopsARunRetryingAgainstAnUnreachableEtcd is the 3 a.m. case: the cluster's etcd
// does not answer, the step retries with a growing backoff for half an hour, and the operator
// sees why (its attempt, its next try, its last error with the endpoints it failed on) and
// stops it.
func TestCancelStopsARunRetryingAgainstAnUnreachableEtcd(t *testing.T) {
	etcd, _ := nospaceCluster(t)
	cfg := testConfig(t, etcd)
	dir := t.TempDir()
	cfg.API.OperatorsFile = writeFile(t, filepath.Join(dir, "operators.yaml"), "alice: alices-token\n")
	tokenFile := writeFile(t, filepath.Join(dir, "alice"), "alices-token\n")
	m := startService(t, cfg)
	as := []string{"--server", "http://" + m.Addr, "--token-file", tokenFile}
	etcd.Stop()
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != 202 {
		t.Fatalf("POST: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, 2*time.Minute, func(inc remediator.Incident) bool {
		return slices.ContainsFunc(inc.Steps, func(s remediator.Step) bool { return !s.RetryAt.IsZero() })
	})
	code, out, _ := cli(t, append([]string{"show", inc.ID}, as...)...)
	for _, want := range []string{"running  attempt 1 of 9, next at ", ", last error: attempt 1: member list from " + strings.Join(etcd.Endpoints(), ", ") + ": no answer in time (etcd down, overloaded, or not reachable from here)\n"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := cli(t, append([]string{"cancel", inc.ID, "--reason", "etcd is down for maintenance"}, as...)...); code != exitOK {
		t.Fatalf("cancel: %d %s", code, errOut)
	}
	inc = waitIncident(t, m.Addr, time.Minute, terminal)
	if inc.State != remediator.StateCancelled || inc.Reason != "cancelled by alice: etcd is down for maintenance" {
		t.Errorf("after cancel: %s (%q); steps %+v", inc.State, inc.Reason, inc.Steps)
	}
}
