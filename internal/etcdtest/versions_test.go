package etcdtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator/internal/manifest"
)

func TestVersionsFromTheEnvironment(t *testing.T) {
	tests := map[string]struct {
		env  string
		want []Version
		err  string
	}{
		"unset: all":      {"", []Version{Version34, Version35, Version36, Version37}, ""},
		"one":             {"3.7", []Version{Version37}, ""},
		"oldest first":    {"3.7, 3.4,", []Version{Version34, Version37}, ""},
		"twice":           {"3.5,3.5", []Version{Version35}, ""},
		"unknown":         {"3.4,3.3", nil, `etcdtest: $REMEDIATOR_ETCD_VERSIONS="3.4,3.3": "3.3" is no etcd version tests run (known: 3.4, 3.5, 3.6, 3.7)`},
		"a patch release": {"3.5.36", nil, `"3.5.36" is no etcd version tests run`},
		"only separators": {",", nil, `etcdtest: $REMEDIATOR_ETCD_VERSIONS="," names no version (known: 3.4, 3.5, 3.6, 3.7)`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv(VersionsEnv, tt.env)
			got, err := Versions()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || strings.Join(names(got), ",") != strings.Join(names(tt.want), ",") {
				t.Errorf("versions %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func names(vs []Version) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return out
}

// A wrong binary for a version fails here: every member of a cluster started at a version
// reports it, and logs JSON lines LogLines reads; a static cluster's kubelet runs it too, under
// a manifest whose image tag names that release.
func TestEveryVersionRunsItsOwnEtcd(t *testing.T) {
	EachVersion(t, func(t *testing.T, v Version) {
		c := New(t, Options{Members: 3, Version: v})
		cl, err := c.Client()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for _, m := range c.Members {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := cl.Status(ctx, m.ClientURL)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(st.Version, v.String()+".") {
				t.Errorf("member %s of a %s cluster is etcd %s", m.Name, v, st.Version)
			}
			if ready, err := m.LogLines("starting an etcd server"); err != nil || len(ready) == 0 {
				t.Errorf("member %s logged no JSON line LogLines reads (%v):\n%s", m.Name, err, m.Log())
			}
		}

		s := NewStatic(t, StaticOptions{Template: "../../testdata/manifests/etcd.yaml", Version: v})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		scl, err := s.Cluster().Client()
		if err != nil {
			t.Fatal(err)
		}
		defer scl.Close()
		st, err := scl.Status(ctx, s.Nodes[0].ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(s.Nodes[0].Manifest())
		if err != nil {
			t.Fatal(err)
		}
		pod, err := manifest.ParsePod(data)
		if err != nil {
			t.Fatal(err)
		}
		if want := "registry.k8s.io/etcd:" + st.Version + "-0"; !strings.HasPrefix(st.Version, v.String()+".") || pod.Image() != want {
			t.Errorf("the static pod runs etcd %s under the image %s; want %s.x and %s", st.Version, pod.Image(), v, want)
		}
	})
}

// A version whose binary is missing fails the test that asks for it, saying how to install it.
func TestAMissingEtcdSaysHowToInstallIt(t *testing.T) {
	t.Setenv("REMEDIATOR_ETCD_3_4_BIN", "")
	r, _ := Version34.release()
	r.server = "/nonexistent/etcd"
	_, err := r.find(r.serverEnv, r.server, "etcd", ".")
	if err == nil || !strings.Contains(err.Error(), "apt-get install etcd-server etcd-client") {
		t.Errorf("error %v, want it to say apt-get install etcd-server etcd-client", err)
	}
	if _, err := Version("3.3").Binary(); err == nil || !strings.Contains(err.Error(), "known: 3.4, 3.5, 3.6, 3.7") {
		t.Errorf("error %v for an unknown version", err)
	}
}
