package agent

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nkeys"

	"github.com/remediator/remediator/internal/manifest"
)

// The runtimes: how the node runs etcd.
const (
	// RuntimeStaticPod is kubeadm's: static pod manifests the kubelet runs.
	RuntimeStaticPod = "staticpod"
	// RuntimeService is etcd under systemd, monit or similar, with its flags in a file.
	RuntimeService = "service"
)

// Config is the agent's configuration: the agent section of remediator's configuration file,
// which decodes into it, and what the caller sets (Node from --node, Cluster, Log).
type Config struct {
	// Node names this node; `remediator agent --node` overrides it.
	Node string `yaml:"node"`
	// Cluster is the etcd cluster whose member runs here. In the file it may be empty, for the
	// only cluster; the caller resolves it before New.
	Cluster string `yaml:"cluster"`
	// Runtime is RuntimeStaticPod or RuntimeService.
	Runtime string `yaml:"runtime"`
	// ManifestsDir is the kubelet's static pod folder; StoppedDir is where a stopped
	// component's manifest waits, outside it.
	ManifestsDir      string `yaml:"manifests_dir"`
	StoppedDir        string `yaml:"stopped_dir"`
	EtcdManifest      string `yaml:"etcd_manifest"`
	APIServerManifest string `yaml:"apiserver_manifest"`
	// BackupDir holds manifest backups and data dir copies, under a folder per incident;
	// never inside ManifestsDir.
	BackupDir string `yaml:"backup_dir"`
	// EtcdDataDir overrides etcd's --data-dir, where the host path differs from the pod's.
	EtcdDataDir string `yaml:"etcd_data_dir"`
	// EtcdHealthURL and APIServerHealthURL are asked by the health action; by default they
	// come from the components' flags (the metrics URL's /health, the secure port's /readyz).
	EtcdHealthURL      string `yaml:"etcd_health_url"`
	APIServerHealthURL string `yaml:"apiserver_health_url"`
	// Etcdutl is the etcdutl binary, for restore-snapshot of etcd 3.5 and later.
	Etcdutl string `yaml:"etcdutl"`
	// Etcdctl is the etcdctl binary, for restore-snapshot of etcd 3.4 and older, which have
	// no etcdutl: the etcd whose manifest's image tag says 3.4 or older.
	Etcdctl string `yaml:"etcdctl"`
	// Service runs etcd under a service manager.
	Service Service `yaml:"service"`
	// ServiceKeys are the public nkeys of remediator serve (its nats.nkey_file): the agent's
	// connection takes only actions signed by one of them. Several, while a key is rotated.
	ServiceKeys []string `yaml:"service_keys"`
	// Log is the agent's logger (none if nil).
	Log *slog.Logger `yaml:"-"`
}

// Service is how a service manager runs etcd, and where its flags are.
type Service struct {
	Stop      []string `yaml:"stop_command"`
	Start     []string `yaml:"start_command"`
	FlagsFile string   `yaml:"flags_file"`
	// FlagsFormat is env (ETCD_NAME=...) or args (--name=...).
	FlagsFormat manifest.Format `yaml:"flags_format"`
}

// Defaults is what each key of the agent section is when nothing sets it: kubeadm's layout.
// It is the only place the agent's defaults are written down.
func Defaults() Config {
	return Config{
		Runtime:           RuntimeStaticPod,
		ManifestsDir:      "/etc/kubernetes/manifests",
		StoppedDir:        "/etc/kubernetes/remediator-stopped",
		EtcdManifest:      "etcd.yaml",
		APIServerManifest: "kube-apiserver.yaml",
		BackupDir:         "/var/lib/remediator/backups",
		Etcdutl:           "etcdutl",
		Etcdctl:           "etcdctl",
		Service:           Service{FlagsFormat: manifest.FormatEnv},
	}
}

// withDefaults fills what c leaves empty from Defaults, for a Config built in code rather
// than decoded over Defaults.
func (c Config) withDefaults() Config {
	d := Defaults()
	c.Runtime = cmp.Or(c.Runtime, d.Runtime)
	c.ManifestsDir = cmp.Or(c.ManifestsDir, d.ManifestsDir)
	c.StoppedDir = cmp.Or(c.StoppedDir, d.StoppedDir)
	c.EtcdManifest = cmp.Or(c.EtcdManifest, d.EtcdManifest)
	c.APIServerManifest = cmp.Or(c.APIServerManifest, d.APIServerManifest)
	c.BackupDir = cmp.Or(c.BackupDir, d.BackupDir)
	c.Etcdutl = cmp.Or(c.Etcdutl, d.Etcdutl)
	c.Etcdctl = cmp.Or(c.Etcdctl, d.Etcdctl)
	c.Service.FlagsFormat = cmp.Or(c.Service.FlagsFormat, d.Service.FlagsFormat)
	return c
}

// Validate checks the agent section; each error names its key under agent. The node and the
// cluster are the caller's, and New checks them.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.BackupDir == "" {
		bad("agent.backup_dir", "must be set")
	}
	switch c.Runtime {
	case RuntimeStaticPod, "":
		if c.ManifestsDir == "" || c.StoppedDir == "" {
			bad("agent", "manifests_dir and stopped_dir must be set for the staticpod runtime")
			break
		}
		// The kubelet runs every file in the manifests folder that is not a dot-file: a
		// backup or a stopped manifest there would be run as a second pod.
		for _, d := range []struct{ key, dir string }{{"agent.stopped_dir", c.StoppedDir}, {"agent.backup_dir", c.BackupDir}} {
			if d.dir != "" && inside(d.dir, c.ManifestsDir) {
				bad(d.key, "%s is inside the manifests folder %s, where the kubelet would run what it holds", d.dir, c.ManifestsDir)
			}
		}
	case RuntimeService:
		if s := c.Service; len(s.Stop) == 0 || len(s.Start) == 0 || s.FlagsFile == "" {
			bad("agent.service", "stop, start and flags_file must be set for the service runtime")
		}
	default:
		bad("agent.runtime", "%q is neither staticpod nor service", c.Runtime)
	}
	for i, k := range c.ServiceKeys {
		if !nkeys.IsValidPublicUserKey(k) {
			bad(fmt.Sprintf("agent.service_keys[%d]", i), "%q is not a public user nkey (U...): `remediator nats key --public --config serve.yaml` prints serve's", k)
		}
	}
	return errors.Join(errs...)
}
