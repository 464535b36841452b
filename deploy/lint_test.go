// Package deploy holds what an operator applies next to remediator: the Kubernetes manifests
// (kubernetes/), the NATS Helm chart's values (nats/), Prometheus and Loki rules, the
// Alertmanager configuration and the Slack app manifest. It has no code; its tests are `make
// lint-deploy`, which checks all of it offline, against the real schemas (kustomize,
// k8s.io/api, the Prometheus Operator's types, the NATS chart's values), the real tools and
// parsers (promtool, amtool, nats-server's configuration parser) and remediator's own
// configuration loader and policies.
package deploy

import (
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/remediator/remediator/internal/errfile"
)

// aptHint is how the tools are installed; a lint that skips when they are missing would pass
// without checking anything, so a missing tool fails the test and says this.
const aptHint = "apt-get install prometheus prometheus-alertmanager"

// tool returns the path of promtool or amtool, failing the test if it is not installed.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed to lint deploy/ and is not installed: %s (%v)", name, aptHint, err)
	}
	return path
}

// run runs a tool and returns its combined output, trimmed.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(tool(t, name), args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// shipped is the build of kubernetes/, linted once for every test that needs it.
var shipped = sync.OnceValues(func() (*deployment, error) { return lint("kubernetes") })

// fixture is the build of testdata/kustomize/cluster: a small deployment with keys of its own
// that passes the lint, which the broken twins break one thing of at a time.
var fixture = sync.OnceValues(func() (*deployment, error) { return lint("testdata/kustomize/cluster") })

// build returns the linted build of kubernetes/ for a test that needs it, failing the test
// if the build has any problem (TestKubernetesManifests lists them).
func build(t *testing.T) *deployment {
	t.Helper()
	d, err := shipped()
	if err != nil {
		t.Fatal("deploy/kubernetes does not pass the lint: see TestKubernetesManifests")
	}
	return d
}

// wantError fails the test unless err is the error that file's leading comment names
// (errfile); why says what passing it would let through.
func wantError(t *testing.T, file, why string, err error) {
	t.Helper()
	if want := errfile.Want(t, file); err == nil || err.Error() != want {
		t.Errorf("%s: %s:\nerror:\n%v\nwant:\n%s", file, why, err, want)
	}
}
