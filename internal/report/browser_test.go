package report

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/remediator/remediator"
	"github.com/remediator/remediator/internal/browsertest"
)

// viewports are the screens the page must read on without scrolling sideways: a laptop, and
// a phone held upright.
var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"laptop", 1280, 800, false},
	{"phone", 390, 844, true},
}

// TestHTMLReportRendersInChromium opens the HTML reports in a real browser: a page that
// html/template accepts can still draw nothing, log errors a reader never sees, or be too wide
// for the screen it is read on. It saves a screenshot of each page at each width, in
// $REMEDIATOR_SCREENSHOTS if set, so that a person can look at them.
func TestHTMLReportRendersInChromium(t *testing.T) {
	browser := browsertest.Start(t)
	for _, tc := range []struct {
		name          string
		inc           *remediator.Incident
		title         string
		before, after int
		// steps are the steps that ran, one bar each.
		steps []string
	}{
		{"closed", closed(), "Incident 20261121-100000-abc123 on prod: NOSPACE recovery (succeeded)", 2, 2,
			[]string{"preflight", "snapshot", "compact", "defragment", "disarm", "verify"}},
		{"failed", failed(), "Incident 20261121-100000-abc123 on prod: etcd-nospace-recovery (failed)", 2, 1,
			[]string{"preflight", "snapshot", "compact", "defragment"}},
		{"approved", approved(), "Incident 20261121-100000-abc123 on prod: etcd-nospace-recovery (succeeded)", 2, 2,
			[]string{"preflight", "snapshot", "compact", "defragment", "disarm", "verify"}},
		{"rejected", rejected(), "Incident 20261121-110000-def456 on prod: etcd-nospace-recovery (rejected)", 0, 0, nil},
	} {
		_, page, err := Renderer{}.Render(tc.inc, "html")
		if err != nil {
			t.Fatal(err)
		}
		for _, vp := range viewports {
			t.Run(fmt.Sprintf("%s/%s-%dpx", tc.name, vp.name, vp.width), func(t *testing.T) {
				got, problems := open(t, browser, page, vp.width, vp.height, vp.mobile)
				for _, p := range problems {
					t.Errorf("the page logged %s", p)
				}
				if got.Title != tc.title {
					t.Errorf("title %q, want %q", got.Title, tc.title)
				}
				if want := Build(tc.inc).Summary; got.Summary != want {
					t.Errorf("summary %q, want %q", got.Summary, want)
				}
				switch {
				case tc.before+tc.after == 0:
					if got.Chart != nil {
						t.Errorf("a size chart of no members: %+v", got.Chart)
					}
				case got.Chart == nil:
					t.Error("no #db-size-chart")
				case got.Chart.Width <= 0 || got.Chart.Height <= 0:
					t.Errorf("#db-size-chart renders %+v", *got.Chart)
				}
				if got.Before != tc.before || got.After != tc.after {
					t.Errorf("size bars: %d before and %d after, want %d and %d", got.Before, got.After, tc.before, tc.after)
				}
				if got.Timeline == nil || got.Timeline.Width <= 0 || got.Timeline.Height <= 0 {
					t.Errorf("#step-timeline renders %+v", got.Timeline)
				}
				if !slices.Equal(got.Steps, tc.steps) {
					t.Errorf("step bars %q, want %q", got.Steps, tc.steps)
				}
				if got.Flat > 0 {
					t.Errorf("%d bars render with no area", got.Flat)
				}
				t.Logf("page %vpx wide in a %vpx viewport; members table %+v; tables %+v", got.ScrollWidth, got.InnerWidth, got.Members, got.Tables)
				fits(t, got, vp.width, tc.before+tc.after > 0)
				if shot := browsertest.Save(t, got.Screenshot, fmt.Sprintf("%s-%dpx.png", tc.name, vp.width)); shot.Dx() != int(vp.width) {
					t.Errorf("the screenshot is %dpx wide, not the viewport's %dpx: the page is wider than the screen", shot.Dx(), vp.width)
				}
			})
		}
	}
	// The test is only worth something if it sees what a broken page does.
	t.Run("a broken page", func(t *testing.T) {
		_, problems := open(t, browser, []byte(`<!DOCTYPE html><title>broken</title><link rel="icon" href="data:,">
<img src="/missing.png"><script>console.error("the page failed"); throw new Error("uncaught");</script>`), 1280, 800, false)
		all := strings.Join(problems, "\n")
		for _, want := range []string{"console.error: the page failed", "uncaught", "404"} {
			if !strings.Contains(all, want) {
				t.Errorf("the check missed %q; it saw:\n%s", want, all)
			}
		}
	})
	// Nor is the layout check, if it does not see a page too wide for a phone.
	t.Run("a page too wide", func(t *testing.T) {
		got, _ := open(t, browser, []byte(`<!DOCTYPE html><title>wide</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<section id="members"><table><tr><td style="white-space: nowrap">`+strings.Repeat("10.0 MiB → 824.0 KiB ", 20)+`</td></tr></table></section>`), 390, 844, true)
		var ft fakeT
		fits(&ft, got, 390, true)
		if len(ft.errors) < 2 {
			t.Errorf("the layout check passed a page %vpx wide in a 390px viewport: %q", got.ScrollWidth, ft.errors)
		}
	})
}

// fits checks that the page does not scroll sideways in a viewport width px wide, and that
// every table (the members' above all) lies inside it.
func fits(t errorer, got rendered, width int64, members bool) {
	if got.InnerWidth != float64(width) {
		// A phone zooms out of a page that overflows, which would hide the overflow.
		t.Errorf("the viewport is %vpx wide, not %dpx", got.InnerWidth, width)
	}
	if got.ScrollWidth > got.InnerWidth {
		t.Errorf("the page scrolls sideways: %vpx wide in a %vpx viewport", got.ScrollWidth, got.InnerWidth)
	}
	if members && got.Members == nil {
		t.Errorf("no members table")
	}
	for _, b := range got.Tables {
		switch {
		case b.Left < 0 || b.Right > got.InnerWidth:
			t.Errorf("table %s spans %v to %vpx, outside the %vpx viewport", b.Name, b.Left, b.Right, got.InnerWidth)
		case b.Right > b.Room:
			t.Errorf("table %s spans %v to %vpx, past its section's edge at %vpx: it scrolls sideways", b.Name, b.Left, b.Right, b.Room)
		}
	}
}

// errorer is the part of testing.T that fits uses, so that a test can check fits itself.
type errorer interface {
	Errorf(format string, args ...any)
}

type fakeT struct{ errors []string }

func (f *fakeT) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

// rendered is what a test reads from a page once the browser has laid it out.
type rendered struct {
	Title   string `json:"title"`
	Summary string `json:"summary"`
	// Chart and Timeline are the charts' rendered sizes, nil where a chart is missing.
	Chart    *size `json:"chart"`
	Timeline *size `json:"timeline"`
	// Before and After count the size chart's bars of each side.
	Before int `json:"before"`
	After  int `json:"after"`
	// Steps names the step timeline's bars.
	Steps []string `json:"steps"`
	// Flat counts the bars of either chart that render with no area.
	Flat int `json:"flat"`
	// InnerWidth is the viewport's width and ScrollWidth the page's, in CSS pixels.
	InnerWidth  float64 `json:"innerWidth"`
	ScrollWidth float64 `json:"scrollWidth"`
	// Members is the members table's box, nil where there is none; Tables are every table's.
	Members *box  `json:"members"`
	Tables  []box `json:"tables"`
	// Screenshot is a PNG of the whole page.
	Screenshot []byte `json:"-"`
}

type size struct {
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

// box is where an element is laid out, in CSS pixels from the page's left edge; Room is the
// right edge of its section, which it should not cross to be scrolled inside it.
type box struct {
	Name  string  `json:"name"`
	Left  float64 `json:"left"`
	Right float64 `json:"right"`
	Room  float64 `json:"room"`
}

const readPage = `(() => {
	const size = sel => {
		const e = document.querySelector(sel);
		if (!e) return null;
		const r = e.getBoundingClientRect();
		return {width: r.width, height: r.height};
	};
	const all = sel => Array.from(document.querySelectorAll(sel));
	const box = (e, i) => {
		const r = e.getBoundingClientRect();
		// What the element has room for: its section, or the page.
		const room = (e.closest("section") ?? document.body).getBoundingClientRect();
		return {name: e.id || e.closest("section")?.id || "#" + i, left: r.left + scrollX, right: r.right + scrollX, room: room.right + scrollX};
	};
	const members = document.querySelector("#members table");
	return {
		title: document.title,
		summary: document.getElementById("summary")?.textContent ?? "",
		chart: size("#db-size-chart"),
		timeline: size("#step-timeline"),
		before: all('#db-size-chart rect[data-side="before"]').length,
		after: all('#db-size-chart rect[data-side="after"]').length,
		steps: all("#step-timeline rect[data-step]").map(r => r.dataset.step),
		flat: all("rect[data-side], rect[data-step]").filter(r => {
			const b = r.getBoundingClientRect();
			return b.width <= 0 || b.height <= 0;
		}).length,
		innerWidth: window.innerWidth,
		scrollWidth: document.documentElement.scrollWidth,
		members: members ? box(members, 0) : null,
		tables: all("table").map(box),
	};
})()`

// open serves the page, loads it in a new tab of the browser and reads it, with every error
// or warning the page logged, every exception nothing caught and every error in the
// browser's log (a resource that did not load).
func open(t *testing.T, browser context.Context, page []byte, width, height int64, mobile bool) (rendered, []string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var mu sync.Mutex
	var problems []string
	// chromedp enables the runtime and log domains as it attaches the tab; a listener given
	// here sees their events from the start. It runs in the tab's read loop: no commands.
	tab, cancel := chromedp.NewContext(browser, chromedp.WithListener(func(ev any) {
		p := browsertest.Problem(ev)
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	}))
	defer cancel()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	if err := chromedp.Do(tab, chromedp.EmulateViewport(width, height, opts...), chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	got, err := chromedp.Run(tab, chromedp.Evaluate[rendered](readPage))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	if got.Screenshot, err = chromedp.Run(tab, chromedp.FullScreenshot(100)); err != nil {
		t.Fatalf("taking a screenshot: %v", err)
	}
	// The listener saw every event that came before the answer to the last command.
	mu.Lock()
	defer mu.Unlock()
	return got, slices.Clone(problems)
}
