// Package agent is the node agent: it runs on a control-plane node and carries out the typed,
// node-local actions of remediations (stop or start a component, edit its flags, suspend
// etcd's liveness probe, move or restore etcd's data dir). Every path comes from the agent's
// own configuration; nothing received over the queue is run as a command.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/manifest"
)

// The runtimes: how the node runs etcd.
const (
	// RuntimeStaticPod is kubeadm's: static pod manifests the kubelet runs.
	RuntimeStaticPod = "staticpod"
	// RuntimeService is etcd under systemd, monit or similar, with its flags in a file.
	RuntimeService = "service"
)

// defaultWait bounds how long an action waits for its effect when it names no timeout.
const defaultWait = 2 * time.Minute

// Config is the agent's own configuration.
type Config struct {
	// Node names the node; Cluster the etcd cluster its member belongs to.
	Node    string
	Cluster string
	// Runtime is RuntimeStaticPod or RuntimeService.
	Runtime string
	// ManifestsDir is the kubelet's static pod folder; StoppedDir is where a stopped
	// component's manifest waits, outside it.
	ManifestsDir      string
	StoppedDir        string
	EtcdManifest      string
	APIServerManifest string
	// Service runs etcd under a service manager.
	Service Service
	// BackupDir holds manifest backups and data dir copies, under a folder per incident.
	BackupDir string
	// EtcdDataDir overrides etcd's --data-dir, where the host path differs from the pod's.
	EtcdDataDir string
	// EtcdHealthURL and APIServerHealthURL are asked by the health action; by default they
	// come from the components' flags (the metrics URL's /health, the secure port's /readyz).
	EtcdHealthURL      string
	APIServerHealthURL string
	// Etcdutl is the etcdutl binary, for restore-snapshot.
	Etcdutl string
	Log     *slog.Logger
}

// Service is how a service manager runs etcd.
type Service struct {
	Stop        []string
	Start       []string
	FlagsFile   string
	FlagsFormat manifest.Format
}

// Agent carries out node actions, one at a time.
type Agent struct {
	cfg  Config
	rt   runtime
	http *http.Client
	mu   sync.Mutex
	now  func() time.Time
	// found is etcd's command line as the agent found it on disk when it started: its data
	// dir and its own name and peer URLs come from there, never from a file an action rewrote.
	found found
}

// found is etcd's flags as the agent found them at start, or why it could not read them.
type found struct {
	flags map[string]string
	err   error
}

func (f found) why() string {
	if f.err != nil {
		return " (" + f.err.Error() + ")"
	}
	return ""
}

// runtime is how the node runs a component.
type runtime interface {
	// file is the component's manifest or flags file as it is now.
	file(c remediator.Component) (path string, err error)
	parse(c remediator.Component, data []byte) (manifest.Flags, error)
	running(c remediator.Component) bool
	stop(ctx context.Context, c remediator.Component) (string, error)
	start(ctx context.Context, c remediator.Component) (string, error)
}

// New checks the configuration and returns the agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Node == "" || cfg.Cluster == "" {
		return nil, errors.New("agent: node and cluster must be set")
	}
	if cfg.BackupDir == "" {
		return nil, errors.New("agent.backup_dir: must be set")
	}
	a := &Agent{cfg: cfg, now: time.Now,
		// The health endpoints are loopback and unauthenticated; like the kubelet's probes,
		// the check does not verify the serving certificate.
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	switch cfg.Runtime {
	case RuntimeStaticPod, "":
		a.cfg.Runtime = RuntimeStaticPod
		if cfg.ManifestsDir == "" || cfg.StoppedDir == "" {
			return nil, errors.New("agent: manifests_dir and stopped_dir must be set for the staticpod runtime")
		}
		// The kubelet runs every file in the manifests folder that is not a dot-file: a
		// backup or a stopped manifest there would be run as a second pod.
		for _, d := range []struct{ key, dir string }{{"agent.stopped_dir", cfg.StoppedDir}, {"agent.backup_dir", cfg.BackupDir}} {
			if inside(d.dir, cfg.ManifestsDir) {
				return nil, fmt.Errorf("%s: %s is inside the manifests folder %s, where the kubelet would run what it holds", d.key, d.dir, cfg.ManifestsDir)
			}
		}
		if a.cfg.EtcdManifest == "" {
			a.cfg.EtcdManifest = "etcd.yaml"
		}
		if a.cfg.APIServerManifest == "" {
			a.cfg.APIServerManifest = "kube-apiserver.yaml"
		}
		a.rt = &staticPods{a: a}
	case RuntimeService:
		s := cfg.Service
		if len(s.Stop) == 0 || len(s.Start) == 0 || s.FlagsFile == "" {
			return nil, errors.New("agent.service: stop, start and flags_file must be set for the service runtime")
		}
		if s.FlagsFormat == "" {
			a.cfg.Service.FlagsFormat = manifest.FormatEnv
		}
		a.rt = &service{a: a}
	default:
		return nil, fmt.Errorf("agent.runtime: %q is neither staticpod nor service", cfg.Runtime)
	}
	if _, f, _, err := a.read(remediator.ComponentEtcd); err != nil {
		a.found.err = err
	} else {
		a.found.flags = f.Flags()
	}
	return a, nil
}

// incidentBackup returns the source a rollback or a restore may put back: path with every
// symbolic link resolved, which must then lie inside the incident's own backup folder (itself
// no link), so that only what remediator saved for the same incident comes back. The caller
// reads the resolved path, not path, which could be pointed elsewhere after the check.
func (a *Agent) incidentBackup(incident, path string) (string, error) {
	folder := filepath.Join(a.cfg.BackupDir, incident)
	if fi, err := os.Lstat(folder); err != nil || !fi.IsDir() {
		return "", remediator.Errorf(remediator.EFORBIDDEN, "incident %s has no backup folder on node %s (a folder, not a link): %s", incident, a.cfg.Node, folder)
	}
	folder, err := filepath.EvalSymlinks(folder)
	if err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "incident %s's backup folder on node %s: %w", incident, a.cfg.Node, err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "backup %s: %w", path, err)
	}
	if !inside(real, folder) || real == folder {
		return "", remediator.Errorf(remediator.EFORBIDDEN, "%s is not one of incident %s's backups (in %s)", path, incident, folder)
	}
	return real, nil
}

func inside(dir, parent string) bool {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(parent)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(p, d)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Do carries out one action. Every action is idempotent: asked again after a lost reply, it
// finds its work done and says so.
func (a *Agent) Do(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	log := a.cfg.Log.With("action", act.Kind, "component", act.Component, "incident", act.Incident)
	res, err := a.do(ctx, act)
	res.Node = a.cfg.Node
	if err != nil {
		log.Warn("node action failed", "err", err)
		return res, err
	}
	log.Info("node action done", "output", res.Output)
	return res, nil
}

func (a *Agent) do(ctx context.Context, act remediator.NodeAction) (remediator.NodeResult, error) {
	if err := validate(act); err != nil {
		return remediator.NodeResult{}, err
	}
	wait := time.Duration(act.Timeout)
	if wait <= 0 {
		wait = defaultWait
	}
	var (
		out string
		err error
	)
	switch act.Kind {
	case remediator.ActionInspect:
	case remediator.ActionStop:
		out, err = a.stop(ctx, act.Component, wait)
	case remediator.ActionStart:
		out, err = a.rt.start(ctx, act.Component)
	case remediator.ActionSetFlags:
		return a.setFlags(act)
	case remediator.ActionRollback:
		return a.rollback(act)
	case remediator.ActionSuspendProbe, remediator.ActionRestoreProbe:
		return a.probe(act)
	case remediator.ActionMoveData, remediator.ActionCopyData:
		return a.backupData(act)
	case remediator.ActionRemoveSnapFiles:
		return a.removeSnapFiles()
	case remediator.ActionRestoreSnapshot:
		return a.restoreSnapshot(ctx, act)
	case remediator.ActionHealth:
		return a.health(ctx, act.Component, wait)
	}
	res, ierr := a.inspect(act.Component)
	res.Output = out
	return res, errors.Join(err, ierr)
}

func validate(act remediator.NodeAction) error {
	known := []remediator.ActionKind{remediator.ActionInspect, remediator.ActionStop, remediator.ActionStart,
		remediator.ActionSetFlags, remediator.ActionRollback, remediator.ActionSuspendProbe, remediator.ActionRestoreProbe,
		remediator.ActionMoveData, remediator.ActionCopyData, remediator.ActionRemoveSnapFiles,
		remediator.ActionRestoreSnapshot, remediator.ActionHealth}
	if !slices.Contains(known, act.Kind) {
		return remediator.Errorf(remediator.EINVALID, "unknown action %q", act.Kind)
	}
	switch act.Component {
	case remediator.ComponentEtcd, remediator.ComponentAPIServer:
	case "":
		return remediator.Errorf(remediator.EINVALID, "action %s: no component", act.Kind)
	default:
		return remediator.Errorf(remediator.EINVALID, "action %s: unknown component %q", act.Kind, act.Component)
	}
	etcdOnly := []remediator.ActionKind{remediator.ActionSuspendProbe, remediator.ActionRestoreProbe, remediator.ActionMoveData,
		remediator.ActionCopyData, remediator.ActionRemoveSnapFiles, remediator.ActionRestoreSnapshot}
	if act.Component != remediator.ComponentEtcd && slices.Contains(etcdOnly, act.Kind) {
		return remediator.Errorf(remediator.EINVALID, "action %s is for etcd only", act.Kind)
	}
	if act.Incident == "" || strings.ContainsAny(act.Incident, "/\\.") {
		return remediator.Errorf(remediator.EINVALID, "action %s: incident %q cannot name a backup folder", act.Kind, act.Incident)
	}
	if act.Kind == remediator.ActionSetFlags && len(act.Set) == 0 && len(act.Remove) == 0 {
		return remediator.Errorf(remediator.EINVALID, "action set-flags: no flag to set or remove")
	}
	if len(act.Incident) > 128 {
		return remediator.Errorf(remediator.EINVALID, "action %s: incident %q is too long to name a backup folder", act.Kind, act.Incident)
	}
	return nil
}

// read parses the component's current manifest or flags file.
func (a *Agent) read(c remediator.Component) (string, manifest.Flags, os.FileMode, error) {
	path, err := a.rt.file(c)
	if err != nil {
		return "", nil, 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", nil, 0, remediator.Errorf(remediator.EPRECONDITION, "%s: %w", c, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, 0, remediator.Errorf(remediator.EPRECONDITION, "%s: %w", c, err)
	}
	f, err := a.rt.parse(c, data)
	if err != nil {
		return "", nil, 0, remediator.Errorf(remediator.EPRECONDITION, "%s: %s: %w", c, path, err)
	}
	return path, f, fi.Mode().Perm(), nil
}

// inspect reports what the component looks like now.
func (a *Agent) inspect(c remediator.Component) (remediator.NodeResult, error) {
	_, f, _, err := a.read(c)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	res := remediator.NodeResult{Running: a.rt.running(c), Flags: f.Flags(), CheckedAt: a.now().UTC()}
	if pod, ok := f.(*manifest.Pod); ok {
		present, suspended, target := pod.Probe()
		res.Probe = &remediator.Probe{Present: present, Suspended: suspended, Target: target}
	}
	if c == remediator.ComponentEtcd {
		dir, err := a.dataDir()
		if err != nil {
			return res, err
		}
		res.DataDir = dir
		if _, err := os.Stat(filepath.Join(dir, "member")); err == nil {
			res.HasData = true
		}
		if fi, err := os.Stat(filepath.Join(dir, "member", "snap", "db")); err == nil {
			res.DBSize = diskSize(fi)
		}
		snaps, _ := filepath.Glob(filepath.Join(dir, "member", "snap", "*.snap"))
		for _, s := range snaps {
			res.SnapFiles = append(res.SnapFiles, filepath.Base(s))
		}
	}
	return res, nil
}

// diskSize is how much of a file is on disk. bbolt grows etcd's backend file ahead of its
// data, sparsely (to its mmap size, or 16 MiB past the data), so the file's length overstates
// the backend the quota limits.
func diskSize(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 < fi.Size() {
		return st.Blocks * 512
	}
	return fi.Size()
}

// dataDir is etcd's data dir on this node: agent.etcd_data_dir, or --data-dir as etcd's
// manifest said when the agent started.
func (a *Agent) dataDir() (string, error) {
	if a.cfg.EtcdDataDir != "" {
		return a.cfg.EtcdDataDir, nil
	}
	if a.found.flags == nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "etcd's manifest could not be read when the agent started%s: restart the agent once it is in place, or set agent.etcd_data_dir", a.found.why())
	}
	dir := a.found.flags["data-dir"]
	if dir == "" || !filepath.IsAbs(dir) {
		return "", remediator.Errorf(remediator.EPRECONDITION, "etcd's --data-dir is %q: set agent.etcd_data_dir to its absolute path on this node", dir)
	}
	return dir, nil
}

// sameDataDir refuses to touch a data dir when etcd's manifest now names another than the
// agent found at start: someone changed it, and which one holds etcd's data is for a human.
func (a *Agent) sameDataDir(f manifest.Flags) error {
	if a.cfg.EtcdDataDir != "" || a.found.flags == nil {
		return nil
	}
	if now, then := f.Flags()["data-dir"], a.found.flags["data-dir"]; now != then {
		return remediator.Errorf(remediator.EPRECONDITION, "etcd's --data-dir is now %q, and was %q when the agent started: not touching either; restart the agent if a human changed it", now, then)
	}
	return nil
}

// serving is the address the component serves on, from its flags.
func serving(c remediator.Component, flags map[string]string) string {
	if c == remediator.ComponentAPIServer {
		port := flags["secure-port"]
		if port == "" {
			port = "6443"
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	first, _, _ := strings.Cut(flags["listen-client-urls"], ",")
	u, err := url.Parse(first)
	if err != nil || u.Host == "" {
		return "127.0.0.1:2379"
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, u.Port())
}

// stop stops the component and waits until it has been quiet for stopSettle: nothing answers
// on its address and, for etcd, nothing holds its data dir's files. A crash-looping member
// answers only now and then, and the kubelet may start it once more before it notices the
// manifest is gone: one quiet look is not enough.
func (a *Agent) stop(ctx context.Context, c remediator.Component, wait time.Duration) (string, error) {
	_, f, _, err := a.read(c)
	if err != nil {
		return "", err
	}
	addr := serving(c, f.Flags())
	out, err := a.rt.stop(ctx, c)
	if err != nil {
		return out, err
	}
	deadline := time.Now().Add(wait)
	var quietSince time.Time
	for {
		busy, err := a.busy(c, f, addr)
		switch {
		case err != nil:
			return out, err
		case busy != "":
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= stopSettle:
			return out + fmt.Sprintf("; nothing answers on %s any more", addr), nil
		}
		if busy != "" && time.Now().After(deadline) {
			return out, remediator.Errorf(remediator.EUNAVAILABLE, "%s %s %s after it was stopped", c, busy, wait)
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopSettle is how long a stopped component must stay quiet before it counts as stopped.
const stopSettle = 2 * time.Second

// busy says what shows the component still runs: it answers on its address, or (etcd) holds
// a lock on its data dir's files; "" when neither.
func (a *Agent) busy(c remediator.Component, f manifest.Flags, addr string) (string, error) {
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		return "still answers on " + addr, nil
	}
	if c != remediator.ComponentEtcd {
		return "", nil
	}
	dir, err := a.dataDir()
	if err != nil {
		return "", err
	}
	if held := lockedFile(dir); held != "" {
		return "still holds " + held, nil
	}
	return "", nil
}

// stoppedData returns etcd's flags and data dir, refusing unless etcd is stopped: its data
// dir must not be touched while it runs.
func (a *Agent) stoppedData() (map[string]string, string, error) {
	_, f, _, err := a.read(remediator.ComponentEtcd)
	if err != nil {
		return nil, "", err
	}
	dir, err := a.dataDir()
	if err != nil {
		return nil, "", err
	}
	if err := a.sameDataDir(f); err != nil {
		return nil, "", err
	}
	if a.rt.running(remediator.ComponentEtcd) {
		return nil, "", remediator.Errorf(remediator.EPRECONDITION, "etcd is configured to run on node %s: stop it first", a.cfg.Node)
	}
	flags := f.Flags()
	addr := serving(remediator.ComponentEtcd, flags)
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		return nil, "", remediator.Errorf(remediator.EPRECONDITION, "something still answers on etcd's address %s on node %s: not touching its data", addr, a.cfg.Node)
	}
	// etcd stops answering early in its shutdown and closes its files last: its data is
	// whole once it lets go of their locks.
	if err := a.released(unlockWait); err != nil {
		return nil, "", err
	}
	return flags, dir, nil
}

// released waits until etcd, stopped, has let go of its data dir's files.
func (a *Agent) released(wait time.Duration) error {
	dir, err := a.dataDir()
	if err != nil {
		return err
	}
	if held := waitUnlocked(dir, wait); held != "" {
		return remediator.Errorf(remediator.EUNAVAILABLE, "etcd on node %s still holds %s: it is still shutting down", a.cfg.Node, held)
	}
	return nil
}

// unlockWait is how long an etcd that stopped answering may take to close its files.
const unlockWait = 10 * time.Second

// waitUnlocked waits until no process holds a lock on the WAL files and the backend of the
// data dir, and returns the one still held when the wait is over, or "". It takes the locks
// the way etcd does (etcd's fileutil for the WAL, flock for bbolt's db) and lets go at once.
func waitUnlocked(dir string, wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		held := lockedFile(dir)
		if held == "" || time.Now().After(deadline) {
			return held
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lockedFile(dir string) string {
	wals, _ := filepath.Glob(filepath.Join(dir, "member", "wal", "*.wal"))
	for _, w := range wals {
		l, err := fileutil.TryLockFile(w, os.O_WRONLY, 0)
		if errors.Is(err, fileutil.ErrLocked) {
			return w
		}
		if err == nil {
			l.Close()
		}
	}
	db := filepath.Join(dir, "member", "snap", "db")
	f, err := os.Open(db)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return db
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return ""
}

// backupPath is a new backup's path: backup_dir/<incident>/<name>.<time>.
func (a *Agent) backupPath(incident, name string) string {
	return filepath.Join(a.cfg.BackupDir, incident, name+"."+a.now().UTC().Format("20060102T150405.000000000Z"))
}

// writeFile replaces path atomically, through a dot-file next to it that the kubelet ignores.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".remediator.tmp")
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// save backs up the file, then writes its new content.
func (a *Agent) save(incident, path string, old, data []byte, mode os.FileMode) (string, error) {
	backup := a.backupPath(incident, filepath.Base(path))
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "backup dir: %w", err)
	}
	if err := os.WriteFile(backup, old, 0o600); err != nil {
		return "", remediator.Errorf(remediator.EPRECONDITION, "backup of %s: %w", path, err)
	}
	if err := writeFile(path, data, mode); err != nil {
		return backup, remediator.Errorf(remediator.EPRECONDITION, "write %s: %w", path, err)
	}
	return backup, nil
}

func (a *Agent) setFlags(act remediator.NodeAction) (remediator.NodeResult, error) {
	path, f, mode, err := a.read(act.Component)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	if err := a.allowed(act, f.Flags()); err != nil {
		return remediator.NodeResult{}, err
	}
	old := f.Bytes()
	var did []string
	for _, name := range slices.Sorted(maps.Keys(act.Set)) {
		changed, err := f.Set(name, act.Set[name])
		if err != nil {
			return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "%s: %w", path, err)
		}
		if changed {
			did = append(did, "set --"+strings.TrimSuffix(name+"="+act.Set[name], "="))
		}
	}
	for _, name := range act.Remove {
		if f.Remove(name) {
			did = append(did, "removed --"+name)
		}
	}
	if len(did) == 0 {
		res, err := a.inspect(act.Component)
		res.Output = fmt.Sprintf("%s already had the flags asked for; nothing changed", path)
		return res, err
	}
	backup, err := a.save(act.Incident, path, old, f.Bytes(), mode)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	res, err := a.inspect(act.Component)
	res.Changed, res.Backup = true, backup
	res.Output = fmt.Sprintf("%s: %s (backup %s)", path, strings.Join(did, ", "), backup)
	return res, err
}

// rollback puts back the named backup of the component's file, or the incident's first
// backup of it (the file as remediator found it) when none is named.
func (a *Agent) rollback(act remediator.NodeAction) (remediator.NodeResult, error) {
	path, f, mode, err := a.read(act.Component)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	backup := act.Backup
	if backup == "" {
		matches, _ := filepath.Glob(filepath.Join(a.cfg.BackupDir, act.Incident, filepath.Base(path)+".*"))
		slices.Sort(matches)
		if len(matches) == 0 {
			return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "no backup of %s for incident %s to roll back to", path, act.Incident)
		}
		backup = matches[0]
	}
	backup, err = a.incidentBackup(act.Incident, backup)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "backup: %w", err)
	}
	if _, err := a.rt.parse(act.Component, data); err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "backup %s does not parse: %w", backup, err)
	}
	cur := f.Bytes()
	if string(cur) == string(data) {
		res, err := a.inspect(act.Component)
		res.Output, res.Backup = fmt.Sprintf("%s is already as in %s", path, backup), backup
		return res, err
	}
	// The file as it was before the rollback is kept too, so a rollback can be undone.
	if _, err := a.save(act.Incident, path, cur, data, mode); err != nil {
		return remediator.NodeResult{}, err
	}
	res, err := a.inspect(act.Component)
	res.Changed, res.Backup = true, backup
	res.Output = fmt.Sprintf("%s rolled back to %s", path, backup)
	return res, err
}

func (a *Agent) probe(act remediator.NodeAction) (remediator.NodeResult, error) {
	path, f, mode, err := a.read(act.Component)
	if err != nil {
		return remediator.NodeResult{}, err
	}
	pod, ok := f.(*manifest.Pod)
	if !ok {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "%s is not run as a static pod on node %s: it has no liveness probe to change", act.Component, a.cfg.Node)
	}
	old := pod.Bytes()
	var changed bool
	if act.Kind == remediator.ActionSuspendProbe {
		changed, err = pod.SuspendProbe()
	} else {
		changed, err = pod.RestoreProbe()
	}
	if err != nil {
		return remediator.NodeResult{}, remediator.Errorf(remediator.EPRECONDITION, "%s: %w", path, err)
	}
	var backup string
	if changed {
		if backup, err = a.save(act.Incident, path, old, pod.Bytes(), mode); err != nil {
			return remediator.NodeResult{}, err
		}
	}
	res, err := a.inspect(act.Component)
	res.Changed, res.Backup = changed, backup
	switch {
	case act.Kind == remediator.ActionSuspendProbe && changed:
		res.Output = fmt.Sprintf("%s: liveness probe %s commented out (backup %s)", path, res.Probe.Target, backup)
	case act.Kind == remediator.ActionSuspendProbe && res.Probe.Present:
		res.Output = fmt.Sprintf("%s: liveness probe already suspended", path)
	case act.Kind == remediator.ActionSuspendProbe:
		res.Output = fmt.Sprintf("%s has no liveness probe", path)
	case changed:
		res.Output = fmt.Sprintf("%s: liveness probe %s restored (backup %s)", path, res.Probe.Target, backup)
	default:
		res.Output = fmt.Sprintf("%s: no suspended liveness probe to restore", path)
	}
	return res, err
}

// health asks the component's health endpoint until it answers 200, for up to wait.
func (a *Agent) health(ctx context.Context, c remediator.Component, wait time.Duration) (remediator.NodeResult, error) {
	res, err := a.inspect(c)
	if err != nil {
		return res, err
	}
	target := a.healthURL(c, res.Flags)
	deadline := time.Now().Add(wait)
	for {
		body, code, err := a.get(ctx, target)
		res.HealthOutput = strings.TrimSpace(body)
		if err == nil && code == http.StatusOK {
			res.Output = fmt.Sprintf("%s answers %d", target, code)
			return res, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			why := fmt.Sprintf("status %d", code)
			if err != nil {
				why = err.Error()
			}
			res.Output = fmt.Sprintf("%s not healthy after %s: %s", target, wait, why)
			return res, remediator.Errorf(remediator.EUNAVAILABLE, "%s is not healthy on node %s after %s: %s: %s", c, a.cfg.Node, wait, why, res.HealthOutput)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (a *Agent) healthURL(c remediator.Component, flags map[string]string) string {
	if c == remediator.ComponentAPIServer {
		if a.cfg.APIServerHealthURL != "" {
			return a.cfg.APIServerHealthURL
		}
		return "https://" + serving(c, flags) + "/readyz?verbose"
	}
	if a.cfg.EtcdHealthURL != "" {
		return a.cfg.EtcdHealthURL
	}
	if m, _, _ := strings.Cut(flags["listen-metrics-urls"], ","); m != "" {
		return strings.TrimSuffix(m, "/") + "/health"
	}
	scheme := "http"
	if strings.HasPrefix(flags["listen-client-urls"], "https") {
		scheme = "https"
	}
	return scheme + "://" + serving(c, flags) + "/health"
}

func (a *Agent) get(ctx context.Context, target string) (string, int, error) {
	// As long as kubeadm's probes wait: kube-apiserver's /readyz waits for its etcd check,
	// which may itself take up to --etcd-readycheck-timeout.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(body), resp.StatusCode, err
}
