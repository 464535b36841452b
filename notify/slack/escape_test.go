package slack

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/slacktest"
)

// hostile is what an alert label, a step's output or an approver's comment may hold: a
// mention of everyone, a disguised link, and an ampersand.
const hostile = "<!channel> <http://evil.example|click> & co"

// hostileEscaped is how hostile must reach Slack in mrkdwn text.
const hostileEscaped = "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; co"

// mrkdwnTexts returns the text of every mrkdwn text object in blocks, and of every plain_text
// one apart.
func mrkdwnTexts(v any) (mrkdwn, plain []string) {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["text"].(string); ok {
			switch v["type"] {
			case "mrkdwn":
				mrkdwn = append(mrkdwn, s)
			case "plain_text":
				plain = append(plain, s)
			}
		}
		for _, x := range v {
			m, p := mrkdwnTexts(x)
			mrkdwn, plain = append(mrkdwn, m...), append(plain, p...)
		}
	case []any:
		for _, x := range v {
			m, p := mrkdwnTexts(x)
			mrkdwn, plain = append(mrkdwn, m...), append(plain, p...)
		}
	}
	return mrkdwn, plain
}

// bareAmpersand says whether s holds an & that starts none of the entities Slack reads.
func bareAmpersand(s string) bool {
	for i := strings.IndexByte(s, '&'); i >= 0; i = strings.IndexByte(s, '&') {
		s = s[i:]
		if !strings.HasPrefix(s, "&amp;") && !strings.HasPrefix(s, "&lt;") && !strings.HasPrefix(s, "&gt;") {
			return true
		}
		s = s[1:]
	}
	return false
}

// memIncidents keeps incidents in memory, for what the queue's store refuses to keep: a
// cluster name that is no valid key.
type memIncidents struct {
	mu   sync.Mutex
	byID map[string][]byte
}

func (m *memIncidents) Get(_ context.Context, id string) (*remediator.Incident, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var inc remediator.Incident
	if err := json.Unmarshal(m.byID[id], &inc); err != nil {
		return nil, err
	}
	return &inc, nil
}

func (m *memIncidents) Update(ctx context.Context, id string, fn func(*remediator.Incident) error) (*remediator.Incident, error) {
	inc, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := fn(inc); err != nil {
		return nil, err
	}
	m.put(inc)
	return inc, nil
}

func (m *memIncidents) put(inc *remediator.Incident) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byID[inc.ID], _ = json.Marshal(inc)
}

func TestWhatAlertsAndPeopleWroteIsEscaped(t *testing.T) {
	f := newFixture(t)
	inc, err := f.store.Get(context.Background(), f.id)
	if err != nil {
		t.Fatal(err)
	}
	mem := &memIncidents{byID: map[string][]byte{}}
	mem.put(inc)
	f.n = New(Config{Token: token, Channel: "#etcd", APIURL: f.slack.URL(), BaseURL: "https://remediator.example", Incidents: mem})
	update := func(fn func(*remediator.Incident)) {
		t.Helper()
		if _, err := mem.Update(context.Background(), f.id, func(inc *remediator.Incident) error { fn(inc); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	update(func(inc *remediator.Incident) {
		now := inc.UpdatedAt.Add(time.Second)
		inc.Cluster = "prod " + hostile
		inc.Evidence[0].Labels["alertname"] = "etcdDatabaseQuotaLowSpace " + hostile
		inc.Reason = "step compact is destructive risk " + hostile
		inc.Steps[0].Output = "m1 (8e) leader: " + hostile
		inc.Before[0].Name = "m1 " + hostile
		inc.Record(now, remediator.EventApproved, "compact", "approved by alice (U01ALICE): "+hostile)
	})
	if err := f.handle(t, remediator.Notice{Ephemeral: &remediator.Ephemeral{User: "U09MALLORY", Channel: slacktest.Channel,
		Text: "Not accepted: " + hostile + "."}}); err != nil {
		t.Fatal(err)
	}
	// It runs to the end: the message is updated, and the thread gets the report.
	update(func(inc *remediator.Incident) {
		now := inc.UpdatedAt.Add(time.Minute)
		inc.Steps[1].State, inc.Steps[1].Attempts, inc.Steps[1].StartedAt, inc.Steps[1].FinishedAt = remediator.StepFailed, 1, now, now.Add(time.Second)
		inc.Steps[1].Output = "compact: " + hostile
		inc.Record(now, remediator.EventStepFailed, "compact", "failed: "+hostile)
		inc.SetState(remediator.StateFailed, "compact failed: "+hostile, now)
	})
	if err := f.handle(t, remediator.Notice{}); err != nil {
		t.Fatal(err)
	}

	calls := f.slack.Calls("")
	var sent []string // every mrkdwn text and text field, as sent
	for _, c := range calls {
		switch c.Method {
		case "chat.postMessage", "chat.update", "chat.postEphemeral":
		default:
			continue
		}
		var blocks any
		_ = json.Unmarshal([]byte(c.Form.Get("blocks")), &blocks)
		mrkdwn, plain := mrkdwnTexts(blocks)
		texts := append([]string{c.Form.Get("text")}, mrkdwn...)
		for _, s := range texts {
			if strings.Contains(s, "<!channel>") || strings.Contains(s, "<http://evil.example") || bareAmpersand(s) || strings.Contains(s, "&amp;lt;") {
				t.Errorf("%s sends %q: raw markup, a bare & or escaped twice", c.Method, s)
			}
		}
		for _, s := range plain {
			if strings.Contains(s, "&lt;") || strings.Contains(s, "&amp;") {
				t.Errorf("%s: plain text %q is escaped: Slack would show the entities", c.Method, s)
			}
		}
		sent = append(sent, texts...)
	}
	all := strings.Join(sent, "\n")
	for _, want := range []string{
		"etcdDatabaseQuotaLowSpace " + hostileEscaped,        // the alert, in the message
		"step compact is destructive risk " + hostileEscaped, // the reason
		"m1 " + hostileEscaped,                               // a member's name
		"m1 (8e) leader: " + hostileEscaped,                  // a step's output, in the thread
		"approved by alice (U01ALICE): " + hostileEscaped,    // an approver's comment
		"Not accepted: " + hostileEscaped,                    // the ephemeral message
		"etcd-nospace-recovery on prod " + hostileEscaped,    // the fallback text
		"compact: " + hostileEscaped,                         // the failed step's output
		"|Post-incident report>",                             // our own link, left a link
		"<@U01ALICE>",                                        // our own mentions, left mentions
	} {
		if !strings.Contains(all, want) {
			t.Errorf("nothing sent holds %q", want)
		}
	}
	for _, method := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral"} {
		if len(f.slack.Calls(method)) == 0 {
			t.Errorf("no %s call: the test checks nothing of it", method)
		}
	}
	// The header is plain text, which Slack shows as written.
	_, plain := mrkdwnTexts(anyBlocksOf(t, f.slack.Calls("chat.update")[0].Blocks()))
	if len(plain) == 0 || !strings.Contains(plain[0], "prod <!channel>") {
		t.Errorf("plain text of the update %q, want the header as written", plain)
	}
}

func TestTheReportLinkCannotBeBrokenOutOf(t *testing.T) {
	n := New(Config{BaseURL: "https://remediator.example"})
	inc := &remediator.Incident{ID: "x|<!channel>&y>", State: remediator.StateSucceeded}
	got := n.reportURL(inc)
	if want := "https://remediator.example/api/v1/incidents/x%7C%3C%21channel%3E&amp;y%3E/report?format=html"; got != want {
		t.Errorf("report URL %s, want %s", got, want)
	}
	mrkdwn, _ := mrkdwnTexts(anyBlocksOf(t, render(inc, got)))
	linked := false
	for _, s := range mrkdwn {
		if strings.Contains(s, "<!channel>") {
			t.Errorf("rendered %q: the incident ID is markup", s)
		}
		if strings.Contains(s, "Post-incident report") {
			linked = strings.HasSuffix(s, " <"+got+"|Post-incident report>") && strings.Count(s, "<") == 1 && strings.Count(s, "|") == 1
		}
	}
	if !linked {
		t.Errorf("rendered %q: want one link to the report, which the incident ID does not break", mrkdwn)
	}
}

// anyBlocksOf is v as JSON decodes it, for mrkdwnTexts.
func anyBlocksOf(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func TestTruncateDoesNotCutAnEntity(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"short enough", "a &amp; b", 20, "a &amp; b"},
		{"cut inside &amp;", "ab&amp;cdef", 6, "ab…"},
		{"cut inside &lt;", "abc&lt;def", 6, "abc…"},
		{"cut after an entity", "a&gt;bcdef", 7, "a&gt;b…"},
		{"a raw & in plain text is kept", "ab&cdefgh", 6, "ab&cd…"},
		{"runes", "äöü&lt;", 5, "äöü…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := truncate(tc.in, tc.n); got != tc.want {
				t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
