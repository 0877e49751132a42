package main

// Eight tabs of the chat page from one origin. Over HTTP/2 (TLS, the
// test's certificate) every stream and every REST call share one
// connection, and all eight tabs receive. Over HTTP/1.1 the browser opens
// at most six connections to the origin, and each open stream holds one:
// the sixth tab's stream takes the last, after which that tab's own REST
// calls wait; the seventh and eighth tabs cannot even load, and a REST call
// from any tab waits, until tabs close. A relay between Chromium and
// Herald counts the connections.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// relay forwards TCP connections to target and counts them.
type relay struct {
	URL    string
	ln     net.Listener
	target string

	mu    sync.Mutex
	total int // connections accepted
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startRelay(t *testing.T, scheme, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{URL: scheme + "://" + ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.total++
		r.conns[c], r.conns[up] = true, true
		r.mu.Unlock()
		r.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer r.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			r.mu.Lock()
			delete(r.conns, src)
			r.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// connections is how many connections the browser has opened so far.
func (r *relay) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// signIn opens the chat page in p on room's invite link as name, and
// returns when the page is live, and has the room open unless streamOnly;
// unlike openChat it can run on another goroutine.
func signIn(p *tab, url, room, name string, streamOnly bool) error {
	ctx, cancel := context.WithTimeout(p.ctx, browserTimeout)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/#room="+room),
		chromedp.WaitVisible(chromedp.ID("name")),
		typeInto(chromedp.ID("name"), name),
		chromedp.Click(chromedp.CSS("#signin-form button")),
	)
	if err != nil {
		return err
	}
	ready := `document.querySelector("#conn").dataset.state === "live" && document.querySelector("#room-name").textContent === "tabs"`
	if streamOnly {
		ready = `document.querySelector("#conn").dataset.state === "live"`
	}
	_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](ready,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(browserTimeout)))
	return err
}

func TestBrowserTabs(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testCert(t, dir, "1")

	t.Run("HTTP/2: eight tabs on one connection", func(t *testing.T) {
		s := startServer(t, map[string]string{"HERALD_DEV": "on", "HERALD_TLS_CERT": certFile, "HERALD_TLS_KEY": keyFile})
		relay := startRelay(t, "https", strings.TrimPrefix(s.URL, "https://"))
		owner := s.token("owner")
		room := s.createRoom(owner, "tabs", false)

		first := person(t, "tab 1")
		tabs := []*tab{first}
		for i := 2; i <= 8; i++ {
			tabs = append(tabs, first.another(fmt.Sprintf("tab %d", i)))
		}
		for i, p := range tabs {
			if err := signIn(p, relay.URL, room, fmt.Sprintf("User %d", i+1), false); err != nil {
				t.Fatalf("%s: sign in: %v\n%s", p.name, err, p.dump())
			}
		}
		// Every tab receives; REST calls (a post from the last tab) go
		// through beside eight open streams.
		s.post(owner, room, "to every tab")
		last := chat{tabs[7]}
		last.run("send", typeInto(chromedp.ID("text"), "from tab 8"), chromedp.Click(chromedp.ID("send")))
		for _, p := range tabs {
			chat{p}.waitTexts("both messages", "to every tab", "from tab 8")
		}
		for _, p := range tabs {
			var protos []string
			p.eval(`performance.getEntriesByType("resource").map((e) => e.nextHopProtocol)`, &protos)
			for _, proto := range protos {
				if proto != "h2" {
					t.Errorf("%s: a request went over %q; want h2", p.name, proto)
				}
			}
		}
		if n := relay.connections(); n != 1 {
			t.Errorf("the browser opened %d connections; want 1, shared by eight streams and every request", n)
		}
	})

	t.Run("HTTP/1.1: six connections, and the others wait", func(t *testing.T) {
		s := startServer(t, map[string]string{"HERALD_DEV": "on"})
		relay := startRelay(t, "http", strings.TrimPrefix(s.URL, "http://"))
		owner := s.token("owner")
		room := s.createRoom(owner, "tabs", false)

		first := person(t, "tab 1")
		tabs := []*tab{first}
		for i := 2; i <= 8; i++ {
			tabs = append(tabs, first.another(fmt.Sprintf("tab %d", i)))
		}
		for i, p := range tabs[:5] {
			if err := signIn(p, relay.URL, room, fmt.Sprintf("User %d", i+1), false); err != nil {
				t.Fatalf("%s: sign in: %v\n%s", p.name, err, p.dump())
			}
		}
		// The sixth tab's stream takes the last connection: the tab goes
		// live, and what it asks after that waits.
		if err := signIn(tabs[5], relay.URL, room, "User 6", true); err != nil {
			t.Fatalf("%s: sign in: %v\n%s", tabs[5].name, err, tabs[5].dump())
		}
		// Six streams hold the browser's six connections to the origin.
		// Tabs 7 and 8 start loading, and tab 1 makes a REST call.
		late := make(chan error, 2)
		for i, p := range tabs[6:] {
			go func() { late <- signIn(p, relay.URL, room, fmt.Sprintf("User %d", i+7), false) }()
		}
		tabs[0].eval(`(window.call = fetch("/healthz").then((r) => (window.answered = r.status)), null)`, nil)
		// A message through the six streams: by the time every tab shows
		// it, a free connection would long have served the others.
		s.post(owner, room, "marker")
		for _, p := range tabs[:5] {
			chat{p}.waitTexts("the marker", "marker")
		}
		var answered any
		tabs[0].eval(`window.answered ?? null`, &answered)
		select {
		case err := <-late:
			t.Errorf("a seventh tab loaded while six streams were open (%v); want it to wait", err)
		default:
		}
		if answered != nil || relay.connections() != 6 {
			t.Errorf("with six streams open: REST call answered %v, %d connections; want no answer yet, 6 connections", answered, relay.connections())
		}

		// Three tabs close: their connections go to the waiting tabs and
		// the REST call.
		for _, p := range tabs[3:6] {
			p.close()
		}
		for range 2 {
			if err := <-late; err != nil {
				t.Fatalf("a late tab did not go live once three tabs had closed: %v", err)
			}
		}
		tabs[0].waitJS("the REST call answered", `window.answered === 200`)
		for _, p := range []*tab{tabs[0], tabs[6], tabs[7]} {
			s.post(owner, room, "after "+p.name)
			chat{p}.waitJS("the new message", `[...document.querySelectorAll("#message-list .text")].some((e) => e.textContent === `+jsString("after "+p.name)+`)`)
		}
	})
}
