package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/report"
	"github.com/remediator/remediator/queue"
)

const token = "s3cret-token"

// countingPublisher is the real queue, counting what reaches it.
type countingPublisher struct {
	*queue.Queue
	published atomic.Int32
}

func (c *countingPublisher) Publish(ctx context.Context, subject string, data []byte, msgID string) (bool, error) {
	c.published.Add(1)
	return c.Queue.Publish(ctx, subject, data, msgID)
}

type fixture struct {
	q       *queue.Queue
	pub     *countingPublisher
	srv     *httptest.Server
	answers *recordingAnswerer
}

// recordingAnswerer stands in for the worker behind the approval API: the handler's part is
// authentication and mapping the worker's verdict to HTTP; the rules are the worker's, tested
// there and end to end.
type recordingAnswerer struct {
	got      []remediator.Answer
	closed   []string
	controls []string
	err      error
}

func (r *recordingAnswerer) Answer(_ context.Context, a remediator.Answer) (*remediator.Incident, error) {
	r.got = append(r.got, a)
	if r.err != nil {
		return nil, r.err
	}
	return &remediator.Incident{ID: a.Incident, State: remediator.StateRunning}, nil
}

const (
	signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	operatorToken = "operator-token"
)

func newFixture(t testing.TB, bearer string) *fixture {
	t.Helper()
	return newFixtureWith(t, bearer, nil)
}

// newFixtureWith is newFixture, with the handlers' configuration changed by configure.
func newFixtureWith(t testing.TB, bearer string, configure func(*Config)) *fixture {
	t.Helper()
	q, err := queue.Open(context.Background(), queue.Options{StoreDir: t.TempDir(), AckWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	f := &fixture{q: q, pub: &countingPublisher{Queue: q}, answers: &recordingAnswerer{}}
	cfg := Config{
		Publisher:          f.pub,
		AlertsSubject:      queue.SubjectAlerts,
		Incidents:          q.Incidents,
		Reports:            report.Renderer{},
		Ready:              q.Ready,
		Clusters:           []string{"prod", "staging"},
		BearerToken:        bearer,
		OperatorToken:      operatorToken,
		Operators:          map[string]string{"carol": "carols-own-token"},
		Answers:            f.answers,
		Controls:           f.answers,
		SlackSigningSecret: signingSecret,
		AnswersSubject:     queue.SubjectAnswer,
		Replays:            q,
		Registry:           prometheus.NewRegistry(),
	}
	if configure != nil {
		configure(&cfg)
	}
	f.srv = httptest.NewServer(New(cfg))
	t.Cleanup(f.srv.Close)
	return f
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "alertmanager", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withCluster returns the payload with every alert labelled for the cluster.
func withCluster(t testing.TB, payload []byte, cluster string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	for _, a := range m["alerts"].([]any) {
		a.(map[string]any)["labels"].(map[string]any)["cluster"] = cluster
	}
	b, _ := json.Marshal(m)
	return b
}

func (f *fixture) post(t *testing.T, body []byte, auth string) (int, string) {
	t.Helper()
	return f.postTo(t, "/webhooks/alertmanager", body, auth)
}

func (f *fixture) postTo(t *testing.T, path string, body []byte, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAlertmanagerWebhookRefusesBadInput(t *testing.T) {
	good := withCluster(t, testdata(t, "nospace-firing.json"), "prod")
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	firstAlert := func(m map[string]any) map[string]any { return m["alerts"].([]any)[0].(map[string]any) }
	oversized := edit(func(m map[string]any) {
		firstAlert(m)["annotations"].(map[string]any)["description"] = strings.Repeat("x", DefaultMaxBodyBytes)
	})

	for _, tc := range []struct {
		name       string
		body       []byte
		auth       string
		wantStatus int
		wantError  string
	}{
		{"no token", good, "", 401, "missing bearer token"},
		{"wrong token", good, "Bearer nope", 401, "wrong bearer token"},
		{"oversized", oversized, "Bearer " + token, 413, "over the 1048576 byte limit"},
		{"malformed JSON", good[:len(good)/2], "Bearer " + token, 400, "malformed JSON: the payload ends early, cut short"},
		{"not JSON", []byte("alertname=etcdDatabaseQuotaLowSpace"), "Bearer " + token, 400, "line 1, column 1: malformed JSON: invalid character 'a' at start of value"},
		{"duplicate key", []byte(`{"version":"4","version":"3","alerts":[]}`), "Bearer " + token, 400, "line 1, column 16: malformed JSON: field version appears twice"},
		{"wrong field type", []byte(`{"version":"4","alerts":"many"}`), "Bearer " + token, 400, "line 1, column 25: field alerts must be an array, not a string"},
		{"data after the object", append(append([]byte{}, good...), []byte(`{"again":1}`)...), "Bearer " + token, 400, "malformed JSON: invalid character '{' after top-level value"},
		{"wrong version", edit(func(m map[string]any) { m["version"] = "3" }), "Bearer " + token, 400, `version \"3\" is not supported`},
		{"no version", edit(func(m map[string]any) { delete(m, "version") }), "Bearer " + token, 400, `version \"\" is not supported`},
		{"no alerts", edit(func(m map[string]any) { m["alerts"] = []any{} }), "Bearer " + token, 400, "holds no alerts"},
		{"bad status", edit(func(m map[string]any) { firstAlert(m)["status"] = "pending" }), "Bearer " + token, 400, `alerts[0] (etcdDatabaseQuotaLowSpace): status \"pending\" must be firing or resolved`},
		{"no labels", edit(func(m map[string]any) { firstAlert(m)["labels"] = map[string]any{} }), "Bearer " + token, 400, "alerts[0]: has no labels"},
		{"bad fingerprint", edit(func(m map[string]any) { firstAlert(m)["fingerprint"] = "../../etc" }), "Bearer " + token, 400, `fingerprint \"../../etc\" must be`},
		{"unknown cluster", withCluster(t, good, "moon"), "Bearer " + token, 400, `unknown cluster \"moon\" (configured: prod, staging)`},
		{"no cluster label with two clusters", testdata(t, "nospace-firing.json"), "Bearer " + token, 400, "no cluster label, and 2 clusters are configured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, token)
			status, body := f.post(t, tc.body, tc.auth)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantError) {
				t.Errorf("got %d %s, want %d with %q", status, body, tc.wantStatus, tc.wantError)
			}
			if n := f.pub.published.Load(); n != 0 {
				t.Errorf("%d messages published for a refused request", n)
			}
		})
	}
}

func TestAlertmanagerWebhookEnqueuesOnceAndCounts(t *testing.T) {
	f := newFixture(t, token)
	body := withCluster(t, testdata(t, "nospace-firing.json"), "prod")

	status, first := f.post(t, body, "Bearer "+token)
	if status != http.StatusAccepted || !strings.Contains(first, `"duplicate":false`) || !strings.Contains(first, `"alerts":3`) {
		t.Fatalf("first POST: %d %s", status, first)
	}
	status, second := f.post(t, body, "Bearer "+token)
	if status != http.StatusAccepted || !strings.Contains(second, `"duplicate":true`) {
		t.Fatalf("second POST: %d %s, want 202 duplicate", status, second)
	}
	resolved := withCluster(t, testdata(t, "nospace-resolved.json"), "prod")
	if status, body := f.post(t, resolved, "Bearer "+token); status != http.StatusAccepted || !strings.Contains(body, `"duplicate":false`) {
		t.Fatalf("resolved POST: %d %s, want a new message", status, body)
	}
	f.post(t, []byte("{"), "Bearer "+token)

	resp, err := http.Get(f.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`remediator_webhooks_received_total{outcome="accepted",source="alertmanager"} 2`,
		`remediator_webhooks_received_total{outcome="duplicate",source="alertmanager"} 1`,
		`remediator_webhooks_received_total{outcome="invalid",source="alertmanager"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestAlertmanagerWebhookTakesTheKnownClustersOfAMixedBatch(t *testing.T) {
	f := newFixture(t, "")
	var m map[string]any
	_ = json.Unmarshal(withCluster(t, testdata(t, "nospace-firing.json"), "prod"), &m)
	m["alerts"].([]any)[2].(map[string]any)["labels"].(map[string]any)["cluster"] = "moon"
	body, _ := json.Marshal(m)

	status, resp := f.post(t, body, "")
	if status != http.StatusAccepted || !strings.Contains(resp, `"alerts":2`) || !strings.Contains(resp, `alerts[2] (etcdDatabaseQuotaLowSpace): unknown cluster \"moon\"`) {
		t.Fatalf("got %d %s, want 202 with 2 alerts and alerts[2] refused", status, resp)
	}
}

func TestQueueDownIs503SoAlertmanagerRetries(t *testing.T) {
	f := newFixture(t, "")
	f.q.Close()
	status, body := f.post(t, withCluster(t, testdata(t, "nospace-firing.json"), "prod"), "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "send it again") {
		t.Errorf("webhook with the queue down: %d %s, want 503", status, body)
	}
	resp, err := http.Get(f.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with the queue down: %d, want 503", resp.StatusCode)
	}
}

func TestIncidentsAPI(t *testing.T) {
	f := newFixture(t, "")
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	inc := remediator.NewIncident("20261121-100000-abcdef", "prod",
		remediator.Decision{Policy: "p", Remediation: "etcd-nospace-recovery", Mode: remediator.ModeAuto}, now)
	if err := f.q.Incidents.Create(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path       string
		wantStatus int
		want       string
	}{
		{"/api/v1/incidents", 200, `"id":"20261121-100000-abcdef"`},
		{"/", 200, "20261121-100000-abcdef"},
		{"/api/v1/incidents?state=running", 200, `{"incidents":[]}`},
		{"/api/v1/incidents/20261121-100000-abcdef", 200, `"state":"pending"`},
		{"/api/v1/incidents/nope", 404, `incident \"nope\" not found`},
		{"/api/v1/incidents/20261121-100000-abcdef/report", 200, "# Incident 20261121-100000-abcdef"},
		{"/api/v1/incidents/20261121-100000-abcdef/report?format=json", 200, `"incident": "20261121-100000-abcdef"`},
		{"/api/v1/incidents/20261121-100000-abcdef/report?format=pdf", 400, `report format \"pdf\": use md, html or json`},
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/nowhere", 404, `"code":"not_found"`},
	} {
		status, body := f.get(t, tc.path, "Bearer carols-own-token")
		if status != tc.wantStatus || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s, want %d with %q", tc.path, status, body, tc.wantStatus, tc.want)
		}
	}
}

func (f *fixture) get(t *testing.T, path, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// With operator tokens configured, every read of incidents needs one: the shared token, an
// operator's own, or either as the password a browser sends. Health stays open.
func TestReadingIncidentsNeedsAnOperatorToken(t *testing.T) {
	f := newFixture(t, "")
	inc := remediator.NewIncident("20261121-100000-abcdef", "prod",
		remediator.Decision{Policy: "p", Remediation: "etcd-nospace-recovery", Mode: remediator.ModeAuto}, time.Now())
	if err := f.q.Incidents.Create(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	basic := func(user, password string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	}
	for _, path := range []string{"/", "/api/v1/incidents", "/api/v1/incidents/20261121-100000-abcdef", "/api/v1/incidents/20261121-100000-abcdef/report?format=html"} {
		for _, tc := range []struct {
			auth string
			want int
		}{
			{"", http.StatusUnauthorized},
			{"Bearer wrong", http.StatusUnauthorized},
			{"Bearer " + signingSecret, http.StatusUnauthorized},
			{basic("carol", "wrong"), http.StatusUnauthorized},
			{"Bearer " + operatorToken, http.StatusOK},
			{"Bearer carols-own-token", http.StatusOK},
			{basic("carol", "carols-own-token"), http.StatusOK},
		} {
			status, body := f.get(t, path, tc.auth)
			if status != tc.want {
				t.Errorf("GET %s with %q: %d, want %d", path, tc.auth, status, tc.want)
			}
			if status == http.StatusUnauthorized && strings.Contains(body, "20261121-100000-abcdef") && path != "/api/v1/incidents/20261121-100000-abcdef" {
				t.Errorf("GET %s with %q answered 401 with the incident in it: %s", path, tc.auth, body)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("WWW-Authenticate"); !slices.Contains(got, `Basic realm="remediator", charset="UTF-8"`) {
		t.Errorf("WWW-Authenticate %q: a browser would not ask for the token", got)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if status, _ := f.get(t, path, ""); status != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, status)
		}
	}
}

func TestMetricsTakeTheirOwnToken(t *testing.T) {
	f := newFixtureWith(t, "", func(c *Config) { c.MetricsToken = "scraper-token" })
	for auth, want := range map[string]int{"": 401, "Bearer " + operatorToken: 401, "Bearer scraper-token": 200} {
		status, body := f.get(t, "/metrics", auth)
		if status != want || (want != 200 && strings.Contains(body, "# TYPE")) {
			t.Errorf("GET /metrics with %q: %d, want %d", auth, status, want)
		}
	}
}

func FuzzDecodeAlertmanager(f *testing.F) {
	for _, name := range []string{"nospace-firing.json", "nospace-resolved.json", "log-space-exceeded.json"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "alertmanager", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"x"}}]}`))
	f.Add([]byte(`{"version":"4","alerts":null}`))
	clusters := []string{"prod"}
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		batch, _, err := DecodeAlertmanager(body, clusters, now)
		if err != nil {
			if remediator.ErrorCode(err) != remediator.EINVALID {
				t.Fatalf("error %v has code %q, want invalid", err, remediator.ErrorCode(err))
			}
			return
		}
		if len(batch.Alerts) == 0 || !strings.HasPrefix(batch.ID, "am-") {
			t.Fatalf("accepted a batch with %d alerts and ID %q", len(batch.Alerts), batch.ID)
		}
		for _, a := range batch.Alerts {
			if a.Status != remediator.AlertFiring && a.Status != remediator.AlertResolved {
				t.Fatalf("accepted status %q", a.Status)
			}
			if !fingerprintRE.MatchString(a.Fingerprint) || a.Cluster != "prod" || len(a.Labels) == 0 {
				t.Fatalf("accepted alert %+v", a)
			}
		}
		again, _, _ := DecodeAlertmanager(body, clusters, now)
		if again.ID != batch.ID {
			t.Fatalf("the same body gave IDs %s and %s", batch.ID, again.ID)
		}
	})
}

// A filter the API cannot mean is refused, not answered with an empty list that reads as "no
// incidents".
func TestAnUnknownStateIsRefusedNotAnEmptyList(t *testing.T) {
	f := newFixture(t, "")
	status, body := f.get(t, "/api/v1/incidents?state=bogus", "Bearer "+operatorToken)
	var e errorBody
	_ = json.Unmarshal([]byte(body), &e)
	want := `state "bogus": not a state (states: pending, awaiting_approval, running, succeeded, failed, rejected, skipped, cancelled)`
	if status != http.StatusBadRequest || e.Error != want {
		t.Errorf("GET ?state=bogus: %d %q, want 400 %q", status, e.Error, want)
	}
}

// A client that got a status without remediator's error body reads it back as the code the
// service would have sent.
func TestCodeOfStatusReadsStatusOfBackwards(t *testing.T) {
	for _, code := range []string{remediator.EINVALID, remediator.EUNAUTHORIZED, remediator.EFORBIDDEN, remediator.ENOTFOUND,
		remediator.EREFUSED, remediator.ETOOLARGE, remediator.EPRECONDITION, remediator.EUNAVAILABLE, remediator.EINTERNAL} {
		if got := CodeOfStatus(statusOf(remediator.Errorf(code, "x"))); got != code {
			t.Errorf("code %s: status %d reads back as %s", code, statusOf(remediator.Errorf(code, "x")), got)
		}
	}
	if got := CodeOfStatus(http.StatusBadGateway); got != remediator.EUNAVAILABLE {
		t.Errorf("502 reads as %s, want unavailable", got)
	}
}
