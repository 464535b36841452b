package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/config"
)

// Ten thousand incidents waiting for approval, on as many clusters: every one reaches
// awaiting_approval (their deadlines wait apart, not in the consumer that carries answers and
// runs), and an approval given then is acted on within two seconds.
func TestTenThousandWaitingIncidentsDoNotDelayAnApproval(t *testing.T) {
	if testing.Short() {
		t.Skip("ten thousand incidents take a minute")
	}
	const clusters = 10_000
	cfg := config.Defaults(func(string) string { return "" })
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Clusters = make([]config.Cluster, clusters)
	for i := range cfg.Clusters {
		cfg.Clusters[i] = config.Cluster{Name: fmt.Sprintf("c%05d", i), Etcd: config.Etcd{Endpoints: []string{"127.0.0.1:1"}}}
	}
	cfg.API.Operators = map[string]config.Operator{"alice": {Token: "alice-token-0123456789abcdef"}}
	cfg.PoliciesDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.PoliciesDir, "storm.yaml"), []byte(stormPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startService(t, cfg)
	base := "http://" + m.Addr

	type alert struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		StartsAt    string            `json:"startsAt"`
		Fingerprint string            `json:"fingerprint"`
	}
	const perPost = 500
	for first := 0; first < clusters; first += perPost {
		alerts := make([]alert, perPost)
		for i := range alerts {
			alerts[i] = alert{Status: "firing", StartsAt: "2026-12-01T10:00:00Z", Fingerprint: fmt.Sprintf("wait%05d", first+i),
				Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace", "cluster": fmt.Sprintf("c%05d", first+i)}}
		}
		body, _ := json.Marshal(map[string]any{"receiver": "remediator", "status": "firing", "version": "4", "alerts": alerts})
		if code, out := postBody(t, base+"/webhooks/alertmanager", body); code != http.StatusAccepted {
			t.Fatalf("POST: %d %v", code, out)
		}
	}

	// Every incident reaches awaiting_approval.
	waiting := func() int {
		n, cursor := 0, ""
		for {
			var page remediator.Page
			getJSON(t, base+"/api/v1/incidents?state=awaiting_approval&limit=500&cursor="+cursor, &page)
			n += len(page.Incidents)
			if cursor = page.Next; cursor == "" {
				return n
			}
		}
	}
	// A bound on waiting, not a speed figure (make bench measures speed): under -race, beside
	// the packages go test runs at the same time (a real kube-apiserver among them), this has
	// taken over five minutes on 2 cores.
	started := time.Now()
	for n := 0; n < clusters; n = waiting() {
		if time.Since(started) > 10*time.Minute {
			t.Fatalf("%d of %d incidents await approval after %s", n, clusters, time.Since(started))
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("%d incidents awaiting approval after %s", clusters, time.Since(started).Round(time.Second))

	// An approval now is acted on at once: the run starts its first step.
	var page remediator.Page
	getJSON(t, base+"/api/v1/incidents?limit=1", &page)
	id := page.Incidents[0].ID
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/incidents/"+id+"/approve", bytes.NewReader([]byte(`{"comment": "go"}`)))
	req.Header.Set("Authorization", "Bearer alice-token-0123456789abcdef")
	req.Header.Set("Content-Type", "application/json")
	approved := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %s", resp.Status)
	}
	for {
		var inc remediator.Incident
		getJSON(t, base+"/api/v1/incidents/"+id, &inc)
		if len(inc.Steps) > 0 && inc.Steps[0].Attempts > 0 {
			t.Logf("approval acted on (first step started) %s after it was given", time.Since(approved).Round(time.Millisecond))
			break
		}
		if time.Since(approved) > 2*time.Second {
			t.Fatalf("incident %s %s, first step not started 2s after the approval", id, inc.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
