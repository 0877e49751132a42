package main

// The browser client (/client.js) in real Chromium against a real server,
// behind an app server that proxies Herald the way a web app's own origin
// does, and fails the way proxies fail: a 502 error page while Herald is
// away, an acknowledgement lost after the post was committed, a resume
// position the server no longer knows.

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdpnet "github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/heraldchat/herald/api"
)

// appServer is a web app's origin in front of Herald: it serves the
// test's pages and files under /test/ and proxies everything else to
// Herald, streams unbuffered.
type appServer struct {
	t      *testing.T
	URL    string
	proxy  *httputil.ReverseProxy
	files  map[string]string // /test/ path → file on disk
	inline map[string]string // /test/ path → content

	down     atomic.Bool          // answer 502, as a proxy does while its upstream is away
	forget   atomic.Bool          // send streams a resume position of another epoch
	dropAcks atomic.Int32         // posts to forward, and then answer 502 instead
	hold     atomic.Pointer[held] // when set, its route's answers wait for it

	mu       sync.Mutex
	seen     map[string]int // "METHOD /route" → requests forwarded; "502 METHOD /route" → answered 502
	queries  []string       // the query of each stream request forwarded
	cuts     map[int]context.CancelFunc
	nextCut  int
	changed  chan struct{} // closed and replaced when seen changes
	resumeID string
}

var roomPath = regexp.MustCompile(`^/v1/rooms/[^/]+`)

// route is a request's path with the room id as {room}.
func route(r *http.Request) string {
	p := r.URL.Path
	if p != "/v1/rooms" {
		p = roomPath.ReplaceAllString(p, "/v1/rooms/{room}")
	}
	return r.Method + " " + p
}

// held is a route whose answers the app keeps until release closes.
type held struct {
	route   string
	release chan struct{}
}

// holdAnswers makes the app keep Herald's answers on route (as
// "METHOD /route") until the returned func lets them go; the count of
// "held "+route starts again from zero.
func (a *appServer) holdAnswers(route string) (release func()) {
	a.mu.Lock()
	delete(a.seen, "held "+route)
	a.mu.Unlock()
	h := &held{route: route, release: make(chan struct{})}
	a.hold.Store(h)
	return func() {
		a.hold.Store(nil)
		close(h.release)
	}
}

func newApp(t *testing.T, heraldURL string) *appServer {
	t.Helper()
	target, err := url.Parse(heraldURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	a := &appServer{
		t: t, files: map[string]string{}, inline: map[string]string{},
		seen: map[string]int{}, cuts: map[int]context.CancelFunc{}, changed: make(chan struct{}),
	}
	a.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
			if a.forget.Load() && r.Out.URL.Path == "/v1/stream" {
				// As if Herald's database had been restored from an older
				// backup: the position is of an epoch it does not know.
				if r.Out.Header.Get("Last-Event-ID") != "" {
					r.Out.Header.Set("Last-Event-ID", "zzzzzzzz-1")
				}
				q := r.Out.URL.Query()
				if q.Get("last_event_id") != "" {
					q.Set("last_event_id", "zzzzzzzz-1")
					r.Out.URL.RawQuery = q.Encode()
				}
			}
		},
		FlushInterval: -1,
		Transport:     tr,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		a.cut()
		srv.Close()
	})
	a.URL = srv.URL
	return a
}

func (a *appServer) note(key string) {
	a.mu.Lock()
	a.seen[key]++
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// count is how many requests of key ("POST /v1/rooms/{room}/typing", or
// "502 GET /v1/stream" for those answered 502) there were.
func (a *appServer) count(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[key]
}

// waitCount waits until count(key) reaches n.
func (a *appServer) waitCount(key string, n int) {
	a.t.Helper()
	deadline := time.After(browserTimeout)
	for {
		a.mu.Lock()
		got, ch := a.seen[key], a.changed
		a.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			a.t.Fatalf("app server: %d × %s; want %d", got, key, n)
		}
	}
}

// lastStreamQuery is the query of the last stream request forwarded.
func (a *appServer) lastStreamQuery() url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queries) == 0 {
		return nil
	}
	q, _ := url.ParseQuery(a.queries[len(a.queries)-1])
	return q
}

// cut ends every stream going through, as a restarting proxy or a
// network change does.
func (a *appServer) cut() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cancel := range a.cuts {
		cancel()
	}
}

func (a *appServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/test/") {
		a.serveFile(w, r)
		return
	}
	key := route(r)
	if a.down.Load() {
		a.note("502 " + key)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
		return
	}
	if r.URL.Path == "/v1/stream" {
		ctx, cancel := context.WithCancel(r.Context())
		a.mu.Lock()
		id := a.nextCut
		a.nextCut++
		a.cuts[id] = cancel
		a.queries = append(a.queries, r.URL.RawQuery)
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			delete(a.cuts, id)
			a.mu.Unlock()
			cancel()
		}()
		r = r.WithContext(ctx)
	}
	a.note(key)
	if hold := a.hold.Load(); hold != nil && key == hold.route {
		// Herald answers now; its answer arrives later.
		rec := httptest.NewRecorder()
		a.proxy.ServeHTTP(rec, r)
		a.note("held " + key)
		<-hold.release
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	if key == "POST /v1/rooms/{room}/messages" && a.dropAcks.Add(-1) >= 0 {
		// Herald commits the post; its answer is lost on the way back.
		a.proxy.ServeHTTP(httptest.NewRecorder(), r)
		a.note("502 " + key)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	a.proxy.ServeHTTP(w, r)
}

func (a *appServer) serveFile(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if body, ok := a.inline[r.URL.Path]; ok {
		ct := "text/html; charset=utf-8"
		if strings.HasSuffix(r.URL.Path, ".js") {
			ct = "text/javascript; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		io.WriteString(w, body)
		return
	}
	for prefix, dir := range a.files {
		if rest, ok := strings.CutPrefix(r.URL.Path, prefix); ok {
			path := filepath.Join(dir, filepath.FromSlash(rest))
			if strings.HasSuffix(path, ".js") {
				w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			}
			http.ServeFile(w, r, path)
			return
		}
	}
	http.NotFound(w, r)
}

// modulePage is a blank page of the app that imports the client and
// records what each client it is given does.
const modulePage = `<!doctype html>
<meta charset="utf-8">
<title>client test</title>
<body>
<script type="module">
import * as herald from "/client.js";
window.herald = herald;
// track records a client's states, stream events and errors, and makes it
// window[name].
window.track = (name, h) => {
  const rec = { states: [], events: [], errors: [] };
  h.addEventListener("state", (e) => rec.states.push(e.detail.state));
  for (const type of herald.EVENT_TYPES) h.addEventListener(type, (e) => rec.events.push([type, e.detail]));
  h.addEventListener("error", (e) => rec.errors.push(e.detail.code));
  window[name] = h;
  window[name + "Rec"] = rec;
  return h;
};
window.texts = (h, room) => JSON.stringify(h.messages(room).map((m) => m.text));
</script>
`

// openModulePage opens the app's blank page in a new person's browser.
func openModulePage(t *testing.T, app *appServer, name string) *tab {
	t.Helper()
	app.inline["/test/module.html"] = modulePage
	p := person(t, name)
	p.run("open the page", chromedp.Navigate(app.URL+"/test/module.html"))
	p.waitJS("the module", `window.herald?.Herald !== undefined`)
	return p
}

// newClient makes a client named name in the page, with the user's token
// and options (a JS object literal's body), connects it, and waits until it
// is live.
func newClient(p *tab, name, token, options string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(() => {
		window.tokenCalls = window.tokenCalls ?? {};
		const calls = window.tokenCalls[%[1]s] = [];
		const token = %[2]s;
		track(%[1]s, new herald.Herald({ token: ({ refresh }) => (calls.push(refresh), token), backoff: { min: 50, max: 400 }, %[3]s })).connect();
		return null;
	})()`, jsString(name), jsString(token), options), nil)
	p.waitJS(name+" live", name+`.state === "live"`)
}

func TestBrowserClient(t *testing.T) {
	s := startServer(t, nil)
	app := newApp(t, s.URL)
	p := openModulePage(t, app, "page")
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(bob, "general", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", alice, nil, nil)
	newClient(p, "alice", alice, "")
	p.eval(`alice.openRoom(`+jsString(room)+`).then(() => null)`, nil)

	t.Run("reconnects after the browser gives up", func(t *testing.T) {
		p := p.in(t)
		s.post(bob, room, "before")
		p.waitJS("the message before", `texts(alice, `+jsString(room)+`) === '["before"]'`)

		// The proxy answers 502 and drops the stream: EventSource's own
		// reconnect gets the 502 and gives up for good; the client goes on
		// asking for tickets.
		app.down.Store(true)
		app.cut()
		app.waitCount("502 GET /v1/stream", 1)
		app.waitCount("502 POST /v1/stream/tickets", 2)
		p.waitJS("reconnecting", `alice.state === "reconnecting"`)
		var want []string
		for i := range 5 {
			text := fmt.Sprintf("while away %d", i)
			s.post(bob, room, text)
			want = append(want, text)
		}
		app.down.Store(false)
		p.waitJS("live again", `alice.state === "live"`)
		p.waitJS("every message, once, in order", `texts(alice, `+jsString(room)+`) === `+jsString(jsonOf(append([]string{"before"}, want...))))
		var created int
		p.eval(`aliceRec.events.filter(([type]) => type === "message:created").length`, &created)
		if created != 6 {
			t.Errorf("message:created events = %d; want 6, each message once", created)
		}
		q := app.lastStreamQuery()
		if q.Get("ticket") == "" || q.Get("last_event_id") == "" {
			t.Errorf("the stream was reopened with query %v; want a fresh ticket and last_event_id", q)
		}
		var states []string
		p.eval(`aliceRec.states`, &states)
		if s := strings.Join(states, " "); !strings.Contains(s, "live reconnecting") || !strings.HasSuffix(s, "live") {
			t.Errorf("states = %s; want live, reconnecting, ..., live", s)
		}
	})

	t.Run("waits for the network when the browser is offline", func(t *testing.T) {
		p := p.in(t)
		network := func(offline bool) chromedp.Action[chromedp.Void] {
			return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				if _, err := cdp.Call(ctx, tg, cdpnet.Enable, cdpnet.EnableParams{}); err != nil {
					return err
				}
				_, err := cdp.Call(ctx, tg, cdpnet.OverrideNetworkState, cdpnet.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
				return err
			})
		}
		p.run("go offline", network(true))
		p.waitJS("offline", `alice.state === "offline" && navigator.onLine === false`)
		s.post(bob, room, "while offline")
		p.run("come back", network(false))
		p.waitJS("live again, with what was said", `alice.state === "live" && alice.messages(`+jsString(room)+`).at(-1)?.text === "while offline"`)
		var states []string
		p.eval(`aliceRec.states.slice(-3)`, &states)
		if strings.Join(states, " ") != "offline reconnecting live" {
			t.Errorf("last states = %v; want offline, reconnecting, live", states)
		}
	})

	t.Run("a read before the stream is live is not someone else's", func(t *testing.T) {
		p := p.in(t)
		id := s.post(bob, room, "read me")
		var users []string
		p.eval(fmt.Sprintf(`(async () => {
			const h = new herald.Herald({ token: %s });
			await h.markRead(%s, %d);
			const users = Object.keys(h.getSnapshot().receipts[%[2]s] ?? {});
			h.close();
			return users;
		})()`, jsString(alice), jsString(room), id), &users)
		if len(users) != 0 {
			t.Errorf("receipts after a read by a client not yet live = %q; want none, the user is not known yet", users)
		}
	})

	t.Run("asks the app for a fresh token when it is refused", func(t *testing.T) {
		p := p.in(t)
		expired, err := api.Mint(s.secret, "carol", "Carol", -time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		fresh := s.token("carol")
		p.eval(fmt.Sprintf(`(() => {
			const calls = window.carolCalls = [];
			track("carol", new herald.Herald({ token: ({ refresh }) => (calls.push(refresh), refresh ? %s : %s), backoff: { min: 50, max: 400 } })).connect();
			return null;
		})()`, jsString(fresh), jsString(expired)), nil)
		p.waitJS("carol live", `carol.state === "live"`)
		var calls []bool
		p.eval(`carolCalls`, &calls)
		if len(calls) != 2 || calls[0] || !calls[1] {
			t.Errorf("token function called with refresh = %v; want [false true]", calls)
		}
		p.eval(`carol.close()`, nil)
	})

	t.Run("acknowledges posts and retries them with the same client_id", func(t *testing.T) {
		p := p.in(t)
		posts := app.count("POST /v1/rooms/{room}/messages")
		app.dropAcks.Store(1)
		var ack struct {
			ID     int64
			Status int
			Text   string
		}
		p.eval(`alice.send(`+jsString(room)+`, "exactly once").then((m) => ({ id: m.id, status: m.status, text: m.text }))`, &ack)
		if ack.Status != http.StatusOK || ack.Text != "exactly once" {
			t.Errorf("send = %+v; want the original, answered 200 to the retry", ack)
		}
		if n := app.count("POST /v1/rooms/{room}/messages") - posts; n != 2 {
			t.Errorf("posts that reached Herald = %d; want 2, the lost answer and its retry", n)
		}
		var page struct {
			Messages []struct{ ID int64 }
		}
		s.must(http.StatusOK, "GET", "/v1/rooms/"+room+"/messages?after="+fmt.Sprint(ack.ID-1), bob, nil, &page)
		if len(page.Messages) != 1 || page.Messages[0].ID != ack.ID {
			t.Errorf("messages stored from id %d on = %+v; want one", ack.ID, page.Messages)
		}
		p.waitJS("the message shown once", `alice.messages(`+jsString(room)+`).filter((m) => m.text === "exactly once").length === 1 &&
			aliceRec.events.filter(([type, d]) => type === "message:created" && d.text === "exactly once").length === 1 &&
			!alice.getSnapshot().pending[`+jsString(room)+`]`)

		// A refusal rejects with the server's error, and the message stays
		// in the pending list, failed.
		var refused struct {
			Name, Code, Message string
			Status              int
			Pending             string
		}
		p.eval(`alice.send("r_nowhere", "lost").then(() => ({}), (e) => ({ name: e.name, status: e.status, code: e.code, message: e.message,
			pending: alice.getSnapshot().pending["r_nowhere"]?.[0]?.status }))`, &refused)
		if refused.Name != "HeraldError" || refused.Status != http.StatusNotFound || refused.Code != "room_not_found" || refused.Message == "" || refused.Pending != "failed" {
			t.Errorf("send to no room rejected with %+v; want HeraldError 404 room_not_found, the message failed in pending", refused)
		}
	})

	t.Run("edits, deletions and room changes reach the snapshot", func(t *testing.T) {
		p := p.in(t)
		r := jsString(room)
		// Her own edit resolves with the message edited, and the snapshot
		// has it at once.
		var edited struct {
			Text     string
			EditedAt string `json:"edited_at"`
		}
		p.eval(`alice.send(`+r+`, "tpyo").then((m) => alice.editMessage(`+r+`, m.id, "typo"))`, &edited)
		if edited.Text != "typo" || edited.EditedAt == "" {
			t.Errorf("editMessage = %+v; want the new text with edited_at", edited)
		}
		p.waitJS("her edit in the snapshot", `alice.messages(`+r+`).some((m) => m.text === "typo" && m.edited_at)`)

		// Bob's edit, and his deletion of her message as the room's owner,
		// come by the stream.
		id := s.post(bob, room, "bob's draft")
		p.waitJS("bob's draft", `alice.messages(`+r+`).some((m) => m.text === "bob's draft")`)
		s.must(http.StatusOK, "PATCH", fmt.Sprintf("/v1/rooms/%s/messages/%d", room, id), bob, map[string]string{"text": "bob's final"}, nil)
		p.waitJS("his edit", `alice.messages(`+r+`).some((m) => m.id === `+fmt.Sprint(id)+` && m.text === "bob's final" && m.edited_at)`)
		var mine int64
		p.eval(`alice.messages(`+r+`).find((m) => m.text === "typo").id`, &mine)
		s.must(http.StatusOK, "DELETE", fmt.Sprintf("/v1/rooms/%s/messages/%d", room, mine), bob, nil, nil)
		p.waitJS("her message a tombstone", `alice.messages(`+r+`).some((m) => m.id === `+fmt.Sprint(mine)+` && m.deleted_at && m.text === undefined)`)

		// Her own room: she sets its topic, which the snapshot learns from
		// room:updated, reads it back, and closes it.
		var own struct {
			ID, Kind string
		}
		p.eval(`alice.createRoom("her own").then((r) => ({ id: r.id, kind: r.kind }))`, &own)
		o := jsString(own.ID)
		p.waitJS("her room listed", `alice.getSnapshot().rooms.some((r) => r.id === `+o+`)`)
		p.eval(`alice.updateRoom(`+o+`, { topic: "plans" }).then(() => null)`, nil)
		p.waitJS("the topic in the snapshot", `alice.getSnapshot().rooms.find((r) => r.id === `+o+`)?.topic === "plans"`)
		var details struct {
			Topic       string
			MemberCount int `json:"member_count"`
			Member      bool
		}
		p.eval(`alice.room(`+o+`)`, &details)
		if own.Kind != "room" || details.Topic != "plans" || details.MemberCount != 1 || !details.Member {
			t.Errorf("room %+v, details %+v; want a room with topic plans, her its one member", own, details)
		}
		p.eval(`alice.deleteRoom(`+o+`)`, nil)
		p.waitJS("her room gone", `!alice.getSnapshot().rooms.some((r) => r.id === `+o+`)`)

		// A direct conversation: the same room each time, in her list.
		var dm1, dm2 struct {
			ID, Kind string
			Status   int
		}
		p.eval(`alice.dm("bob").then((r) => ({ id: r.id, kind: r.kind, status: r.status }))`, &dm1)
		p.eval(`alice.dm("bob").then((r) => ({ id: r.id, kind: r.kind, status: r.status }))`, &dm2)
		if dm1.Kind != "dm" || dm1.Status != http.StatusCreated || dm2.ID != dm1.ID || dm2.Status != http.StatusOK {
			t.Errorf("dm twice = %+v, %+v; want one DM, 201 then 200", dm1, dm2)
		}
		p.waitJS("the DM listed", `alice.getSnapshot().rooms.some((r) => r.id === `+jsString(dm1.ID)+` && r.kind === "dm" && r.peer?.id === "bob")`)

		// Bob invites her to a private room: she hears of it, lists it,
		// and declines it.
		secret := s.createRoom(bob, "bob's secret", true)
		s.must(http.StatusAccepted, "POST", "/v1/rooms/"+secret+"/members", bob, map[string]string{"user": "alice"}, nil)
		sr := jsString(secret)
		p.waitJS("the invitation on her stream", `aliceRec.events.some(([type, d]) => type === "invitation:created" && d.room === `+sr+` && d.by === "bob")`)
		var invs []struct{ Room, Name string }
		p.eval(`alice.invitations()`, &invs)
		if len(invs) != 1 || invs[0].Room != secret || invs[0].Name != "bob's secret" {
			t.Errorf("invitations() = %+v; want bob's secret room", invs)
		}
		p.eval(`alice.declineInvitation(`+sr+`)`, nil)
		p.waitJS("its end on her stream", `aliceRec.events.some(([type, d]) => type === "invitation:deleted" && d.room === `+sr+` && d.reason === "declined")`)
		p.eval(`alice.invitations()`, &invs)
		if len(invs) != 0 {
			t.Errorf("invitations() after declining = %+v; want none", invs)
		}
	})

	t.Run("keeps what comes while history loads", func(t *testing.T) {
		p := p.in(t)
		room3 := s.createRoom(bob, "slow history", false)
		s.must(http.StatusOK, "POST", "/v1/rooms/"+room3+"/join", alice, nil, nil)
		s.post(bob, room3, "old")
		release := app.holdAnswers("GET /v1/rooms/{room}/messages")
		p.eval(`(window.loading = alice.loadMessages(`+jsString(room3)+`), null)`, nil)
		app.waitCount("held GET /v1/rooms/{room}/messages", 1)
		s.post(bob, room3, "new")
		p.waitJS("the new message on the stream", `aliceRec.events.some(([type, d]) => type === "message:created" && d.text === "new")`)
		release()
		p.eval(`window.loading.then(() => null)`, nil)
		p.waitJS("both, in order", `texts(alice, `+jsString(room3)+`) === '["old","new"]'`)
	})

	t.Run("keeps who joins and leaves while members load", func(t *testing.T) {
		p := p.in(t)
		carol, dave := s.token("carol"), s.token("dave")
		room4 := s.createRoom(bob, "slow members", false)
		r := jsString(room4)
		for _, tok := range []string{alice, carol} {
			s.must(http.StatusOK, "POST", "/v1/rooms/"+room4+"/join", tok, nil, nil)
		}
		// Herald answers bob, alice and carol; then dave joins and carol
		// leaves before the answer reaches the page.
		release := app.holdAnswers("GET /v1/rooms/{room}/members")
		p.eval(`(window.loading = alice.members(`+r+`), null)`, nil)
		app.waitCount("held GET /v1/rooms/{room}/members", 1)
		s.must(http.StatusOK, "POST", "/v1/rooms/"+room4+"/join", dave, nil, nil)
		s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room4+"/leave", carol, nil, nil)
		p.waitJS("both changes on the stream", `aliceRec.events.some(([type, d]) => type === "member:left" && d.room === `+r+` && d.user === "carol")`)
		release()
		p.eval(`window.loading.then(() => null)`, nil)
		var users []string
		p.eval(`alice.getSnapshot().members[`+r+`].map((m) => m.user).sort()`, &users)
		if want := []string{"alice", "bob", "dave"}; !slices.Equal(users, want) {
			t.Errorf("members after the answer = %v; want %v", users, want)
		}
	})

	t.Run("keeps what comes while the rooms list loads", func(t *testing.T) {
		p := p.in(t)
		busy := s.createRoom(bob, "busy", false)
		gone := s.createRoom(bob, "gone", false)
		for _, r := range []string{busy, gone} {
			s.must(http.StatusOK, "POST", "/v1/rooms/"+r+"/join", alice, nil, nil)
		}
		s.post(bob, busy, "first")
		unread := `alice.getSnapshot().rooms.find((r) => r.id === ` + jsString(busy) + `)?.unread`
		p.waitJS("one unread", unread+` === 1`)
		// Herald lists both rooms with one unread; then bob posts again
		// and alice leaves the other room before the answer reaches the page.
		release := app.holdAnswers("GET /v1/rooms")
		p.eval(`(window.loading = alice.rooms(), null)`, nil)
		app.waitCount("held GET /v1/rooms", 1)
		last := s.post(bob, busy, "second")
		s.must(http.StatusNoContent, "POST", "/v1/rooms/"+gone+"/leave", alice, nil, nil)
		p.waitJS("both on the stream", `aliceRec.events.some(([type, d]) => type === "member:left" && d.room === `+jsString(gone)+`)`)
		release()
		p.eval(`window.loading.then(() => null)`, nil)
		var got struct {
			Unread int64 `json:"unread"`
			Last   int64 `json:"last"`
			Gone   bool  `json:"gone"`
		}
		p.eval(`(() => {
			const rooms = alice.getSnapshot().rooms;
			const busy = rooms.find((r) => r.id === `+jsString(busy)+`);
			return { unread: busy.unread, last: busy.last_message?.id ?? 0, gone: rooms.some((r) => r.id === `+jsString(gone)+`) };
		})()`, &got)
		if got.Unread != 2 || got.Last != last || got.Gone {
			t.Errorf("after the answer: unread %d, last message %d, left room listed %v; want 2, %d, false", got.Unread, got.Last, got.Gone, last)
		}
		// Asked again, with nothing on the way, the server agrees.
		p.eval(`alice.rooms().then(() => null)`, nil)
		p.eval(unread, &got.Unread)
		if got.Unread != 2 {
			t.Errorf("unread after a fresh list = %d; want 2", got.Unread)
		}
	})

	t.Run("catches up over REST after a resync", func(t *testing.T) {
		p := p.in(t)
		dave := s.token("dave")
		room2 := s.createRoom(bob, "resync", false)
		s.must(http.StatusOK, "POST", "/v1/rooms/"+room2+"/join", dave, nil, nil)
		newClient(p, "dave", dave, "pageSize: 10")
		r2 := jsString(room2)
		p.eval(`dave.openRoom(`+r2+`).then(() => null)`, nil)
		var all []string
		say := func(n int) {
			for range n {
				text := fmt.Sprintf("m%02d", len(all))
				s.post(bob, room2, text)
				all = append(all, text)
			}
		}
		say(3)
		p.waitJS("the first messages", `texts(dave, `+r2+`) === `+jsString(jsonOf(all)))

		away := func() {
			app.down.Store(true)
			app.cut()
			p.waitJS("dave reconnecting", `dave.state === "reconnecting"`)
		}
		back := func() {
			app.forget.Store(true)
			app.down.Store(false)
		}
		// A short absence: what was missed is fetched after the newest
		// message held.
		resyncs := func() int {
			var n int
			p.eval(`daveRec.events.filter(([type]) => type === "resync").length`, &n)
			return n
		}
		away()
		say(4)
		back()
		p.waitJS("a resync", `daveRec.events.some(([type]) => type === "resync")`)
		p.waitJS("what was missed, once, in order", `texts(dave, `+r2+`) === `+jsString(jsonOf(all)))
		app.forget.Store(false)

		// A long one: more than a page was missed; the newest page
		// replaces what was held, and history pages back without a gap.
		n := resyncs()
		away()
		say(15)
		last := s.post(bob, room2, "m-last")
		all = append(all, "m-last")
		s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room2+"/read", bob, map[string]any{"message_id": last}, nil)
		back()
		p.waitJS("another resync", fmt.Sprintf(`daveRec.events.filter(([type]) => type === "resync").length > %d`, n))
		p.waitJS("the newest page", `texts(dave, `+r2+`) === `+jsString(jsonOf(all[len(all)-10:]))+` && dave.getSnapshot().hasMore[`+r2+`] === true`)
		p.waitJS("bob's receipt", fmt.Sprintf(`dave.getSnapshot().receipts[%s]?.bob === %d`, r2, last))
		app.forget.Store(false)
		p.eval(`(async () => { while (await dave.loadOlder(`+r2+`)); return null; })()`, nil)
		p.waitJS("all of it, once, in order", `texts(dave, `+r2+`) === `+jsString(jsonOf(all)))
		p.eval(`dave.close()`, nil)
	})

	t.Run("throttles typing and stops it on send", func(t *testing.T) {
		p := p.in(t)
		erin := s.token("erin")
		s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", erin, nil, nil)
		watch := s.stream(bob, "")
		newClient(p, "erin", erin, "typingInterval: 60000, typingIdle: 60000")
		key := "POST /v1/rooms/{room}/typing"
		before := app.count(key)
		r := jsString(room)
		p.eval(`(() => { for (let i = 0; i < 50; i++) erin.typing(`+r+`); return null; })()`, nil)
		watch.WaitFor("typing:started")
		p.eval(`erin.typing(`+r+`, false)`, nil)
		watch.WaitFor("typing:stopped")
		if n := app.count(key) - before; n != 2 {
			t.Errorf("typing calls = %d for 50 keystrokes and a stop; want 2", n)
		}
		p.eval(`(erin.typing(`+r+`), erin.send(`+r+`, "typed").then(() => null))`, nil)
		watch.WaitFor("typing:started")
		watch.WaitFor("typing:stopped")
		if n := app.count(key) - before; n != 3 {
			t.Errorf("typing calls = %d after a keystroke and a send; want 3: the send stops typing by itself", n)
		}
		p.eval(`erin.close()`, nil)
	})

	t.Run("close stops every timer, listener, stream and request", func(t *testing.T) {
		// A page of its own, so that only this client's timers count.
		p := openModulePage(t, app, "close")
		frank := s.token("frank")
		s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", frank, nil, nil)
		p.eval(`(() => {
			const timers = window.timers = new Set();
			const st = window.setTimeout, ct = window.clearTimeout;
			// The client's timers: those set from /client.js.
			window.setTimeout = (f, ms, ...args) => {
				const id = st(() => { timers.delete(id); f(...args); }, ms);
				if (new Error().stack.includes("/client.js")) timers.add(id);
				return id;
			};
			window.clearTimeout = (id) => { timers.delete(id); ct(id); };
			const listeners = window.listeners = new Map();
			const add = window.addEventListener.bind(window), remove = window.removeEventListener.bind(window);
			window.addEventListener = (type, fn, o) => { listeners.set(type, (listeners.get(type) ?? 0) + 1); add(type, fn, o); };
			window.removeEventListener = (type, fn, o) => { listeners.set(type, (listeners.get(type) ?? 0) - 1); remove(type, fn, o); };
			window.sources = [];
			window.Tracked = class extends EventSource { constructor(...a) { super(...a); sources.push(this); } };
			return null;
		})()`, nil)
		newClient(p, "frank", frank, "EventSource: Tracked")
		r := jsString(room)
		p.eval(`frank.openRoom(`+r+`).then(() => null)`, nil)
		p.eval(`(frank.typing(`+r+`), null)`, nil) // its idle timer runs
		// Away: the client waits to retry.
		app.down.Store(true)
		app.cut()
		p.waitJS("frank reconnecting", `frank.state === "reconnecting" && timers.size > 0`)
		var after struct {
			State     string
			Timers    int
			Listeners map[string]int
			Open      int
		}
		p.eval(`(() => {
			frank.close();
			return { state: frank.state, timers: timers.size, listeners: Object.fromEntries(listeners), open: sources.filter((s) => s.readyState !== 2).length };
		})()`, &after)
		app.down.Store(false)
		if after.State != "closed" || after.Timers != 0 || after.Open != 0 || after.Listeners["online"] != 0 || after.Listeners["offline"] != 0 {
			t.Errorf("after close: %+v; want closed, no timer, no open EventSource, no online or offline listener", after)
		}
	})
}

// in returns the tab for a subtest: failures and screenshots go to it.
func (p *tab) in(t *testing.T) *tab {
	q := *p
	q.t = t
	t.Cleanup(func() {
		if t.Failed() {
			q.screenshot()
		}
	})
	return &q
}

// TestBrowserClientBigRoom: in a room over the server's presence limit the
// client keeps the online count from room:online in its snapshot, and when
// the room shrinks back to the limit it refetches the members' presence,
// which changed unseen meanwhile.
func TestBrowserClientBigRoom(t *testing.T) {
	s := startServer(t, map[string]string{
		"HERALD_PRESENCE_ROOM_LIMIT": "2", "HERALD_PRESENCE_COUNT_INTERVAL": "30ms",
		"HERALD_PRESENCE_BATCH": "20ms", "HERALD_PRESENCE_GRACE": "100ms",
	})
	app := newApp(t, s.URL)
	p := openModulePage(t, app, "page")
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	room := s.createRoom(alice, "big", false)
	joinRoom(t, s, bob, room)
	joinRoom(t, s, carol, room)
	r := jsString(room)

	newClient(p, "alice", alice, "")
	p.eval(`alice.openRoom(`+r+`).then(() => null)`, nil)
	p.waitJS("the count of the room over the limit", `alice.getSnapshot().online[`+r+`]?.presence === false && alice.getSnapshot().online[`+r+`].online === 1`)

	// Bob comes online unseen: counted, not told. A stream of alice's
	// beside the page's shows what the server sends her; the page's
	// snapshot may hold bob's presence anyway, from the members list its
	// first catch-up fetched (a list answers for everyone in the room),
	// when that answer came after bob's stream opened.
	watch := s.stream(alice, "")
	defer watch.Close()
	b := s.stream(bob, "")
	defer b.Close()
	p.waitJS("bob counted", `alice.getSnapshot().online[`+r+`]?.online === 2`)
	for f := watch.Next(); f.Event != "room:online" || !strings.Contains(f.Data, `"online":2`); f = watch.Next() {
		if f.Event == "presence:changed" && strings.Contains(f.Data, `"user":"bob"`) {
			t.Fatalf("alice was told bob's presence in a room over the limit: %s", f.Data)
		}
	}

	// Carol leaves: two members, presence comes again, and the client
	// refetches the members' presence it did not hear.
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/leave", carol, nil, nil)
	p.waitJS("presence on again", `alice.getSnapshot().online[`+r+`]?.presence === true`)
	p.waitJS("bob's presence refetched", `alice.getSnapshot().presence.bob?.status === "online"`)
}
