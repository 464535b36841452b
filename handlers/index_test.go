package handlers

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
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

// pausing is the worker fake of the handler tests keeping the pauses it is asked for, so that
// the page has some to show: recordingAnswerer's Paused has none. A browser's requests are
// served on the server's goroutines while the test reads what was asked: mu guards both.
type pausing struct {
	*recordingAnswerer
	now    time.Time
	mu     sync.Mutex
	pauses []remediator.Pause
}

func (p *pausing) Close(ctx context.Context, id, by, reason string) (*remediator.Incident, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recordingAnswerer.Close(ctx, id, by, reason)
}

func (p *pausing) Cancel(ctx context.Context, id, by, reason string) (*remediator.Incident, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recordingAnswerer.Cancel(ctx, id, by, reason)
}

func (p *pausing) Retry(ctx context.Context, id, by string) (*remediator.Incident, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recordingAnswerer.Retry(ctx, id, by)
}

func (p *pausing) Pause(ctx context.Context, cluster, by, reason string) (remediator.Pause, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	got, err := p.recordingAnswerer.Pause(ctx, cluster, by, reason)
	if err != nil {
		return got, err
	}
	got.At = p.now
	p.pauses = append(slices.DeleteFunc(p.pauses, func(q remediator.Pause) bool { return q.Cluster == cluster }), got)
	return got, nil
}

func (p *pausing) Resume(ctx context.Context, cluster, by string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.recordingAnswerer.Resume(ctx, cluster, by); err != nil {
		return err
	}
	p.pauses = slices.DeleteFunc(p.pauses, func(q remediator.Pause) bool { return q.Cluster == cluster })
	return nil
}

func (p *pausing) Paused(context.Context) ([]remediator.Pause, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pauses), nil
}

// asked is what the operators asked the worker for, in order.
func (p *pausing) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.controls)
}

// refuse has the worker refuse every control with err from now on; nil takes them again.
func (p *pausing) refuse(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// The incidents of the page's tests: one failed whose alert still fires (open, retriable),
// one running (cancellable), and one closed (no control).
const (
	failedID  = "20261121-090000-aaaaaa"
	runningID = "20261121-093000-cccccc"
	closedID  = "20261121-100000-bbbbbb"
)

// pageNow is the clock of the page's tests.
var pageNow = time.Date(2026, 11, 21, 10, 5, 0, 0, time.UTC)

// newPageFixture is the handlers' fixture with the page's incidents in its store, a worker
// fake that keeps pauses, the clusters' etcd reachability known and the clock at pageNow;
// configure changes the configuration further.
func newPageFixture(t testing.TB, configure func(*Config)) (*fixture, *pausing) {
	t.Helper()
	var w *pausing
	f := newFixtureWith(t, "", func(c *Config) {
		w = &pausing{recordingAnswerer: c.Controls.(*recordingAnswerer), now: pageNow}
		c.Controls = w
		c.Now = func() time.Time { return pageNow }
		c.Reachability = func(context.Context) []Reachability {
			return []Reachability{
				{Cluster: "prod", Reachable: true, Endpoint: "https://10.0.1.4:2379", CheckedAt: pageNow.Add(-12 * time.Second)},
				{Cluster: "staging", Error: "dial tcp 10.0.1.5:2379: connect: connection refused", CheckedAt: pageNow.Add(-90 * time.Second)},
			}
		}
		if configure != nil {
			configure(c)
		}
	})
	d := remediator.Decision{Policy: "etcd-nospace", Remediation: "etcd-nospace-recovery", Mode: remediator.ModeAuto}
	failed := remediator.NewIncident(failedID, "prod", d, pageNow.Add(-65*time.Minute))
	failed.AddEvidence([]remediator.Alert{{Source: remediator.SourceAlertmanager, Fingerprint: "f1", Status: remediator.AlertFiring, Labels: map[string]string{"alertname": "etcdDatabaseQuotaLowSpace"}}})
	failed.SetState(remediator.StateFailed, "step defragment failed: member 8e9e05c52164694d: context deadline exceeded after 3 attempts; see the report for the member's log", pageNow.Add(-55*time.Minute))
	running := remediator.NewIncident(runningID, "staging", d, pageNow.Add(-35*time.Minute))
	running.SetState(remediator.StateRunning, "step snapshot", pageNow.Add(-34*time.Minute))
	closed := remediator.NewIncident(closedID, "prod", d, pageNow.Add(-5*time.Minute))
	closed.SetState(remediator.StateSucceeded, "", pageNow.Add(-4*time.Minute)) // no alert to wait for: closed
	for _, inc := range []*remediator.Incident{failed, running, closed} {
		if err := f.q.Incidents.Create(context.Background(), inc); err != nil {
			t.Fatal(err)
		}
	}
	return f, w
}

// inlineHandler is an event handler attribute, which the page never has: its script finds
// its forms by their data attributes.
var inlineHandler = regexp.MustCompile(`<[^>]*\son[a-z]+\s*=`)

// TestTheIncidentsPageOffersControlsOnlyWithTheOperatorAPI checks what the page offers: the
// pauses in force and each cluster's etcd for everyone who may read it; Cancel, Retry, Pause
// and Resume only to operators, each only where the worker would take it.
func TestTheIncidentsPageOffersControlsOnlyWithTheOperatorAPI(t *testing.T) {
	everyone := []string{
		`<strong>Every cluster paused</strong> by dave at 2026-11-21 10:05:00Z: freeze for the etcd 3.6 upgrade`,
		`<strong>Cluster prod paused</strong> by carol at 2026-11-21 10:05:00Z: disk swap &lt;b&gt;now&lt;/b&gt;`,
		`<li data-cluster="prod"><strong>prod</strong> <span class="up" title="https://10.0.1.4:2379, checked at 2026-11-21 10:04:48Z">etcd reachable (checked 12s ago)</span> · paused</li>`,
		`<li data-cluster="staging"><strong>staging</strong> <span class="down" title="checked at 2026-11-21 10:03:30Z"><b>etcd unreachable</b> (checked 1m30s ago): dial tcp 10.0.1.5:2379: connect: connection refused</span></li>`,
		`<tr class="open" data-incident="` + failedID + `">`,
		`<tr class="closed" data-incident="` + closedID + `">`,
	}
	for _, tc := range []struct {
		name      string
		configure func(*Config)
		auth      string
		want      []string
		dontWant  []string
	}{
		{
			name: "operator API on",
			auth: "Bearer carols-own-token",
			want: append([]string{
				`<input id="approver" autocomplete="username">`,
				`<form data-action="resume" data-cluster="*"><button>Resume</button></form>`,
				`<form data-action="resume" data-cluster="prod"><button>Resume</button></form>`,
				`<form id="pause-form" data-action="pause">`,
				`<option value="prod">prod</option><option value="staging">staging</option><option value="*">every cluster</option></select>`,
				`<form data-action="cancel" data-incident="` + runningID + `"><input name="reason" placeholder="why cancel" aria-label="reason to cancel ` + runningID + `"><button>Cancel</button></form>`,
				`<form data-action="retry" data-incident="` + failedID + `"><button>Retry</button></form>`,
				`<p id="status" role="status" hidden></p>`,
			}, everyone...),
			dontWant: []string{
				`data-action="cancel" data-incident="` + failedID + `"`,
				`data-action="retry" data-incident="` + runningID + `"`,
				`data-action="cancel" data-incident="` + closedID + `"`,
				`data-action="retry" data-incident="` + closedID + `"`,
				`http-equiv="refresh"`, // the script reloads, not while an operator types
				`api.operators_file`,
			},
		},
		{
			name:      "operator API off",
			configure: func(c *Config) { c.OperatorToken, c.Operators = "", nil },
			want: append([]string{
				`Cancel, retry, pause and resume need the operator API: set api.operators_file or api.bearer_token_file.`,
				`<meta http-equiv="refresh" content="30">`,
			}, everyone...),
			dontWant: []string{"<form", "<button", "<input", "<select", "<script", "Resume", "<th>Actions</th>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, w := newPageFixture(t, tc.configure)
			ctx := context.Background()
			if _, err := w.Pause(ctx, remediator.AllClusters, "dave", "freeze for the etcd 3.6 upgrade"); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Pause(ctx, "prod", "carol", "disk swap <b>now</b>"); err != nil {
				t.Fatal(err)
			}
			status, page := f.get(t, "/", tc.auth)
			if status != http.StatusOK {
				t.Fatalf("GET /: %d %s", status, page)
			}
			for _, want := range tc.want {
				if !strings.Contains(page, want) {
					t.Errorf("the page lacks %s", want)
				}
			}
			for _, dont := range tc.dontWant {
				if strings.Contains(page, dont) {
					t.Errorf("the page has %s", dont)
				}
			}
			if n := strings.Count(page, "<script"); n > 1 {
				t.Errorf("%d scripts, want at most one", n)
			}
			if m := inlineHandler.FindString(page); m != "" {
				t.Errorf("an inline event handler: %s", m)
			}
			if t.Failed() {
				t.Logf("the page:\n%s", page)
			}
		})
	}
}
