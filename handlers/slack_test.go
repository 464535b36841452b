package handlers

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
)

// paddedClick is a signed button click made size bytes long by a form field Slack does not
// send, which the signature covers all the same.
func paddedClick(t *testing.T, size int) []byte {
	t.Helper()
	click := slacktest.ButtonClick("U01ALICE", "alice", "approve", "20261121-100000-abcdef")
	pad := size - len(click) - len("&pad=")
	if pad < 0 {
		t.Fatalf("a click is %d bytes, over %d", len(click), size)
	}
	body := string(click) + "&" + url.Values{"pad": {strings.Repeat("x", pad)}}.Encode()
	if len(body) != size {
		t.Fatalf("padded click of %d bytes, want %d", len(body), size)
	}
	return []byte(body)
}

func TestALargeInteractionIsRefusedBeforeItsSignatureIsChecked(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size       int
		wantStatus int
		want       string
		wantQueued int32
	}{
		{"63 KiB", 63 << 10, http.StatusOK, "", 1},
		{"65 KiB", 65 << 10, http.StatusRequestEntityTooLarge, `"code":"too_large"`, 0},
		{"1 MiB", 1 << 20, http.StatusRequestEntityTooLarge, `"code":"too_large"`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			status, body := f.do(t, slacktest.Request(f.srv.URL+"/slack/interactions", signingSecret, time.Now(), paddedClick(t, tc.size)))
			if status != tc.wantStatus || !strings.Contains(body, tc.want) {
				t.Errorf("a signed click of %d bytes: %d %s, want %d with %q", tc.size, status, body, tc.wantStatus, tc.want)
			}
			if n := f.pub.published.Load(); n != tc.wantQueued {
				t.Errorf("%d answers enqueued, want %d", n, tc.wantQueued)
			}
			if len(f.answers.got) != 0 {
				t.Errorf("the worker got %+v from a click: a click is enqueued, never answered in the request", f.answers.got)
			}
		})
	}
}

func TestAReplayWithTheSignatureInOtherCaseIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		recase func(hex string) string
	}{
		{"upper case", strings.ToUpper},
		{"one digit upper-cased", func(hex string) string {
			i := strings.IndexAny(hex, "abcdef")
			return hex[:i] + strings.ToUpper(hex[i:i+1]) + hex[i+1:]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			click := slacktest.ButtonClick("U01ALICE", "alice", "approve", "20261121-100000-abcdef")
			now := time.Now()
			first := slacktest.Request(f.srv.URL+"/slack/interactions", signingSecret, now, click)
			sig := first.Header.Get("X-Slack-Signature")
			if status, body := f.do(t, first); status != http.StatusOK {
				t.Fatalf("signed click: %d %s", status, body)
			}

			again := slacktest.Request(f.srv.URL+"/slack/interactions", signingSecret, now, click)
			hex, _ := strings.CutPrefix(sig, "v0=")
			again.Header.Set("X-Slack-Signature", "v0="+tc.recase(hex))
			if again.Header.Get("X-Slack-Signature") == sig {
				t.Fatal("the signature did not change")
			}
			status, body := f.do(t, again)
			if status != http.StatusConflict || !strings.Contains(body, "replay") {
				t.Errorf("the same request, its signature %s: %d %s, want 409 replay", tc.name, status, body)
			}
			want := remediator.Answer{Incident: "20261121-100000-abcdef", By: "U01ALICE", Name: "alice", Via: "slack", Approve: true, Channel: slacktest.Channel}
			if got := f.answerQueued(t); got != want {
				t.Errorf("answer enqueued %+v, want %+v", got, want)
			}
			if n := f.pub.published.Load(); n != 1 {
				t.Errorf("%d answers published, want one: the replay refused before the queue", n)
			}
		})
	}
}
