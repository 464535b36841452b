// Package browsertest runs pages in a real headless Chromium for tests: a page that
// html/template accepts can still draw nothing, scroll sideways on a phone, or log errors a
// reader never sees.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Start starts a headless chromium for the test, stopped when the test ends. The test fails
// on a CI machine without chromium, so that a missing package cannot pass for a working page;
// elsewhere it skips.
func Start(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		path, err = exec.LookPath("/usr/bin/chromium")
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is needed to test the pages: apt-get install chromium (%v)", err)
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

// Problem says what a tab's event shows went wrong: an error or warning the page logged, an
// exception nothing caught, an error in the browser's log (a request refused, a resource that
// did not load); "" for any other event. Give it to chromedp.WithListener.
func Problem(ev any) string {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			return fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		p := "exception: " + d.Text
		if d.Exception != nil {
			p += " " + d.Exception.Description
		}
		return p
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			return fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}
	return ""
}

// Save keeps a PNG screenshot in $REMEDIATOR_SCREENSHOTS, or in the test's temporary
// directory, and returns its bounds.
func Save(t *testing.T, shot []byte, name string) image.Rectangle {
	t.Helper()
	dir := os.Getenv("REMEDIATOR_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.DecodeConfig(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	t.Logf("screenshot %s: %dx%d", path, img.Width, img.Height)
	return image.Rect(0, 0, img.Width, img.Height)
}
