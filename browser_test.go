package main

// Helpers of the browser tests: one headless Chromium for the package,
// driven with chromedp, in which each test opens browser contexts (as
// separate people) and tabs. A failing test saves a screenshot of each of
// its tabs in its artifact directory (kept by go test -artifacts).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserTimeout bounds each wait on a page, so that a broken test fails
// instead of hanging; no test relies on it passing quickly.
const browserTimeout = 30 * time.Second

var chromium struct {
	once   sync.Once
	ctx    context.Context // the browser's, parent of every browser context
	cancel func()
	dir    string
	err    error
}

// chromiumPath finds the browser: Debian's chromium, or Chrome.
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("Chromium is needed for the browser tests and was not found: make test installs it (.ci/deps); on Debian, apt-get install chromium")
}

// browser returns the package's Chromium, started on first use and
// stopped by TestMain.
func browser(t testing.TB) context.Context {
	t.Helper()
	chromium.once.Do(func() {
		path, err := chromiumPath()
		if err != nil {
			chromium.err = err
			return
		}
		chromium.dir, err = os.MkdirTemp("", "herald-chromium-")
		if err != nil {
			chromium.err = err
			return
		}
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path),
			chromedp.UserDataDir(chromium.dir),
			chromedp.Headless,
			chromedp.NoSandbox, // as root
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-extensions", true),
			chromedp.Flag("disable-default-apps", true),
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-backgrounding-occluded-windows", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
			chromedp.Flag("metrics-recording-only", true),
			chromedp.Flag("mute-audio", true),
			// The HTTP/2 test's certificate is its own.
			chromedp.Flag("ignore-certificate-errors", true),
			chromedp.WindowSize(1200, 900),
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelBrowser := chromedp.NewContext(alloc)
		if err := chromedp.Do(ctx); err != nil {
			cancelBrowser()
			cancelAlloc()
			chromium.err = fmt.Errorf("start %s: %w", path, err)
			return
		}
		chromium.ctx = ctx
		chromium.cancel = func() { cancelBrowser(); cancelAlloc() }
	})
	if chromium.err != nil {
		t.Fatal(chromium.err)
	}
	return chromium.ctx
}

// stopBrowser ends the package's Chromium, if one was started.
func stopBrowser() {
	if chromium.cancel != nil {
		chromium.cancel()
	}
	if chromium.dir != "" {
		os.RemoveAll(chromium.dir)
	}
}

// tab is one browser tab.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
	stop context.CancelFunc
}

// person opens a new browser context (its own cookies and storage, like
// another person's browser) with one tab in it.
func person(t *testing.T, name string) *tab {
	t.Helper()
	return startTab(t, name, browser(t), chromedp.WithNewBrowserContext())
}

// another opens another tab in p's browser context.
func (p *tab) another(name string) *tab {
	p.t.Helper()
	return startTab(p.t, name, p.ctx)
}

// startTab opens a tab as a child of parent, which logs the page's
// uncaught exceptions; the test closes it when it ends.
func startTab(t *testing.T, name string, parent context.Context, opts ...chromedp.ContextOption) *tab {
	t.Helper()
	opts = append(opts, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			t.Logf("%s: page exception at %s:%d: %s", name, d.URL, d.LineNumber+1, msg)
		}
	}))
	ctx, cancel := chromedp.NewContext(parent, opts...)
	tb := &tab{t: t, name: name, ctx: ctx, stop: cancel}
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("open tab %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			tb.screenshot()
		}
		cancel()
	})
	return tb
}

// close closes the tab (and its browser context, for a person's first tab).
func (p *tab) close() { p.stop() }

// screenshot saves the tab as it is into the test's artifact directory.
func (p *tab) screenshot() {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Logf("%s: no screenshot: %v", p.name, err)
		return
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(p.name) + ".png"
	path := filepath.Join(p.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Logf("%s: no screenshot: %v", p.name, err)
		return
	}
	p.t.Logf("%s: screenshot %s (go test -artifacts keeps it)", p.name, path)
}

// typeInto types v into the first element sel matches, as a user does:
// it focuses the element, then sends v's keys. chromedp.SendKeys does the
// same, but reads the node's attributes without their lock, racing the
// page's own changes to them: the race detector failed a test on it.
func typeInto[S chromedp.Selectable](sel S, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := chromedp.Focus(sel, chromedp.NodeVisible)(ctx, t); err != nil {
			return err
		}
		_, err := chromedp.KeyEvent(v)(ctx, t)
		return err
	})
}

// run runs actions in the tab, bounded by browserTimeout.
func (p *tab) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression in the tab, waiting for it when
// it is a promise, and decodes its value into out (nil to drop it).
func (p *tab) eval(js string, out any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if out == nil && (errors.Is(err, chromedp.ErrJSUndefined) || errors.Is(err, chromedp.ErrJSNull)) {
		return
	}
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, abbrev(js), err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("%s: evaluate %s: decode %s: %v", p.name, abbrev(js), raw, err)
		}
	}
}

// waitJS waits until the JavaScript expression is truthy in the tab. what
// says what is awaited, for the failure.
func (p *tab) waitJS(what, js string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(browserTimeout)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s (%s): %v\n%s", p.name, what, abbrev(js), err, p.dump())
	}
}

// dump describes the page for a failure: its URL, and the text of the
// chat page's parts when it is the chat page.
func (p *tab) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const q = (s) => document.querySelector(s)?.innerText ?? "";
		return "page " + location.href + "\n" + (document.querySelector("#app") ?
			["conn: " + q("#conn"), "rooms: " + q("#rooms"), "room: " + q("#room-name"), "members: " + q("#members"),
			 "messages: " + q("#message-list"), "typing: " + q("#typing"), "composer: " + JSON.stringify(document.querySelector("#text")?.value) + " " + q("#send"),
			 "toast: " + q("#toast")].join("\n") :
			document.body?.innerText?.slice(0, 2000) ?? "");
	})()`))
	return out
}

func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
