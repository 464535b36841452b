package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/etcdtest"
)

// TestTheDefaultNOSPACEPolicyHealsEveryEtcdVersion fills a 3-member cluster of each supported
// etcd into NOSPACE and heals it with serve on its defaults, no quota_bytes given: etcd before
// 3.6 tells its quota only at /metrics.
func TestTheDefaultNOSPACEPolicyHealsEveryEtcdVersion(t *testing.T) {
	etcdtest.EachVersion(t, func(t *testing.T, v etcdtest.Version) {
		etcd, cl := nospaceClusterAt(t, v)
		m := startService(t, testConfig(t, etcd))
		if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
			t.Fatalf("POST firing: %d %v", code, body)
		}
		inc := waitIncident(t, m.Addr, 2*time.Minute, terminal)
		assertHealed(t, inc, cl)
		if len(inc.Before) != 3 || len(inc.After) != 3 {
			t.Fatalf("figures of %d members before and %d after, want 3 and 3", len(inc.Before), len(inc.After))
		}
		for i, after := range inc.After {
			before := inc.Before[i]
			if !strings.HasPrefix(before.Version, string(v)+".") {
				t.Errorf("member %s runs etcd %s, want %s", before.Name, before.Version, v)
			}
			if after.DBSize >= before.DBSize || before.Quota != quota {
				t.Errorf("member %s: db %d -> %d, quota %d: want it smaller, and the quota %d known", after.Name, before.DBSize, after.DBSize, before.Quota, quota)
			}
		}
		if out := step(t, inc, "disarm").Output; !strings.Contains(out, "of 8.0 MiB quota") {
			t.Errorf("disarm says %q, want each member's db of its 8.0 MiB quota", out)
		}
	})
}

// TestNOSPACEAtProductionSize heals a cluster whose members hold hundreds of MiB of live data
// under as much history: defragmentation takes seconds there, and the live data must all
// still be there after.
func TestNOSPACEAtProductionSize(t *testing.T) {
	s := etcdtest.Sized{Live: 200 << 20, History: 200 << 20, Quota: 360 << 20}
	etcd := etcdtest.New(t, etcdtest.Options{Members: 3, QuotaBytes: s.Quota})
	cl, err := etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := etcdtest.FillSized(ctx, cl, s); err != nil {
		t.Fatal(err)
	}
	if a := alarmList(t, cl); !strings.Contains(a, "NOSPACE") {
		t.Fatalf("after filling, alarms = %q, want NOSPACE", a)
	}
	m := startService(t, testConfig(t, etcd))
	if code, body := post(t, m.Addr, "nospace-firing.json"); code != http.StatusAccepted {
		t.Fatalf("POST firing: %d %v", code, body)
	}
	inc := waitIncident(t, m.Addr, 5*time.Minute, terminal)
	assertHealed(t, inc, cl)
	for i, after := range inc.After {
		before := inc.Before[i]
		if after.DBSize >= before.DBSize || after.DBSize < s.Live {
			t.Errorf("member %s: db %s -> %s, want it smaller and still holding the %s live",
				after.Name, remediator.HumanBytes(before.DBSize), remediator.HumanBytes(after.DBSize), remediator.HumanBytes(s.Live))
		}
	}
	live, err := cl.Get(ctx, "live/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if want := s.Live / etcdtest.ValueSize; err != nil || live.Count != want {
		t.Errorf("%v live keys (%v), want all %d", live, err, want)
	}
	t.Logf("defragment: %s", step(t, inc, "defragment").Output)
}
