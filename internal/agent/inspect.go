package agent

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/manifest"
)

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
