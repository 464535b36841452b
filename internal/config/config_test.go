package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/errfile"
	"github.com/remediator/remediator/internal/yamlstrict"
)

func noEnv(string) string { return "" }

func TestInvalidConfigsNameTheKey(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, path := range files {
		if filepath.Base(path) == "valid.yaml" {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			want := errfile.Want(t, path)
			_, err := Load(path, noEnv)
			if err == nil || err.Error() != want {
				t.Errorf("error:\n%v\nwant:\n%s", err, want)
			}
		})
	}
}

func TestValidConfig(t *testing.T) {
	cfg, err := Load("testdata/valid.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:9095" || cfg.DataDir != "/var/lib/remediator" || cfg.NATS.Replicas != 3 ||
		time.Duration(cfg.NATS.AckWait) != time.Minute || len(cfg.Clusters) != 2 || len(cfg.Clusters[0].Etcd.Endpoints) != 3 {
		t.Errorf("config: %+v", cfg)
	}
	if cfg.Webhook.BearerToken != "hunter2" {
		t.Errorf("bearer token %q, want the file's content trimmed", cfg.Webhook.BearerToken)
	}
	if a := cfg.API.Operators; a["alice"] != (Operator{Token: "alices-token", SlackID: "U01ALICE"}) || a["bob"] != (Operator{Token: "bobs-token"}) {
		t.Errorf("operators %+v: want alice with her Slack ID, and bob from the token-only form", a)
	}
	if got := cfg.NATS.Agents["prod/ip-10-0-0-12.ec2.internal"]; got != "UDZ2LIOUW7EN7IE5LNS7L5WLPZXYHFJ7GLHMYW3YW5M7BC33PYGY4OD6" || len(cfg.NATS.Agents) != 2 {
		t.Errorf("agents %v", cfg.NATS.Agents)
	}
	if cfg.API.MetricsToken != "hunter2" || len(cfg.Kubernetes.TrustedObjects) != 1 || len(cfg.Agent.ServiceKeys) != 1 {
		t.Errorf("metrics token %q, trusted objects %v, service keys %v", cfg.API.MetricsToken, cfg.Kubernetes.TrustedObjects, cfg.Agent.ServiceKeys)
	}
	if cfg.Clusters[0].Etcd.TLS.CAFile != filepath.Join("testdata", "token") || cfg.PoliciesDir != "testdata" {
		t.Errorf("relative paths are not resolved against the config's folder: %q, %q", cfg.Clusters[0].Etcd.TLS.CAFile, cfg.PoliciesDir)
	}
}

func TestDefaultsFollowEtcdctlsEnvironment(t *testing.T) {
	cfg, err := Load("", func(k string) string {
		return map[string]string{"ETCDCTL_ENDPOINTS": "http://10.0.0.1:2379,http://10.0.0.2:2379"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9095" || cfg.DataDir != "data" || cfg.NATS.URL != "" || len(cfg.Clusters) != 1 ||
		cfg.Clusters[0].Name != "default" || strings.Join(cfg.Clusters[0].Etcd.Endpoints, ",") != "http://10.0.0.1:2379,http://10.0.0.2:2379" {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, _ = Load("", noEnv)
	if got := cfg.Clusters[0].Etcd.Endpoints; len(got) != 1 || got[0] != "127.0.0.1:2379" {
		t.Errorf("default endpoints %v, want 127.0.0.1:2379", got)
	}
}

func TestTheExampleConfigHasOnlyKnownKeys(t *testing.T) {
	data, err := os.ReadFile("../../deploy/remediator.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := yamlstrict.Decode(data, &cfg); err != nil {
		t.Fatalf("deploy/remediator.example.yaml: %v", err)
	}
	if len(cfg.Clusters) != 1 || cfg.Clusters[0].Etcd.TLS.CertFile == "" || cfg.Webhook.BearerTokenFile == "" {
		t.Errorf("example decoded to %+v", cfg)
	}
}
