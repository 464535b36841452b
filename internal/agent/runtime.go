package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/manifest"
)

// runtime is how the node runs a component.
type runtime interface {
	// file is the component's manifest or flags file as it is now.
	file(c remediator.Component) (path string, err error)
	parse(c remediator.Component, data []byte) (manifest.Flags, error)
	running(c remediator.Component) bool
	stop(ctx context.Context, c remediator.Component) (string, error)
	start(ctx context.Context, c remediator.Component) (string, error)
}

// staticPods runs components as kubeadm's static pods: the kubelet runs the manifests in the
// manifests folder, so moving a manifest out stops its pod and moving it back starts it.
type staticPods struct{ a *Agent }

func (s *staticPods) name(c remediator.Component) string {
	if c == remediator.ComponentAPIServer {
		return s.a.cfg.APIServerManifest
	}
	return s.a.cfg.EtcdManifest
}

func (s *staticPods) paths(c remediator.Component) (live, stopped string) {
	return filepath.Join(s.a.cfg.ManifestsDir, s.name(c)), filepath.Join(s.a.cfg.StoppedDir, s.name(c))
}

// file is the manifest where it is now: in the manifests folder, or waiting in the stopped
// folder, where edits go while the component is stopped.
func (s *staticPods) file(c remediator.Component) (string, error) {
	live, stopped := s.paths(c)
	_, errLive := os.Stat(live)
	_, errStopped := os.Stat(stopped)
	switch {
	case errLive == nil && errStopped == nil:
		return "", remediator.Errorf(remediator.EPRECONDITION, "both %s and %s exist: a human must say which is %s's manifest", live, stopped, c)
	case errLive == nil:
		return live, nil
	case errStopped == nil:
		return stopped, nil
	}
	return "", remediator.Errorf(remediator.EPRECONDITION, "no manifest of %s on node %s: neither %s nor %s", c, s.a.cfg.Node, live, stopped)
}

func (s *staticPods) parse(_ remediator.Component, data []byte) (manifest.Flags, error) {
	return manifest.ParsePod(data)
}

func (s *staticPods) running(c remediator.Component) bool {
	live, _ := s.paths(c)
	_, err := os.Stat(live)
	return err == nil
}

func (s *staticPods) stop(_ context.Context, c remediator.Component) (string, error) {
	live, stopped := s.paths(c)
	if _, err := s.file(c); err != nil {
		return "", err
	}
	if !s.running(c) {
		return fmt.Sprintf("%s was already stopped: its manifest is in %s", c, s.a.cfg.StoppedDir), nil
	}
	if err := os.MkdirAll(s.a.cfg.StoppedDir, 0o700); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "stopped dir: %w", err)
	}
	if err := move(live, stopped); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "stop %s: %w", c, err)
	}
	return fmt.Sprintf("moved %s to %s; the kubelet stops the pod", live, stopped), nil
}

func (s *staticPods) start(_ context.Context, c remediator.Component) (string, error) {
	live, stopped := s.paths(c)
	if _, err := s.file(c); err != nil {
		return "", err
	}
	if s.running(c) {
		return fmt.Sprintf("%s was already started: its manifest is in %s", c, s.a.cfg.ManifestsDir), nil
	}
	if err := move(stopped, live); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "start %s: %w", c, err)
	}
	return fmt.Sprintf("moved %s back to %s; the kubelet starts the pod", filepath.Base(live), s.a.cfg.ManifestsDir), nil
}

// move renames a file, or copies it where the two folders are on different filesystems. The
// copy reaches the kubelet's folder through a dot-file, so it never reads half a manifest.
func move(from, to string) error {
	err := os.Rename(from, to)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := writeFile(to, data, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Remove(from)
}

// service runs etcd under a service manager, with its flags in an env or flags file.
type service struct{ a *Agent }

func (s *service) etcdOnly(c remediator.Component) error {
	if c != remediator.ComponentEtcd {
		return remediator.Errorf(remediator.EINVALID, "node %s runs etcd as a service; it does not manage %s", s.a.cfg.Node, c)
	}
	return nil
}

func (s *service) file(c remediator.Component) (string, error) {
	return s.a.cfg.Service.FlagsFile, s.etcdOnly(c)
}

func (s *service) parse(_ remediator.Component, data []byte) (manifest.Flags, error) {
	return manifest.ParseFlagsFile(data, s.a.cfg.Service.FlagsFormat)
}

// stoppedMark records that remediator stopped the service, so that "running" means the same
// as for a static pod: configured to run, whatever the process is doing right now.
func (s *service) stoppedMark() string {
	return filepath.Join(s.a.cfg.BackupDir, ".etcd-stopped-by-remediator")
}

func (s *service) running(remediator.Component) bool {
	_, err := os.Stat(s.stoppedMark())
	return err != nil
}

func (s *service) stop(ctx context.Context, c remediator.Component) (string, error) {
	if err := s.etcdOnly(c); err != nil {
		return "", err
	}
	out, err := run(ctx, s.a.cfg.Service.Stop)
	if err != nil {
		return out, err
	}
	if err := os.MkdirAll(s.a.cfg.BackupDir, 0o700); err != nil {
		return out, remediator.Errorf(remediator.EPRECONDITION, "backup dir: %w", err)
	}
	if err := os.WriteFile(s.stoppedMark(), nil, 0o600); err != nil {
		return out, remediator.Errorf(remediator.EPRECONDITION, "record the stop: %w", err)
	}
	return fmt.Sprintf("ran %s: %s", strings.Join(s.a.cfg.Service.Stop, " "), out), nil
}

func (s *service) start(ctx context.Context, c remediator.Component) (string, error) {
	if err := s.etcdOnly(c); err != nil {
		return "", err
	}
	out, err := run(ctx, s.a.cfg.Service.Start)
	if err != nil {
		return out, err
	}
	if err := os.Remove(s.stoppedMark()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return out, remediator.Errorf(remediator.EPRECONDITION, "record the start: %w", err)
	}
	return fmt.Sprintf("ran %s: %s", strings.Join(s.a.cfg.Service.Start, " "), out), nil
}

// run runs one of the agent's configured commands (never one from the queue), with env added
// to the agent's environment.
func run(ctx context.Context, argv []string, env ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// A start command may leave a daemon behind that holds our output open: stop reading it
	// once the command itself has exited. The daemon gets its own process group, so it does
	// not die with the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	text := strings.TrimSpace(out.String())
	if len(text) > 2000 {
		text = text[len(text)-2000:]
	}
	if err != nil {
		return text, remediator.Errorf(remediator.EUNAVAILABLE, "%s: %w: %s", strings.Join(argv, " "), err, text)
	}
	if text == "" {
		text = "ok"
	}
	return text, nil
}
