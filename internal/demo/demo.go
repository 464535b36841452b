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
	// Payload is the Alertmanager webhook body to send.
	Payload string
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

	body, err := os.ReadFile(o.Payload)
	if err != nil {
		return err
	}
	resp, err := http.Post(base+"/webhooks/alertmanager", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	say("POST %s -> %s %s", filepath.Base(o.Payload), resp.Status, strings.TrimSpace(string(answer)))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("the webhook was refused")
	}

	inc, err := follow(ctx, out, base, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}
	_, err = cl.Put(ctx, "demo/write", "accepted")
	say("a new write now says: %v", errOrOK(err))

	resp, err = http.Get(base + "/api/v1/incidents/" + inc.ID + "/report")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	say("the report (GET /api/v1/incidents/%s/report):\n", inc.ID)
	_, err = io.Copy(out, resp.Body)
	if err == nil && inc.State != remediator.StateSucceeded {
		err = fmt.Errorf("the incident ended %s: %s", inc.State, inc.Reason)
	}
	return err
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
