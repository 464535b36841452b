package handlers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

// event reads a kubernetes-event-exporter payload from testdata/kubernetes, edited by fns.
func event(t testing.TB, name string, fns ...func(map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) == 0 {
		return b
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range fns {
		f(m)
	}
	b, _ = json.Marshal(m)
	return b
}

func array(t testing.TB, events ...[]byte) []byte {
	t.Helper()
	return []byte("[" + string(joinBytes(events)) + "]")
}

func joinBytes(bs [][]byte) []byte {
	var out []byte
	for i, b := range bs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	return out
}

func TestKubernetesEventsAreClassifiedIntoSignals(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 1, 0, 0, time.UTC)
	for _, tc := range []struct {
		file       string
		wantSignal string // "" for an event that is not a signal
		wantLabels map[string]string
		wantCount  string
		wantStart  string
	}{
		{"etcd-liveness-unhealthy.json", SignalEtcdUnhealthy,
			map[string]string{"component": "etcd", "node": "cp1", "reason": "Unhealthy", "namespace": "kube-system", "cluster": "prod"}, "4", "2026-11-21T09:58:11Z"},
		{"etcd-backoff.json", SignalEtcdBackOff, map[string]string{"component": "etcd", "node": "cp1"}, "3", "2026-11-21T09:59:52Z"},
		// events.k8s.io-style reporters count in series and stamp eventTime only.
		{"apiserver-readiness.json", SignalAPIServerUnhealthy, map[string]string{"component": "kube-apiserver", "node": "cp2"}, "7", "2026-11-21T09:41:03Z"},
		// A seed's error string makes any event a signal, whatever object it is about.
		{"replicaset-nospace.json", SignalEtcdError,
			map[string]string{"error": "database space exceeded", "kind": "ReplicaSet", "namespace": "shop"}, "6", "2026-11-21T10:00:05Z"},
		{"pulled.json", "", nil, "", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			batch, ignored, rejected, err := DecodeKubernetes(event(t, tc.file), []string{"prod", "staging"}, now)
			if err != nil || len(rejected) > 0 {
				t.Fatalf("DecodeKubernetes: %v %v", err, rejected)
			}
			if tc.wantSignal == "" {
				if len(batch.Alerts) != 0 || ignored != 1 {
					t.Fatalf("got %d signals and %d ignored, want the event ignored: %+v", len(batch.Alerts), ignored, batch.Alerts)
				}
				return
			}
			if len(batch.Alerts) != 1 {
				t.Fatalf("got %d signals, want 1", len(batch.Alerts))
			}
			a := batch.Alerts[0]
			if a.Name() != tc.wantSignal || a.Source != remediator.SourceKubernetes || a.Cluster != "prod" || a.Status != remediator.AlertFiring {
				t.Errorf("signal %s from %s on %s (%s), want %s from kubernetes on prod, firing", a.Name(), a.Source, a.Cluster, a.Status, tc.wantSignal)
			}
			for k, v := range tc.wantLabels {
				if a.Labels[k] != v {
					t.Errorf("label %s = %q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
				}
			}
			if a.Annotations["count"] != tc.wantCount || a.StartsAt.UTC().Format(time.RFC3339) != tc.wantStart {
				t.Errorf("count %s since %s, want %s since %s", a.Annotations["count"], a.StartsAt.UTC().Format(time.RFC3339), tc.wantCount, tc.wantStart)
			}
			if !strings.Contains(a.Text(), a.Annotations["message"]) || a.Annotations["message"] == "" {
				t.Errorf("the event's message is not in the text policies match on: %q", a.Text())
			}
		})
	}
}

func TestARepeatedEventKeepsItsFingerprint(t *testing.T) {
	now := time.Now()
	grown := event(t, "etcd-backoff.json", func(m map[string]any) { m["count"] = 9; m["lastTimestamp"] = "2026-11-21T10:04:00Z" })
	first, _, _, err := DecodeKubernetes(event(t, "etcd-backoff.json"), []string{"prod"}, now)
	if err != nil {
		t.Fatal(err)
	}
	again, _, _, err := DecodeKubernetes(grown, []string{"prod"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if first.Alerts[0].Fingerprint != again.Alerts[0].Fingerprint || !first.Alerts[0].StartsAt.Equal(again.Alerts[0].StartsAt) {
		t.Errorf("the same event with a grown count is another signal: %s/%s vs %s/%s",
			first.Alerts[0].Fingerprint, first.Alerts[0].StartsAt, again.Alerts[0].Fingerprint, again.Alerts[0].StartsAt)
	}
	if first.ID == again.ID {
		t.Errorf("a grown count has the batch ID of the first report (%s): the news would be dropped as a duplicate", first.ID)
	}
	if got := again.Alerts[0].Annotations["count"]; got != "9" {
		t.Errorf("count %s, want 9", got)
	}
}

func TestKubernetesWebhookRefusesBadInput(t *testing.T) {
	good := event(t, "etcd-backoff.json")
	for _, tc := range []struct {
		name       string
		body       []byte
		auth       string
		wantStatus int
		wantError  string
	}{
		{"no token", good, "", 401, "missing bearer token"},
		{"wrong token", good, "Bearer nope", 401, "wrong bearer token"},
		{"oversized", event(t, "etcd-backoff.json", func(m map[string]any) { m["message"] = strings.Repeat("x", DefaultMaxBodyBytes) }), "Bearer " + token, 413, "over the 1048576 byte limit"},
		{"malformed JSON", good[:len(good)/2], "Bearer " + token, 400, "malformed JSON: the payload ends early, cut short"},
		{"not an event", []byte(`{"kind":"Pod","metadata":{"name":"etcd-cp1","namespace":"kube-system"}}`), "Bearer " + token, 400, `events[0] (kube-system/etcd-cp1): kind \"Pod\" is not Event`},
		{"no involved object", event(t, "etcd-backoff.json", func(m map[string]any) { delete(m, "involvedObject") }), "Bearer " + token, 400, "involvedObject must name the object's kind and name"},
		{"no reason", event(t, "etcd-backoff.json", func(m map[string]any) { m["reason"] = "" }), "Bearer " + token, 400, "reason must not be empty"},
		{"wrong field type", event(t, "etcd-backoff.json", func(m map[string]any) { m["count"] = "three" }), "Bearer " + token, 400, "field count must be a whole number, not a string"},
		{"empty array", []byte(`[]`), "Bearer " + token, 400, "holds no events"},
		{"unknown cluster", event(t, "etcd-backoff.json", func(m map[string]any) { m["clusterName"] = "moon" }), "Bearer " + token, 400, `unknown cluster \"moon\" (configured: prod, staging)`},
		{"no cluster name with two clusters", event(t, "etcd-backoff.json", func(m map[string]any) { delete(m, "clusterName") }), "Bearer " + token, 400, "no clusterName, and 2 clusters are configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, token)
			status, body := f.postTo(t, "/webhooks/kubernetes", tc.body, tc.auth)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantError) {
				t.Errorf("got %d %s, want %d with %q", status, body, tc.wantStatus, tc.wantError)
			}
			if n := f.pub.published.Load(); n != 0 {
				t.Errorf("%d messages published for a refused request", n)
			}
		})
	}
}

func TestKubernetesWebhookEnqueuesSignalsOnce(t *testing.T) {
	f := newFixture(t, token)
	auth := "Bearer " + token
	body := array(t, event(t, "etcd-liveness-unhealthy.json"), event(t, "etcd-backoff.json"), event(t, "pulled.json"))

	status, first := f.postTo(t, "/webhooks/kubernetes", body, auth)
	if status != http.StatusAccepted || !strings.Contains(first, `"alerts":2`) || !strings.Contains(first, `"ignored":1`) || !strings.Contains(first, `"duplicate":false`) {
		t.Fatalf("first POST: %d %s, want 202 with 2 signals and 1 ignored", status, first)
	}
	if status, again := f.postTo(t, "/webhooks/kubernetes", body, auth); status != http.StatusAccepted || !strings.Contains(again, `"duplicate":true`) {
		t.Fatalf("the same events again: %d %s, want 202 duplicate", status, again)
	}
	grown := event(t, "etcd-backoff.json", func(m map[string]any) { m["count"] = 4 })
	if status, body := f.postTo(t, "/webhooks/kubernetes", grown, auth); status != http.StatusAccepted || !strings.Contains(body, `"duplicate":false`) {
		t.Fatalf("a grown count: %d %s, want a new message", status, body)
	}
	// Not a signal: answered, and nothing is enqueued.
	status, ignored := f.postTo(t, "/webhooks/kubernetes", event(t, "pulled.json"), auth)
	if status != http.StatusOK || !strings.Contains(ignored, `"status":"ignored"`) {
		t.Fatalf("an event that is not a signal: %d %s, want 200 ignored", status, ignored)
	}
	if n := f.pub.published.Load(); n != 3 {
		t.Errorf("%d publishes, want 3 (two batches of signals and the duplicate, which the stream drops)", n)
	}
}

// Only the control plane's own pods and etcd's own words make a signal: a backup job named
// etcd-backup-… or another product's "unhealthy cluster" must not start an etcd remediation.
func TestLookalikeEventsAreNotSignals(t *testing.T) {
	backupJob := event(t, "etcd-backoff.json", func(m map[string]any) {
		o := m["involvedObject"].(map[string]any)
		o["name"], o["labels"], o["annotations"] = "etcd-backup-28374-abcde", map[string]any{"job-name": "etcd-backup-28374"}, map[string]any{}
		m["message"] = "Back-off restarting failed container upload in pod etcd-backup-28374-abcde"
	})
	search := event(t, "pulled.json", func(m map[string]any) {
		m["reason"], m["type"], m["message"] = "ClusterHealth", "Warning", "Elasticsearch reports unhealthy cluster health: red"
	})
	batch, ignored, _, err := DecodeKubernetes(array(t, backupJob, search), []string{"prod"}, time.Now())
	if err != nil || len(batch.Alerts) != 0 || ignored != 2 {
		t.Errorf("got %d signals (%v), %d ignored; want both ignored: %+v", len(batch.Alerts), err, ignored, batch.Alerts)
	}
}

// Only the control plane's own pods, and the objects the configuration trusts, may start
// work; the same words in a tenant's event are only context.
func TestTenantEventsAreOnlyContext(t *testing.T) {
	now := time.Now()
	batch, _, _, err := DecodeKubernetes(array(t, event(t, "etcd-backoff.json"), event(t, "replicaset-nospace.json"),
		event(t, "etcd-backoff.json", func(m map[string]any) {
			// A tenant's pod named like etcd's, in its own namespace, with etcd's words.
			m["metadata"].(map[string]any)["uid"] = "tenant-etcd"
			o := m["involvedObject"].(map[string]any)
			o["namespace"] = "shop"
			m["message"] = "etcdserver: mvcc: database space exceeded"
		})), []string{"prod"}, now)
	if err != nil || len(batch.Alerts) != 3 {
		t.Fatalf("DecodeKubernetes: %d signals, %v", len(batch.Alerts), err)
	}
	for _, tc := range []struct {
		name    string
		trusted []KubeObject
		want    []bool
	}{
		{"nothing trusted", nil, []bool{false, true, true}},
		{"the shop's ReplicaSets trusted", []KubeObject{{Namespace: "shop", Kind: "ReplicaSet", NamePrefix: "web-"}}, []bool{false, false, true}},
		{"another prefix", []KubeObject{{Namespace: "shop", Kind: "ReplicaSet", NamePrefix: "db-"}}, []bool{false, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := batch
			b.Alerts = slices.Clone(batch.Alerts)
			n := MarkUntrusted(&b, tc.trusted)
			var got []bool
			for _, a := range b.Alerts {
				got = append(got, a.Context)
			}
			if !slices.Equal(got, tc.want) || n != strings.Count(fmt.Sprint(tc.want), "true") {
				t.Errorf("context %v (%d), want %v; names %s, %s, %s", got, n, tc.want, b.Alerts[0].Labels["name"], b.Alerts[1].Labels["name"], b.Alerts[2].Labels["name"])
			}
		})
	}
}
