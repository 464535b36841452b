package agent

import (
	"slices"
	"testing"
)

// The restore tool follows the etcd version the manifest's image tag names: etcd 3.4 and older
// have no etcdutl.
func TestTheRestoreToolFollowsTheImageTag(t *testing.T) {
	cfg := Config{Etcdutl: "/opt/etcdutl", Etcdctl: "/opt/etcdctl"}
	tests := map[string]struct {
		image string
		tool  string
	}{
		"kubeadm's 3.4":           {"registry.k8s.io/etcd:3.4.13-0", "etcdctl"},
		"kubeadm 1.13's 3.3":      {"k8s.gcr.io/etcd:3.3.10", "etcdctl"},
		"a v-tag":                 {"quay.io/coreos/etcd:v3.4.3", "etcdctl"},
		"a registry port":         {"registry.local:5000/etcd:3.4.23", "etcdctl"},
		"a digest":                {"registry.k8s.io/etcd:3.4.13-0@sha256:4ad90a11b55313b182afc186b9876c8e891531b8db4c9bf1541953021618d0e2", "etcdctl"},
		"a minor tag":             {"etcd:3.4-0", "etcdctl"},
		"etcd 2":                  {"quay.io/coreos/etcd:v2.3.8", "etcdctl"},
		"kubeadm's 3.5":           {"registry.k8s.io/etcd:3.5.12-0", "etcdutl"},
		"3.6":                     {"gcr.io/etcd-development/etcd:v3.6.0", "etcdutl"},
		"3.10, not 3.1":           {"registry.k8s.io/etcd:3.10.0-0", "etcdutl"},
		"latest":                  {"registry.k8s.io/etcd:latest", "etcdutl"},
		"no tag, registry port":   {"registry.local:5000/etcd", "etcdutl"},
		"no image (a service)":    {"", "etcdutl"},
		"a tag that is no number": {"registry.k8s.io/etcd:three.four", "etcdutl"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := cfg.restorer(tt.image)
			wantBin, wantEnv := cfg.Etcdutl, []string(nil)
			if tt.tool == "etcdctl" {
				wantBin, wantEnv = cfg.Etcdctl, []string{"ETCDCTL_API=3"}
			}
			if r.name != tt.tool || r.bin != wantBin || !slices.Equal(r.env, wantEnv) || r.why == "" {
				t.Errorf("restorer %+v, want %s (%s, env %v) and why", r, tt.tool, wantBin, wantEnv)
			}
		})
	}
}
