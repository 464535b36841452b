package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// process is remediator running as its own process, so that it can be killed for real.
type process struct {
	cmd  *exec.Cmd
	log  string
	addr string
}

func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "remediator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess starts `bin serve --config configPath` logging to logPath, with the extra
// flags given, and waits until it serves.
func startProcess(t testing.TB, bin, configPath, logPath string, extra ...string) *process {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: exec.Command(bin, append([]string{"serve", "--config", configPath, "--log-format", "json"}, extra...)...), log: logPath}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", logPath, b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for p.addr == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		p.addr = servingAddr(logPath)
	}
	if p.addr == "" {
		t.Fatalf("remediator did not log that it serves within 30s")
	}
	return p
}

// servingAddr reads the HTTP address from the service's "remediator serving" log line.
func servingAddr(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "remediator serving" {
			return line.Addr
		}
	}
	return ""
}

func TestKilledMidRemediationResumesWithoutRepeatingSteps(t *testing.T) {
	bin := buildBinary(t)
	etcd, cl := nospaceCluster(t)
	dir := t.TempDir()
	policies := writePolicy(t, "auto", map[string]string{"pause_between_members": "3s"})
	configPath := filepath.Join(dir, "remediator.yaml")
	config := fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: data\nnats:\n  ack_wait: 2s\npolicies_dir: %s\nclusters:\n  - name: default\n    etcd:\n      endpoints: [%s]\n",
		policies, strings.Join(etcd.Endpoints(), ", "))
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}

	first := startProcess(t, bin, configPath, filepath.Join(dir, "first.log"))
	if code, body := post(t, first.addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, body)
	}
	waitIncident(t, first.addr, 2*time.Minute, func(inc remediator.Incident) bool {
		return len(inc.Steps) == 6 && strings.Contains(string(inc.Steps[3].Progress), `"name"`)
	})
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	defragged := 0
	for _, ts := range defragTimes(t, etcd) {
		defragged += len(ts)
	}
	if defragged != 1 {
		t.Fatalf("%d members defragmented when the service was killed, want 1 (mid-remediation)", defragged)
	}

	second := startProcess(t, bin, configPath, filepath.Join(dir, "second.log"))
	inc := waitIncident(t, second.addr, 2*time.Minute, terminal)

	if inc.State != remediator.StateSucceeded {
		t.Fatalf("incident after the restart: %s (%s), want succeeded", inc.State, inc.Reason)
	}
	if a := alarmList(t, cl); a != "" {
		t.Errorf("alarms: %s, want none", a)
	}
	if err := probeWrite(cl); err != nil {
		t.Errorf("a write after the remediation: %v", err)
	}
	assertDefraggedOnceLeaderLast(t, etcd, leaderOf(t, inc.Before))
	wantAttempts := map[string]int{"preflight": 1, "snapshot": 1, "compact": 1, "defragment": 2, "disarm": 1, "verify": 1}
	for _, s := range inc.Steps {
		if s.State != remediator.StepSucceeded || s.Attempts != wantAttempts[s.Name] {
			t.Errorf("step %s: %s after %d attempts, want succeeded after %d", s.Name, s.State, s.Attempts, wantAttempts[s.Name])
		}
	}
}
