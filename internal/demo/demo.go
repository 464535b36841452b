// Package demo is `make demo`: a local 3-member etcd filled into NOSPACE, remediator on its
// embedded defaults, the alert Alertmanager would send, and the report that comes back.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
)

// Options say where things are.
type Options struct {
	// Remediator is the remediator binary.
	Remediator string
	// Payload is the Alertmanager webhook body to send; Resolved the one that says it resolved.
	Payload  string
	Resolved string
	// Dir holds the demo's etcd, remediator's data and the logs; it is emptied first.
	Dir string
	// Addr is where remediator listens by default.
	Addr string
}

// Run runs the demo, narrating to out.
func Run(ctx context.Context, out io.Writer, o Options) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }
	if err := os.RemoveAll(o.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}

	say("starting a 3-member etcd with an 8 MiB quota (logs in %s)", o.Dir)
	etcd, err := etcdtest.Start(ctx, etcdtest.Options{Members: 3, QuotaBytes: 8 << 20, Dir: filepath.Join(o.Dir, "etcd")})
	if err != nil {
		return err
	}
	defer etcd.Stop()
	cl, err := etcd.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	writes, err := etcdtest.Fill(ctx, cl)
	if err != nil {
		return err
	}
	alarms, err := cl.AlarmList(ctx)
	if err != nil {
		return err
	}
	_, werr := cl.Put(ctx, "demo/write", "refused?")
	say("after %d writes of 200 KiB: %d NOSPACE alarms armed; a new write says: %v", writes, len(alarms.Alarms), werr)

	say("starting remediator serve on its defaults (embedded NATS, data in %s/data), ETCDCTL_ENDPOINTS=%s",
		o.Dir, strings.Join(etcd.Endpoints(), ","))
	logPath := filepath.Join(o.Dir, "remediator.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	bin, err := filepath.Abs(o.Remediator)
	if err != nil {
		return err
	}
	svc := exec.Command(bin, "serve")
	svc.Dir = o.Dir
	svc.Env = append(os.Environ(), "ETCDCTL_ENDPOINTS="+strings.Join(etcd.Endpoints(), ","))
	svc.Stdout, svc.Stderr = logf, logf
	if err := svc.Start(); err != nil {
		return err
	}
	defer func() {
		_ = svc.Process.Signal(syscall.SIGTERM)
		_ = svc.Wait()
	}()
	base := "http://" + o.Addr
	if err := waitReady(ctx, base, 30*time.Second); err != nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}

	// The alert fired when etcd filled up, as Prometheus would have seen it.
	firedAt := time.Now().Add(-time.Minute)
	if err := post(base, o.Payload, firedAt, say); err != nil {
		return err
	}

	inc, err := follow(ctx, out, base, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}
	_, err = cl.Put(ctx, "demo/write", "accepted")
	say("a new write now says: %v", errOrOK(err))
	if inc.State != remediator.StateSucceeded {
		return fmt.Errorf("the incident ended %s: %s (see %s)", inc.State, inc.Reason, logPath)
	}

	// Prometheus would now see the database back under its quota, and Alertmanager would send
	// the resolved notification: it closes the incident.
	if err := post(base, o.Resolved, firedAt, say); err != nil {
		return err
	}
	if inc, err = waitClosed(ctx, base, inc.ID, 30*time.Second); err != nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}
	say("incident %s closed at %s: its alerts resolved", inc.ID, inc.ClosedAt.UTC().Format(time.RFC3339))

	html := filepath.Join(o.Dir, "report.html")
	if err := download(base+remediator.ReportPath(inc.ID), html); err != nil {
		return err
	}
	say("the HTML report, with the DB size chart and the step timeline, is in %s", html)
	resp, err := http.Get(base + "/api/v1/incidents/" + inc.ID + "/report")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	say("the report (GET /api/v1/incidents/%s/report, or remediator report %s):\n", inc.ID, inc.ID)
	_, err = io.Copy(out, resp.Body)
	return err
}

// post sends an Alertmanager payload to the webhook, as Alertmanager would, with its alerts
// starting at firedAt and the resolved ones ending now, so that the report's times are the
// demo's own.
func post(base, payload string, firedAt time.Time, say func(string, ...any)) error {
	data, err := os.ReadFile(payload)
	if err != nil {
		return err
	}
	var msg map[string]any
	if err := json.Unmarshal(data, &msg); err != nil {
		return fmt.Errorf("%s: %w", payload, err)
	}
	alerts, _ := msg["alerts"].([]any)
	for _, a := range alerts {
		if a, ok := a.(map[string]any); ok {
			a["startsAt"] = firedAt.UTC().Format(time.RFC3339Nano)
			if a["status"] == "resolved" {
				a["endsAt"] = time.Now().UTC().Format(time.RFC3339Nano)
			}
		}
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	resp, err := http.Post(base+"/webhooks/alertmanager", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	say("POST %s -> %s %s", filepath.Base(payload), resp.Status, strings.TrimSpace(string(answer)))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("the webhook refused %s", payload)
	}
	return nil
}

// waitClosed waits until the incident is closed.
func waitClosed(ctx context.Context, base, id string, timeout time.Duration) (remediator.Incident, error) {
	deadline := time.Now().Add(timeout)
	var inc remediator.Incident
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/api/v1/incidents/" + id); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&inc)
			resp.Body.Close()
			if inc.Closed() {
				return inc, nil
			}
		}
		select {
		case <-ctx.Done():
			return inc, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return inc, fmt.Errorf("incident %s did not close within %s of its alerts resolving", id, timeout)
}

// download saves what url answers in path.
func download(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, body, 0o644)
}

func waitReady(ctx context.Context, base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("remediator was not ready at %s within %s", base, timeout)
}

// follow prints each step as it changes, until the incident is over.
func follow(ctx context.Context, out io.Writer, base string, timeout time.Duration) (remediator.Incident, error) {
	seen := map[string]string{}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var list struct{ Incidents []remediator.Incident }
		if resp, err := http.Get(base + "/api/v1/incidents"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		if len(list.Incidents) > 0 {
			inc := list.Incidents[0]
			if seen["incident"] != string(inc.State) {
				seen["incident"] = string(inc.State)
				fmt.Fprintf(out, "    incident %s: %s\n", inc.ID, inc.State)
			}
			for _, s := range inc.Steps {
				if seen[s.Name] != string(s.State) {
					seen[s.Name] = string(s.State)
					fmt.Fprintf(out, "    step %-10s %s\n", s.Name, s.State)
				}
			}
			if inc.State.Terminal() {
				return inc, nil
			}
		}
		select {
		case <-ctx.Done():
			return remediator.Incident{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return remediator.Incident{}, fmt.Errorf("no finished incident within %s", timeout)
}

func errOrOK(err error) any {
	if err == nil {
		return "OK"
	}
	return err
}
