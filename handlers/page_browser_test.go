package handlers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/browsertest"
)

// pageViewports are the screens the incidents page must read on without scrolling sideways:
// a laptop, a small one, and a phone held upright.
var pageViewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"laptop", 1280, 800, false},
	// The narrowest screen that gets the table, not the cards.
	{"small laptop", 1210, 800, false},
	{"phone", 390, 844, true},
}

// TestTheIncidentsPageFitsAndLogsNothingInChromium opens the page, with a pause in force and
// an operator's controls, in a real browser at each width: it must not scroll sideways, and
// must log no error or warning and throw nothing. It saves a screenshot of each width, in
// $REMEDIATOR_SCREENSHOTS if set.
func TestTheIncidentsPageFitsAndLogsNothingInChromium(t *testing.T) {
	browser := browsertest.Start(t)
	f, w := newPageFixture(t, nil)
	if _, err := w.Pause(context.Background(), remediator.AllClusters, "dave", "freeze for the etcd 3.6 upgrade"); err != nil {
		t.Fatal(err)
	}
	for _, vp := range pageViewports {
		t.Run(fmt.Sprintf("%s-%dpx", vp.name, vp.width), func(t *testing.T) {
			tab := openPage(t, browser, f.srv.URL, "Bearer carols-own-token", vp.width, vp.height, vp.mobile)
			got, err := chromedp.Run(tab.ctx, chromedp.Evaluate[layout](readLayout))
			if err != nil {
				t.Fatal(err)
			}
			if got.InnerWidth != float64(vp.width) {
				// A phone zooms out of a page that overflows, which would hide the overflow.
				t.Errorf("the viewport is %vpx wide, not %dpx", got.InnerWidth, vp.width)
			}
			if got.ScrollWidth > got.InnerWidth {
				t.Errorf("the page scrolls sideways: %vpx wide in a %vpx viewport", got.ScrollWidth, got.InnerWidth)
			}
			for _, c := range got.Outside {
				t.Errorf("%s reaches past the viewport's right edge", c)
			}
			if got.Rows != 3 || got.Forms != 4 {
				t.Errorf("%d incidents and %d forms, want 3 and 4 (pause, resume, cancel, retry)", got.Rows, got.Forms)
			}
			for _, p := range tab.problems() {
				t.Errorf("the page logged %s", p)
			}
			tab.screenshot(t, fmt.Sprintf("incidents-%dpx.png", vp.width))
		})
	}
}

// TestAnOperatorCancelsAndPausesFromThePage types and clicks as an operator would, and
// checks what reached the worker: the cancel of one incident with its reason, a pause of a
// cluster, each in the name that the operator's own token gives.
func TestAnOperatorCancelsAndPausesFromThePage(t *testing.T) {
	browser := browsertest.Start(t)
	t.Run("cancel", func(t *testing.T) {
		f, w := newPageFixture(t, nil)
		tab := openPage(t, browser, f.srv.URL, "Bearer carols-own-token", 1280, 800, false)
		form := `form[data-action="cancel"][data-incident="` + runningID + `"]`
		const reason = `wrong cluster: the alert was for "qa" <really>`
		if err := chromedp.Do(tab.ctx,
			chromedp.SendKeys(chromedp.CSS(form+` input[name="reason"]`), reason),
			chromedp.Click(chromedp.CSS(form+" button")),
		); err != nil {
			t.Fatal(err)
		}
		want := []string{"cancel " + runningID + " by carol: " + reason}
		if got := waitAsked(t, w, len(want)); !slices.Equal(got, want) {
			t.Errorf("the worker was asked %q, want %q", got, want)
		}
		// The page reloads once the service took it, and says so.
		tab.waitStatus(t, "ok", "cancel "+runningID+": done (the incident is running)")
		for _, p := range tab.problems() {
			t.Errorf("the page logged %s", p)
		}
	})
	t.Run("pause on a phone", func(t *testing.T) {
		f, w := newPageFixture(t, nil)
		tab := openPage(t, browser, f.srv.URL, "Bearer carols-own-token", 390, 844, true)
		if err := chromedp.Do(tab.ctx,
			chromedp.SetValue(chromedp.CSS(`#pause-form select`), "staging"),
			chromedp.SendKeys(chromedp.CSS(`#pause-form input[name="reason"]`), "etcd 3.6 upgrade"),
			chromedp.Tap(chromedp.CSS(`#pause-form button`)),
		); err != nil {
			t.Fatal(err)
		}
		want := []string{"pause staging by carol: etcd 3.6 upgrade"}
		if got := waitAsked(t, w, len(want)); !slices.Equal(got, want) {
			t.Errorf("the worker was asked %q, want %q", got, want)
		}
		tab.waitStatus(t, "ok", "pause staging: done")
		banner, err := chromedp.Run(tab.ctx, chromedp.TextContent(chromedp.CSS(`.pause[data-pause="staging"] p`)))
		if err != nil {
			t.Fatal(err)
		}
		if want := "Cluster staging paused by carol at 2026-11-21 10:05:00Z: etcd 3.6 upgrade"; banner != want {
			t.Errorf("the banner says %q, want %q", banner, want)
		}
		for _, p := range tab.problems() {
			t.Errorf("the page logged %s", p)
		}
		tab.screenshot(t, "incidents-paused-390px.png")
	})
}

// TestThePageShowsTheServicesRefusal checks that a refused control shows the service's own
// words in the status line, as text: the shared token needs a name, and an error that looks
// like HTML stays text.
func TestThePageShowsTheServicesRefusal(t *testing.T) {
	browser := browsertest.Start(t)
	f, w := newPageFixture(t, nil)
	tab := openPage(t, browser, f.srv.URL, "Bearer "+operatorToken, 390, 844, true)
	retry := chromedp.CSS(`form[data-action="retry"][data-incident="` + failedID + `"] button`)
	if err := chromedp.Do(tab.ctx, chromedp.Tap(retry)); err != nil {
		t.Fatal(err)
	}
	tab.waitStatus(t, "err", "retry "+failedID+": refused (400): the shared operator token does not say who you are: name yourself: --as NAME on the command line, Your name on the incidents page, approver in the API body")

	w.refuse(remediator.Errorf(remediator.EREFUSED, `incident %s is <img src=x onerror="document.title='pwned'"> closed`, failedID))
	if err := chromedp.Do(tab.ctx, chromedp.SendKeys(chromedp.ID("approver"), "dave"), chromedp.Tap(retry)); err != nil {
		t.Fatal(err)
	}
	tab.waitStatus(t, "err", "retry "+failedID+`: refused (409): incident `+failedID+` is <img src=x onerror="document.title='pwned'"> closed`)
	parsed, err := chromedp.Run(tab.ctx, chromedp.Evaluate[int](`document.querySelectorAll("#status *").length`))
	if err != nil {
		t.Fatal(err)
	}
	if parsed != 0 {
		t.Errorf("the status line holds %d elements: the service's answer was parsed as HTML", parsed)
	}
	if got := w.asked(); !slices.Equal(got, []string{"retry " + failedID + " by dave"}) {
		t.Errorf("the worker was asked %q, want the named retry only", got)
	}
	// The browser logs a refused request as an error: the checks of the other tests would see
	// one, so their silence means something.
	if all := strings.Join(tab.problems(), "\n"); !strings.Contains(all, "400") || !strings.Contains(all, "409") {
		t.Errorf("the listener missed the refused requests; it saw:\n%s", all)
	}
	tab.screenshot(t, "incidents-refused-390px.png")
}

// waitAsked waits up to ten seconds for the worker fake to be asked n controls, and returns
// what it was asked.
func waitAsked(t *testing.T, w *pausing, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.asked()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return w.asked()
}

// tab is the page open in a tab of the browser, with what it logged.
type tab struct {
	ctx  context.Context
	mu   sync.Mutex
	seen []string
}

// problems are the errors and warnings the page logged, the exceptions nothing caught and
// the errors in the browser's log (a request refused, a resource that did not load), so far.
func (tb *tab) problems() []string {
	// The listener has seen every event that came before the answer to this command.
	_, _ = chromedp.Run(tb.ctx, chromedp.Evaluate[int]("0"))
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.seen)
}

// openPage opens url in a new tab of a viewport width by height px, sending auth as the
// Authorization header of every request the page makes, as a browser holding an operator's
// basic-auth password would send it, and waits for the page's script to have run.
func openPage(t *testing.T, browser context.Context, url, auth string, width, height int64, mobile bool) *tab {
	t.Helper()
	tb := &tab{}
	// chromedp enables the runtime and log domains as it attaches the tab; a listener given
	// here sees their events from the start. It runs in the tab's read loop: no commands.
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithListener(func(ev any) {
		p := browsertest.Problem(ev)
		if p != "" {
			tb.mu.Lock()
			tb.seen = append(tb.seen, p)
			tb.mu.Unlock()
		}
	}))
	t.Cleanup(cancel)
	tb.ctx = ctx
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	headers := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
		return err
	})
	if err := chromedp.Do(ctx, headers, chromedp.EmulateViewport(width, height, opts...), chromedp.Navigate(url),
		chromedp.WaitReady(chromedp.CSS("#status"))); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	return tb
}

// waitStatus waits up to ten seconds for the status line to be shown, saying text, with
// class class, and fails the test if it does not. It looks again across a reload of the page.
func (tb *tab) waitStatus(t *testing.T, class, text string) {
	t.Helper()
	want := statusLine{Shown: true, Class: class, Text: text}
	var got statusLine
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err = chromedp.Run(tb.ctx, chromedp.Evaluate[statusLine](readStatus)); err == nil && got == want {
			return
		}
	}
	t.Fatalf("the status line is %+v (%v), want %+v", got, err, want)
}

// statusLine is what the page's status line shows.
type statusLine struct {
	Shown bool   `json:"shown"`
	Class string `json:"class"`
	Text  string `json:"text"`
}

const readStatus = `(s => ({shown: !!s && s.checkVisibility(), class: s?.className ?? "", text: s?.textContent ?? ""}))(document.getElementById("status"))`

// screenshot saves a PNG of the whole page in $REMEDIATOR_SCREENSHOTS, or in the test's
// temporary directory.
func (tb *tab) screenshot(t *testing.T, name string) {
	t.Helper()
	shot, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("taking a screenshot: %v", err)
	}
	browsertest.Save(t, shot, name)
}

// layout is what a test reads of the page once the browser has laid it out.
type layout struct {
	// InnerWidth is the viewport's width and ScrollWidth the page's, in CSS pixels.
	InnerWidth  float64 `json:"innerWidth"`
	ScrollWidth float64 `json:"scrollWidth"`
	// Outside names the tables, forms and buttons that reach past the viewport's right edge.
	Outside []string `json:"outside"`
	Rows    int      `json:"rows"`
	Forms   int      `json:"forms"`
}

const readLayout = `(() => {
	const all = sel => Array.from(document.querySelectorAll(sel));
	return {
		innerWidth: window.innerWidth,
		scrollWidth: document.documentElement.scrollWidth,
		outside: all("table, form, button, input, select, .pause, #clusters li").
			filter(e => e.getBoundingClientRect().right > window.innerWidth).
			map(e => e.outerHTML.slice(0, 80)),
		rows: all("tbody tr").length,
		forms: all("form[data-action]").length,
	};
})()`
