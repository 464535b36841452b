package probeguard_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/agenttest"
	"github.com/remediator/remediator/internal/etcdtest"
	"github.com/remediator/remediator/internal/polltest"
	"github.com/remediator/remediator/internal/steptest"
	"github.com/remediator/remediator/queue"
	"github.com/remediator/remediator/remediations/etcdops"
	"github.com/remediator/remediator/remediations/nodeops"
	"github.com/remediator/remediator/remediations/nospace"
	"github.com/remediator/remediator/remediations/probeguard"
)

type setup struct {
	etcd      *etcdtest.StaticCluster
	client    *clientv3.Client
	guard     *probeguard.Remediation
	originals map[string][]byte
}

func start(t *testing.T, template string, members int) *setup {
	t.Helper()
	etcd := etcdtest.NewStatic(t, etcdtest.StaticOptions{Members: members, QuotaBytes: 4 << 20,
		Template: filepath.Join("..", "..", "testdata", "manifests", template)})
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	agents := agenttest.Start(t, q, "test", etcd, nil)
	clients := etcdops.NewClients([]etcdops.ClusterConfig{{Name: "test", Endpoints: etcd.Endpoints()}})
	t.Cleanup(func() { clients.Close() })
	cl, err := clients.Get("test")
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{etcd: etcd, client: cl, originals: map[string][]byte{},
		guard: probeguard.New(clients, &nodeops.Nodes{Agents: agents}, nospace.New(clients, t.TempDir()))}
	for _, n := range etcd.Nodes {
		if s.originals[n.Name], err = os.ReadFile(n.Manifest()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *setup) fill(t *testing.T) {
	t.Helper()
	if _, err := etcdtest.Fill(context.Background(), s.client); err != nil {
		t.Fatal(err)
	}
}

func (s *setup) assertManifestsAsFound(t *testing.T) {
	t.Helper()
	for _, n := range s.etcd.Nodes {
		got, err := os.ReadFile(n.Manifest())
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(s.originals[n.Name]) {
			t.Errorf("%s: etcd.yaml is not as it was found:\n%s", n.Name, got)
		}
	}
}

// Seed 004 for real: the old kubeadm probe asks /health, which fails while NOSPACE is armed,
// and the kubelet kills etcd; with the probes suspended the recovery goes through, and the
// manifests end as they were found.
func TestOldProbeIsSuspendedForTheRecovery(t *testing.T) {
	s := start(t, "etcd-kubeadm-1.13.yaml", 3)
	s.fill(t)
	// The probe fails 8 times a (scaled) second apart, and the kubelet restarts etcd.
	n := s.etcd.Nodes[0]
	polltest.Until(t, 30*time.Second, "the old liveness probe to kill etcd under NOSPACE", func() (bool, string) {
		r := n.Kubelet.Restarts("etcd.yaml")
		return r >= 2, fmt.Sprintf("%d start(s)", r)
	})

	r := steptest.New(t, s.guard.Plan, "test", nil)
	if !r.Plan[len(r.Plan)-1].Always {
		t.Fatal("restore-probes is not a clean-up step")
	}
	results, failed, err := r.All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	for _, n := range s.etcd.Nodes {
		if !strings.Contains(results["check-probes"].Output, n.Name) || !strings.Contains(results["suspend-probes"].Output, "commented out") {
			t.Fatalf("check/suspend outputs:\n%s\n%s", results["check-probes"].Output, results["suspend-probes"].Output)
		}
	}
	alarms, err := s.client.AlarmList(context.Background())
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms after recovery: %v, %v", alarms, err)
	}
	if _, err := s.client.Put(context.Background(), "after", "works"); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	s.assertManifestsAsFound(t)
	// The restored probes run and pass, with no restart meanwhile.
	before := n.Kubelet.Restarts("etcd.yaml")
	polltest.Until(t, 30*time.Second, "the restored liveness probe to pass 3 times in a row", func() (bool, string) {
		passed, starts := n.Kubelet.ProbesPassed("etcd.yaml"), n.Kubelet.Restarts("etcd.yaml")
		if starts != before {
			t.Fatalf("etcd restarted %d times after the recovery", starts-before)
		}
		return passed >= 3, fmt.Sprintf("%d passed in a row", passed)
	})
}

// A failed recovery still turns the probes back on.
func TestProbesComeBackWhenTheRecoveryFails(t *testing.T) {
	s := start(t, "etcd-kubeadm-1.13.yaml", 1)
	s.fill(t)
	// No member can be disarmed below a ratio of 0.01: the disarm step fails.
	r := steptest.New(t, s.guard.Plan, "test", map[string]string{"disarm_below_ratio": "0.01"})
	results, failed, err := r.All()
	if failed != "disarm" || remediator.ErrorCode(err) != remediator.EPRECONDITION {
		t.Fatalf("failed at %q: %v", failed, err)
	}
	if !strings.Contains(results["restore-probes"].Output, "restored") {
		t.Fatalf("restore-probes did not run after the failure:\n%s", results["restore-probes"].Output)
	}
	s.assertManifestsAsFound(t)
}

// Modern manifests are not touched: their probe excludes NOSPACE.
func TestModernProbeIsLeftAlone(t *testing.T) {
	s := start(t, "etcd.yaml", 1)
	s.fill(t)
	r := steptest.New(t, s.guard.Plan, "test", nil)
	results, failed, err := r.All()
	if err != nil {
		t.Fatalf("step %s: %v", failed, err)
	}
	if !strings.Contains(results["check-probes"].Output, "survives NOSPACE") || results["suspend-probes"].Output != "no liveness probe needs it" {
		t.Fatalf("outputs:\n%s\n%s", results["check-probes"].Output, results["suspend-probes"].Output)
	}
	s.assertManifestsAsFound(t)
	if restarts := s.etcd.Nodes[0].Kubelet.Restarts("etcd.yaml"); restarts != 1 {
		t.Fatalf("etcd restarted %d times", restarts-1)
	}
}
