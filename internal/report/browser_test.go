package report

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/remediator/remediator"
)

// TestHTMLReportRendersInChromium opens the HTML reports in a real browser: a page that
// html/template accepts can still draw nothing, or log errors a reader never sees.
func TestHTMLReportRendersInChromium(t *testing.T) {
	browser := startChromium(t)
	for _, tc := range []struct {
		name          string
		inc           *remediator.Incident
		title         string
		before, after int
		// steps are the steps that ran, one bar each.
		steps []string
	}{
		{"closed", closed(), "Incident 20261121-100000-abc123: etcd-nospace-recovery on prod (succeeded)", 2, 2,
			[]string{"preflight", "snapshot", "compact", "defragment", "disarm", "verify"}},
		{"failed", failed(), "Incident 20261121-100000-abc123: etcd-nospace-recovery on prod (failed)", 2, 0,
			[]string{"preflight", "snapshot", "compact", "defragment"}},
		{"rejected", rejected(), "Incident 20261121-110000-def456: etcd-nospace-recovery on prod (rejected)", 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, page, err := Renderer{}.Render(tc.inc, "html")
			if err != nil {
				t.Fatal(err)
			}
			got, problems := open(t, browser, page)
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
		})
	}
	// The test is only worth something if it sees what a broken page does.
	t.Run("a broken page", func(t *testing.T) {
		_, problems := open(t, browser, []byte(`<!DOCTYPE html><title>broken</title><link rel="icon" href="data:,">
<img src="/missing.png"><script>console.error("the page failed"); throw new Error("uncaught");</script>`))
		all := strings.Join(problems, "\n")
		for _, want := range []string{"console.error: the page failed", "uncaught", "404"} {
			if !strings.Contains(all, want) {
				t.Errorf("the check missed %q; it saw:\n%s", want, all)
			}
		}
	})
}

// startChromium starts a headless chromium for the test, stopped when the test ends. The test
// fails on a CI machine without chromium, so that a missing package cannot pass for a
// working page; elsewhere it skips.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		path, err = exec.LookPath("/usr/bin/chromium")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is needed to test the HTML report: apt-get install chromium (%v)", err)
		}
		t.Skipf("no chromium (apt-get install chromium): %v", err)
	}
	// A browser that hangs fails the test instead of holding the run until go test's timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	ctx, cancel = chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		// Tests run as root, and chromium's sandbox refuses root.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
	)...)
	t.Cleanup(cancel)
	ctx, cancel = chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
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
}

type size struct {
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

const readPage = `(() => {
	const size = sel => {
		const e = document.querySelector(sel);
		if (!e) return null;
		const r = e.getBoundingClientRect();
		return {width: r.width, height: r.height};
	};
	const all = sel => Array.from(document.querySelectorAll(sel));
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
	};
})()`

// open serves the page, loads it in a new tab of the browser and reads it, with every error
// or warning the page logged, every exception nothing caught and every error in the
// browser's log (a resource that did not load).
func open(t *testing.T, browser context.Context, page []byte) (rendered, []string) {
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
		var p string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, strings.Trim(string(a.Value), `"`)+a.Description)
				}
				p = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			p = "exception: " + d.Text
			if d.Exception != nil {
				p += " " + d.Exception.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				p = fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	}))
	defer cancel()
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	got, err := chromedp.Run(tab, chromedp.Evaluate[rendered](readPage))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	// The listener saw every event that came before the answer to the last command.
	mu.Lock()
	defer mu.Unlock()
	return got, slices.Clone(problems)
}
