package handlers

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
)

func TestTheIncidentsPageShowsOpenIncidentsFirst(t *testing.T) {
	f := newFixture(t, "")
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	d := remediator.Decision{Policy: "etcd-nospace", Remediation: "etcd-liveness-probe-guard", Mode: remediator.ModeAuto}
	older := remediator.NewIncident("20261121-090000-aaaaaa", "prod", d, t0.Add(-time.Hour))
	older.AddEvidence([]remediator.Alert{{Source: remediator.SourceAlertmanager, Fingerprint: "f1", Status: remediator.AlertFiring, Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace"}}})
	older.SetState(remediator.StateFailed, `step defragment failed: <script>alert("x")</script>`, t0.Add(-50*time.Minute))
	newer := remediator.NewIncident("20261121-100000-bbbbbb", "prod", d, t0)
	newer.SetState(remediator.StateSucceeded, "", t0.Add(time.Minute)) // no alert to wait for: closed
	for _, inc := range []*remediator.Incident{older, newer} {
		if err := f.q.Incidents.Create(context.Background(), inc); err != nil {
			t.Fatal(err)
		}
	}

	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	open, closed := strings.Index(page, `data-incident="20261121-090000-aaaaaa"`), strings.Index(page, `data-incident="20261121-100000-bbbbbb"`)
	if open < 0 || closed < 0 || open > closed {
		t.Errorf("the failed incident whose alert still fires (at %d) must come before the newer closed one (at %d):\n%s", open, closed, page)
	}
	for _, want := range []string{
		"<title>remediator: 1 open incident</title>",
		`<tr class="open" data-incident="20261121-090000-aaaaaa">`,
		`<span class="state s-failed">failed</span>`,
		`href="/api/v1/incidents/20261121-090000-aaaaaa/report?format=html"`,
		`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, `<script>alert`) {
		t.Error("the incident's reason reached the page unescaped")
	}
}
