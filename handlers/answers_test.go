package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
	"github.com/remediator/remediator/queue"
)

func (f *fixture) do(t *testing.T, r *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// answerQueued reads the answer enqueued for the worker, waiting up to ten seconds for it.
func (f *fixture) answerQueued(t *testing.T) remediator.Answer {
	t.Helper()
	got := make(chan remediator.Answer, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		_ = f.q.Consume(ctx, queue.Executor, 1, time.Second, func(_ context.Context, d queue.Delivery) error {
			var a remediator.Answer
			if d.Subject == queue.SubjectAnswer && json.Unmarshal(d.Data, &a) == nil {
				select {
				case got <- a:
				default:
				}
			}
			return nil
		}, nil)
	}()
	select {
	case a := <-got:
		return a
	case <-ctx.Done():
		t.Fatal("no answer was enqueued")
		return remediator.Answer{}
	}
}

func TestSlackInteractionsAreVerifiedBeforeAnythingElse(t *testing.T) {
	click := slacktest.ButtonClick("U01ALICE", "alice", "approve", "20261121-100000-abcdef")
	now := time.Now()
	forged := slacktest.Request("", "not-the-secret", now, click)
	tampered := slacktest.Request("", signingSecret, now, click)
	for _, tc := range []struct {
		name       string
		req        func(url string) *http.Request
		wantStatus int
		wantError  string
	}{
		{"forged signature", func(u string) *http.Request {
			r := slacktest.Request(u, signingSecret, now, click)
			r.Header.Set("X-Slack-Signature", forged.Header.Get("X-Slack-Signature"))
			return r
		}, 401, "signature does not match the body"},
		{"body changed after signing", func(u string) *http.Request {
			r := slacktest.Request(u, signingSecret, now, bytes.Replace(click, []byte("approve"), []byte("reject"), 1))
			r.Header.Set("X-Slack-Signature", tampered.Header.Get("X-Slack-Signature"))
			return r
		}, 401, "signature does not match the body"},
		{"stale timestamp", func(u string) *http.Request {
			return slacktest.Request(u, signingSecret, now.Add(-6*time.Minute), click)
		}, 401, "more than five minutes off"},
		{"no signature", func(u string) *http.Request {
			r := slacktest.Request(u, signingSecret, now, click)
			r.Header.Del("X-Slack-Signature")
			return r
		}, 401, "missing X-Slack-Signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			status, body := f.do(t, tc.req(f.srv.URL+"/slack/interactions"))
			if status != tc.wantStatus || !strings.Contains(body, tc.wantError) {
				t.Errorf("got %d %s, want %d with %q", status, body, tc.wantStatus, tc.wantError)
			}
			if n := f.pub.published.Load(); n != 0 {
				t.Errorf("%d answers enqueued from a refused request", n)
			}
		})
	}
}

func TestASignedClickIsEnqueuedOnceAndAReplayRefused(t *testing.T) {
	f := newFixture(t, "")
	click := slacktest.ButtonClick("U01ALICE", "alice", "approve", "20261121-100000-abcdef")
	now := time.Now()
	status, body := f.do(t, slacktest.Request(f.srv.URL+"/slack/interactions", signingSecret, now, click))
	if status != http.StatusOK {
		t.Fatalf("signed click: %d %s", status, body)
	}
	status, body = f.do(t, slacktest.Request(f.srv.URL+"/slack/interactions", signingSecret, now, click))
	if status != http.StatusConflict || !strings.Contains(body, "replay") {
		t.Errorf("the same request again: %d %s, want 409 replay", status, body)
	}
	want := remediator.Answer{Incident: "20261121-100000-abcdef", By: "U01ALICE", Name: "alice", Via: "slack", Approve: true, Channel: slacktest.Channel}
	if got := f.answerQueued(t); got != want {
		t.Errorf("answer enqueued %+v, want %+v", got, want)
	}
	if n := f.pub.published.Load(); n != 1 {
		t.Errorf("%d answers published, want the replay refused before it reached the queue", n)
	}
}

func (r *recordingAnswerer) Close(_ context.Context, id, by, reason string) (*remediator.Incident, error) {
	r.closed = append(r.closed, id+" by "+by+": "+reason)
	return &remediator.Incident{ID: id, State: remediator.StateSucceeded}, r.err
}

func (r *recordingAnswerer) Cancel(_ context.Context, id, by, reason string) (*remediator.Incident, error) {
	r.controls = append(r.controls, "cancel "+id+" by "+by+": "+reason)
	return &remediator.Incident{ID: id, State: remediator.StateRunning}, r.err
}

func (r *recordingAnswerer) Retry(_ context.Context, id, by string) (*remediator.Incident, error) {
	r.controls = append(r.controls, "retry "+id+" by "+by)
	return &remediator.Incident{ID: id, State: remediator.StatePending, Attempt: 2}, r.err
}

func (r *recordingAnswerer) Pause(_ context.Context, cluster, by, reason string) (remediator.Pause, error) {
	r.controls = append(r.controls, "pause "+cluster+" by "+by+": "+reason)
	return remediator.Pause{Cluster: cluster, By: by, Reason: reason}, r.err
}

func (r *recordingAnswerer) Resume(_ context.Context, cluster, by string) error {
	r.controls = append(r.controls, "resume "+cluster+" by "+by)
	return r.err
}

func (r *recordingAnswerer) Paused(context.Context) ([]remediator.Pause, error) { return nil, r.err }

// TestOperatorControlsOverTheAPI checks the doors of cancel, retry, pause and resume: only an
// operator token opens them, the shared one only with a name, and a cluster must be one
// configured. What each does is the worker's, tested there and end to end.
func TestOperatorControlsOverTheAPI(t *testing.T) {
	f := newFixture(t, "")
	post := func(path, token, body string) (int, string) {
		r, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return f.do(t, r)
	}
	for _, tc := range []struct {
		name, path, token, body string
		wantStatus              int
		wantControl, wantError  string
	}{
		{"cancel with an own token", "/api/v1/incidents/i1/cancel", "carols-own-token", `{"reason":"wrong cluster"}`, 200, "cancel i1 by carol: wrong cluster", ""},
		{"cancel with the shared token and a name", "/api/v1/incidents/i1/cancel", operatorToken, `{"approver":"dave","reason":"x"}`, 200, "cancel i1 by dave: x", ""},
		{"cancel with the shared token and no name", "/api/v1/incidents/i1/cancel", operatorToken, `{"reason":"x"}`, 400, "",
			`the shared operator token does not say who you are: name yourself: --as NAME on the command line, Your name on the incidents page, approver in the API body`},
		{"cancel without a token", "/api/v1/incidents/i1/cancel", "", `{"reason":"x"}`, 401, "", "missing or wrong operator token"},
		{"cancel with the webhook token", "/api/v1/incidents/i1/cancel", "webhook-token", `{"reason":"x"}`, 401, "", "missing or wrong operator token"},
		{"retry", "/api/v1/incidents/i1/retry", "carols-own-token", `{}`, 200, "retry i1 by carol", ""},
		{"retry without a body", "/api/v1/incidents/i1/retry", "carols-own-token", ``, 400, "", `body must be JSON like {"approver": "name", "reason": "..."}`},
		{"pause", "/api/v1/clusters/prod/pause", "carols-own-token", `{"reason":"etcd upgrade"}`, 200, "pause prod by carol: etcd upgrade", ""},
		{"pause every cluster", "/api/v1/clusters/*/pause", "carols-own-token", `{"reason":"freeze"}`, 200, "pause * by carol: freeze", ""},
		{"pause an unknown cluster", "/api/v1/clusters/qa/pause", "carols-own-token", `{"reason":"x"}`, 404, "", `cluster "qa" is not configured (clusters: prod, staging; * for all)`},
		{"pause without a token", "/api/v1/clusters/prod/pause", "", `{"reason":"x"}`, 401, "", "missing or wrong operator token"},
		{"pause of an unknown cluster without a token names no cluster", "/api/v1/clusters/qa/pause", "", `{"reason":"x"}`, 401, "", "missing or wrong operator token"},
		{"resume", "/api/v1/clusters/prod/resume", "carols-own-token", `{}`, 200, "resume prod by carol", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.answers.controls = nil
			status, body := post(tc.path, tc.token, tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
			var got []string
			if tc.wantControl != "" {
				got = []string{tc.wantControl}
			}
			if !slices.Equal(f.answers.controls, got) {
				t.Errorf("the worker was asked %q, want %q", f.answers.controls, got)
			}
			var e errorBody
			_ = json.Unmarshal([]byte(body), &e)
			if tc.wantError != "" && e.Error != tc.wantError {
				t.Errorf("error %q, want %q", e.Error, tc.wantError)
			}
		})
	}
	// A browser holding an operator's password sends it along with another site's form: a
	// form cannot send JSON, and a script of another site's page is told by its Origin.
	for _, tc := range []struct {
		name, contentType, origin, site string
		taken                           bool
	}{
		{"a form", "application/x-www-form-urlencoded", "", "", false},
		{"JSON sent as text", "text/plain", "", "", false},
		{"JSON from another site's page", "application/json", "https://evil.example", "", false},
		{"JSON from another site's page, as a browser says it", "application/json", "https://evil.example", "cross-site", false},
		{"the page behind a proxy that rewrites Host", "application/json", "https://remediator.example", "same-origin", true},
		{"the CLI", "application/json", "", "", true},
	} {
		f.answers.controls = nil
		r, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/incidents/i1/cancel", strings.NewReader(`{"reason":"csrf"}`))
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("carol:carols-own-token")))
		r.Header.Set("Content-Type", tc.contentType)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		status, body := f.do(t, r)
		if taken := status == http.StatusOK && len(f.answers.controls) == 1; taken != tc.taken {
			t.Errorf("%s: %d %s, and the worker was asked %q; want taken %v", tc.name, status, body, f.answers.controls, tc.taken)
		}
	}
	if _, body := f.get(t, "/api/v1/clusters", ""); !strings.Contains(body, "operator token") {
		t.Errorf("the clusters were read without a token: %s", body)
	}
}

func TestClosingByHandOverTheAPI(t *testing.T) {
	f := newFixture(t, "")
	for _, tc := range []struct {
		name, token, body string
		wantStatus        int
		wantClosed        string
	}{
		{"no token", "", `{"reason":"silenced"}`, 401, ""},
		{"an operator's own token names them", "carols-own-token", `{"reason":"alert silenced for the disk swap"}`, 200, "i1 by carol: alert silenced for the disk swap"},
		{"the shared token names no one", operatorToken, `{"reason":"x"}`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.answers.closed = nil
			r, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/incidents/i1/close", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			status, body := f.do(t, r)
			if status != tc.wantStatus || strings.Join(f.answers.closed, ";") != tc.wantClosed {
				t.Errorf("got %d %s, closed %q; want %d, %q", status, body, f.answers.closed, tc.wantStatus, tc.wantClosed)
			}
		})
	}
}

func TestApprovalsOverTheAPI(t *testing.T) {
	post := func(f *fixture, path, token, body string) (int, string) {
		r, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return f.do(t, r)
	}
	f := newFixture(t, "")
	for _, tc := range []struct {
		name, path, token, body string
		workerSays              error
		wantStatus              int
		want                    string
		wantAnswer              string // by/via as the worker got it
	}{
		{"no token", "/api/v1/incidents/i1/approve", "", `{"approver":"alice"}`, nil, 401, "missing or wrong operator token", ""},
		{"the webhook token is not an operator token", "/api/v1/incidents/i1/approve", token, `{"approver":"alice"}`, nil, 401, "operator token", ""},
		{"shared token without a name", "/api/v1/incidents/i1/approve", operatorToken, `{}`, nil, 400, "the shared operator token does not say who you are: name yourself: --as NAME on the command line, Your name on the incidents page, approver in the API body", ""},
		{"not JSON", "/api/v1/incidents/i1/approve", operatorToken, `approver=alice`, nil, 400, "body must be", ""},
		{"an operator's token is theirs only", "/api/v1/incidents/i1/approve", "carols-own-token", `{"approver":"alice"}`, nil, 403, "this token is carol's, not alice's", ""},
		{"the shared token cannot pass for a Slack user", "/api/v1/incidents/i1/approve", operatorToken, `{"approver":"U01ALICE"}`, nil, 403, "is a Slack user ID, which the shared token cannot vouch for", ""},
		{"the shared token cannot pass for an operator with a token", "/api/v1/incidents/i1/approve", operatorToken, `{"approver":"carol"}`, nil, 403, "carol has an operator token of their own", ""},
		{"nor for one spelt otherwise", "/api/v1/incidents/i1/approve", operatorToken, `{"approver":"Carol"}`, nil, 403, "Carol has an operator token of their own", ""},
		{"the worker refuses: no approver", "/api/v1/incidents/i1/approve", operatorToken, `{"approver":"mallory"}`,
			remediator.Errorf(remediator.EFORBIDDEN, "mallory may not answer for incident i1"), 403, "mallory may not answer", "mallory/api-shared"},
		{"the worker refuses: approved already", "/api/v1/incidents/i1/approve", operatorToken, `{"approver":"alice"}`,
			remediator.Errorf(remediator.EREFUSED, "alice approved already"), 409, "approved already", "alice/api-shared"},
		{"shared token, named approver", "/api/v1/incidents/i1/approve", operatorToken, `{"approver":"alice","comment":"go"}`, nil, 200, `"state":"running"`, "alice/api-shared"},
		{"own token names the approver", "/api/v1/incidents/i1/approve", "carols-own-token", `{}`, nil, 200, `"id":"i1"`, "carol/api"},
		{"rejected", "/api/v1/incidents/i1/reject", "carols-own-token", `{"approver":"carol"}`, nil, 200, `"id":"i1"`, "carol/api"},
	} {
		f.answers.err = tc.workerSays
		before := len(f.answers.got)
		status, body := post(f, tc.path, tc.token, tc.body)
		if status != tc.wantStatus || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, status, body, tc.wantStatus, tc.want)
		}
		got := ""
		if len(f.answers.got) > before {
			a := f.answers.got[len(f.answers.got)-1]
			got = a.By + "/" + a.Via
		}
		if got != tc.wantAnswer {
			t.Errorf("%s: the worker got %q, want %q", tc.name, got, tc.wantAnswer)
		}
	}
	if last := f.answers.got[len(f.answers.got)-1]; last.Approve {
		t.Errorf("the rejection reached the worker as an approval: %+v", last)
	}
}
