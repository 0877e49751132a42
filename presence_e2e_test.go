package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
)

// Presence, typing and read receipts, end to end over HTTP and SSE.
//
// Ephemeral events take different paths through the server: presence goes
// through the presence tracker's announcer, typing is queued by the typing
// request itself, and receipts go through the log like messages. A check
// that something did NOT happen waits for a later marker that takes the same
// path, so the missing event would have arrived before it.

// presenceInfo is the data of presence:changed and an entry of GET /v1/presence.
type presenceInfo struct {
	User     string     `json:"user"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen"`
}

// expectPresence reads the next event of c, which must be presence:changed
// about user with status, and returns its data.
func expectPresence(t *testing.T, c *streamtest.Client, name, user, status string) presenceInfo {
	t.Helper()
	f := c.Next()
	if f.Event != event.PresenceChanged {
		t.Fatalf("%s: next event = %s %s; want presence:changed %s %s", name, f.Event, f.Data, user, status)
	}
	if f.HasID {
		t.Fatalf("%s: presence:changed has id %q; want none (ephemeral)", name, f.ID)
	}
	var p presenceInfo
	if err := json.Unmarshal([]byte(f.Data), &p); err != nil {
		t.Fatalf("%s: decode presence:changed %q: %v", name, f.Data, err)
	}
	if p.User != user || p.Status != status {
		t.Fatalf("%s: presence:changed = %s; want user %s status %s", name, f.Data, user, status)
	}
	switch {
	case status == "offline" && p.LastSeen == nil:
		t.Fatalf("%s: presence:changed = %s; want last_seen set when offline", name, f.Data)
	case status != "offline" && p.LastSeen != nil:
		t.Fatalf("%s: presence:changed = %s; want last_seen null while connected", name, f.Data)
	}
	return p
}

// presenceUntil reads presence:changed events of c up to and including the
// one about user with status, and returns them as "user:status".
func presenceUntil(t *testing.T, c *streamtest.Client, name, user, status string) []string {
	t.Helper()
	var got []string
	for {
		f := c.Next()
		if f.Event != event.PresenceChanged {
			t.Fatalf("%s: event %s %s while waiting for presence %s %s (so far %v)", name, f.Event, f.Data, user, status, got)
		}
		var p presenceInfo
		if err := json.Unmarshal([]byte(f.Data), &p); err != nil {
			t.Fatalf("%s: decode presence:changed %q: %v", name, f.Data, err)
		}
		got = append(got, p.User+":"+p.Status)
		if p.User == user && p.Status == status {
			return got
		}
	}
}

// statusMarker changes a connected user's explicit status on every fire, so
// that each call announces one presence change through the same ordered
// announcer as every other presence change.
type statusMarker struct {
	s     *testServer
	token string
	user  string
	n     int
}

func (m *statusMarker) fire() (user, status string) {
	m.s.t.Helper()
	status = [...]string{"away", "dnd"}[m.n%2]
	m.n++
	m.s.must(http.StatusNoContent, "POST", "/v1/presence", m.token, map[string]string{"status": status}, nil)
	return m.user, status
}

// waitStreamsOpen waits until the server counts n open streams: a stream the
// client closed is then unregistered, and its presence effects queued.
func waitStreamsOpen(t *testing.T, s *testServer, n int) {
	t.Helper()
	deadline := time.Now().Add(streamtest.Timeout)
	last := -1
	for time.Now().Before(deadline) {
		status, body := s.do("GET", "/metrics", "", nil)
		if status != http.StatusOK {
			t.Fatalf("GET /metrics = %d %s; want 200", status, body)
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "herald_streams_open "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("herald_streams_open %q: %v", v, err)
				}
				last = int(f)
			}
		}
		if last == n {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not guessing a delay
	}
	t.Fatalf("herald_streams_open = %d; want %d within %v", last, n, streamtest.Timeout)
}

// getPresence answers GET /v1/presence for users as seen by token's user.
func getPresence(t *testing.T, s *testServer, token string, users ...string) []presenceInfo {
	t.Helper()
	q := url.Values{"user": users}
	var out struct{ Presence []presenceInfo }
	s.must(http.StatusOK, "GET", "/v1/presence?"+q.Encode(), token, nil, &out)
	if len(out.Presence) != len(users) {
		t.Fatalf("GET /v1/presence?%s = %d entries; want %d", q.Encode(), len(out.Presence), len(users))
	}
	for i, p := range out.Presence {
		if p.User != users[i] {
			t.Fatalf("GET /v1/presence?%s entry %d = %s; want %s", q.Encode(), i, p.User, users[i])
		}
	}
	return out.Presence
}

type memberPresence struct {
	User     string     `json:"user"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen"`
}

// memberPresences answers GET /v1/rooms/{room}/members as user → member.
func memberPresences(t *testing.T, s *testServer, token, room string) map[string]memberPresence {
	t.Helper()
	var out struct{ Members []memberPresence }
	s.must(http.StatusOK, "GET", "/v1/rooms/"+room+"/members", token, nil, &out)
	m := map[string]memberPresence{}
	for _, mb := range out.Members {
		m[mb.User] = mb
	}
	return m
}

// checkPresence fails unless p has status and last_seen as wanted; a nil
// wantSeen means last_seen must be null.
func checkPresence(t *testing.T, what string, status string, lastSeen *time.Time, wantStatus string, wantSeen *time.Time) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("%s status = %q; want %q", what, status, wantStatus)
	}
	switch {
	case wantSeen == nil && lastSeen != nil:
		t.Errorf("%s last_seen = %v; want null", what, *lastSeen)
	case wantSeen != nil && lastSeen == nil:
		t.Errorf("%s last_seen = null; want %v", what, *wantSeen)
	case wantSeen != nil && !lastSeen.Equal(*wantSeen):
		t.Errorf("%s last_seen = %v; want %v (as announced)", what, *lastSeen, *wantSeen)
	}
}

func joinRoom(t *testing.T, s *testServer, token, room string) {
	t.Helper()
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", token, nil, nil)
}

// TestPresenceDevices follows two users with two devices each: online once
// on the first stream, nothing for the second device or for closing one,
// offline with last_seen after the last one closes; REST agrees.
func TestPresenceDevices(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "150ms", "HERALD_TYPING_TIMEOUT": "200ms"})
	alice, bob, mark := s.token("alice"), s.token("bob"), s.token("mark")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	joinRoom(t, s, mark, room)
	marker := &statusMarker{s: s, token: mark, user: "mark"}

	// Before anyone connects: offline, never seen.
	for _, p := range getPresence(t, s, alice, "bob", "mark") {
		checkPresence(t, "GET /v1/presence "+p.User+" before connecting", p.Status, p.LastSeen, "offline", nil)
	}

	m1 := s.stream(mark, "")
	expectPresence(t, m1, "mark#1", "mark", "online")

	a1 := s.stream(alice, "")
	expectPresence(t, a1, "alice#1", "alice", "online")
	a2 := s.stream(alice, "") // second device: already online, nothing to announce
	b1 := s.stream(bob, "")
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "bob#1": b1} {
		expectPresence(t, c, name, "bob", "online")
	}
	b2 := s.stream(bob, "")
	u, st := marker.fire()
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "bob#1": b1, "bob#2": b2} {
		expectPresence(t, c, name+" (second devices announce nothing)", u, st)
	}

	for _, p := range getPresence(t, s, alice, "alice", "bob") {
		checkPresence(t, "GET /v1/presence "+p.User+" while connected", p.Status, p.LastSeen, "online", nil)
	}
	members := memberPresences(t, s, bob, room)
	for user, status := range map[string]string{"alice": "online", "bob": "online", "mark": st} {
		checkPresence(t, "members "+user+" while connected", members[user].Status, members[user].LastSeen, status, nil)
	}

	// Closing one of two devices announces nothing.
	b2.Close()
	waitStreamsOpen(t, s, 4)
	u, st = marker.fire()
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "bob#1": b1} {
		expectPresence(t, c, name+" (closing one device announces nothing)", u, st)
	}
	if p := getPresence(t, s, alice, "bob")[0]; p.Status != "online" {
		t.Fatalf("GET /v1/presence bob with one device left = %q; want online", p.Status)
	}

	// Closing the last one: offline after the grace period, with last_seen.
	b1.Close()
	var seen *time.Time
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2} {
		seen = expectPresence(t, c, name, "bob", "offline").LastSeen
	}
	bp := getPresence(t, s, alice, "bob")[0]
	checkPresence(t, "GET /v1/presence bob after the last stream closed", bp.Status, bp.LastSeen, "offline", seen)
	members = memberPresences(t, s, alice, room)
	checkPresence(t, "members bob after the last stream closed", members["bob"].Status, members["bob"].LastSeen, "offline", seen)
	checkPresence(t, "members alice", members["alice"].Status, members["alice"].LastSeen, "online", nil)

	// The same for alice, observed by mark, whose stream saw every change
	// exactly once.
	a2.Close()
	waitStreamsOpen(t, s, 2)
	u, st = marker.fire()
	expectPresence(t, a1, "alice#1 (closing one device announces nothing)", u, st)
	a1.Close()
	got := presenceUntil(t, m1, "mark#1", "alice", "offline")
	want := []string{"alice:online", "bob:online", "mark:away", "mark:dnd", "bob:offline", "mark:away", "alice:offline"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mark#1 presence events = %v; want %v", got, want)
	}
	ap := getPresence(t, s, mark, "alice")[0]
	if ap.Status != "offline" || ap.LastSeen == nil {
		t.Fatalf("GET /v1/presence alice after the last stream closed = %+v; want offline with last_seen", ap)
	}
}

// TestPresenceReloadNoFlicker closes a user's only stream and opens a new one
// within the grace period (a page reload): peers see neither offline nor
// online.
//
// Only the server's clock says whether the reload came within the grace
// period; the test checks it from outside, where the time from closing the
// stream to the new one's ready contains the server's. When a loaded
// machine took longer, the run says nothing, and the test runs again on a
// new server with a grace period twice as long.
func TestPresenceReloadNoFlicker(t *testing.T) {
	const longest = 8 * time.Second
	for grace := 500 * time.Millisecond; ; grace *= 2 {
		if presenceReload(t, grace) {
			return
		}
		if grace >= longest {
			t.Fatalf("reopening a stream took longer than %v, every time", longest)
		}
		t.Logf("reopening a stream took longer than the grace period, %v; again with %v", grace, 2*grace)
	}
}

// presenceReload runs TestPresenceReloadNoFlicker with a grace period, and
// reports false when the reload did not come within it.
func presenceReload(t *testing.T, grace time.Duration) (within bool) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": grace.String(), "HERALD_TYPING_TIMEOUT": "1m"})
	defer s.stop()
	alice, bob, zed := s.token("alice"), s.token("bob"), s.token("zed")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	joinRoom(t, s, zed, room)

	b1 := s.stream(bob, "")
	expectPresence(t, b1, "bob#1", "bob", "online")
	a1 := s.stream(alice, "")
	expectPresence(t, b1, "bob#1", "alice", "online")
	z1 := s.stream(zed, "")
	expectPresence(t, b1, "bob#1", "zed", "online")

	// Alice types, so that her last stream closing is visible to bob as
	// typing:stopped: from then on her grace period runs.
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/typing", alice, map[string]bool{"typing": true}, nil)
	b1.Expect(event.TypingStarted)
	closed := time.Now()
	a1.Close()
	b1.Expect(event.TypingStopped)
	a2 := s.stream(alice, "") // the reload, within the grace period
	if time.Since(closed) >= grace {
		return false
	}

	// Zed's grace period starts after alice's and lasts as long: his offline
	// comes after the moment alice's offline would have.
	z1.Close()
	for name, c := range map[string]*streamtest.Client{"bob#1": b1, "alice#2": a2} {
		expectPresence(t, c, name+" (a reload within the grace period announces nothing)", "zed", "offline")
	}
	if p := getPresence(t, s, bob, "alice")[0]; p.Status != "online" || p.LastSeen != nil {
		t.Fatalf("GET /v1/presence alice after a reload = %+v; want online, last_seen null", p)
	}
	return true
}

// TestPresenceOncePerChange checks that a user who shares three rooms with
// the subject gets each change once on each stream, and a user who shares
// none never gets it; GET /v1/presence hides such users like nonexistent ones.
func TestPresenceOncePerChange(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "150ms", "HERALD_TYPING_TIMEOUT": "200ms"})
	alice, carol, dave, erin := s.token("alice"), s.token("carol"), s.token("dave"), s.token("erin")
	for i := range 3 {
		room := s.createRoom(alice, fmt.Sprintf("shared %d", i), false)
		joinRoom(t, s, carol, room)
		if i == 0 {
			joinRoom(t, s, erin, room)
		}
	}
	apart := s.createRoom(dave, "apart", false) // dave shares a room with erin only
	joinRoom(t, s, erin, apart)
	marker := &statusMarker{s: s, token: erin, user: "erin"}

	c1 := s.stream(carol, "")
	expectPresence(t, c1, "carol#1", "carol", "online")
	c2 := s.stream(carol, "")
	d1 := s.stream(dave, "")
	expectPresence(t, d1, "dave#1", "dave", "online")
	e1 := s.stream(erin, "")
	expectPresence(t, d1, "dave#1", "erin", "online")

	a1 := s.stream(alice, "")
	expectPresence(t, a1, "alice#1", "alice", "online")
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "away"}, nil)
	expectPresence(t, a1, "alice#1", "alice", "away")
	a1.Close()
	got := presenceUntil(t, e1, "erin#1", "alice", "offline")
	want := []string{"erin:online", "alice:online", "alice:away", "alice:offline"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("erin#1 presence events = %v; want %v", got, want)
	}
	mu, ms := marker.fire() // erin away: after alice's three changes
	for name, c := range map[string]*streamtest.Client{"carol#1": c1, "carol#2": c2} {
		got := presenceUntil(t, c, name, mu, ms)
		want := []string{"erin:online", "alice:online", "alice:away", "alice:offline", "erin:away"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s presence events (three shared rooms) = %v; want each change once: %v", name, got, want)
		}
	}
	expectPresence(t, d1, "dave#1 (shares no room with alice)", mu, ms)

	// GET /v1/presence: a user who shares no room reads exactly like one who
	// does not exist.
	_, hidden := s.do("GET", "/v1/presence?user=alice", dave, nil)
	_, missing := s.do("GET", "/v1/presence?user=nobody", dave, nil)
	for _, tc := range []struct {
		name, query string
	}{
		{"shares no room", "user=alice"},
		{"does not exist", "user=nobody"},
		{"one of two shares no room", "user=erin&user=alice"},
	} {
		status, body := s.do("GET", "/v1/presence?"+tc.query, dave, nil)
		if status != http.StatusNotFound || errorCode(t, body) != "user_not_found" {
			t.Errorf("GET /v1/presence?%s (%s) = %d %s; want 404 user_not_found", tc.query, tc.name, status, body)
		}
	}
	if !bytes.Equal(hidden, missing) {
		t.Errorf("GET /v1/presence: hidden user body %s differs from nonexistent user body %s", hidden, missing)
	}
	self := getPresence(t, s, dave, "dave")[0]
	checkPresence(t, "GET /v1/presence self", self.Status, self.LastSeen, "online", nil)
	ps := getPresence(t, s, carol, "alice", "erin")
	if ps[0].Status != "offline" || ps[0].LastSeen == nil {
		t.Errorf("GET /v1/presence alice by carol = %+v; want offline with last_seen", ps[0])
	}
	checkPresence(t, "GET /v1/presence erin by carol", ps[1].Status, ps[1].LastSeen, "away", nil)

	many := url.Values{}
	for i := range 101 {
		many.Add("user", fmt.Sprintf("u%d", i))
	}
	for _, tc := range []struct{ name, query string }{
		{"no user", ""},
		{"101 users", "?" + many.Encode()},
	} {
		status, body := s.do("GET", "/v1/presence"+tc.query, carol, nil)
		if status != http.StatusUnprocessableEntity || errorCode(t, body) != "invalid_parameter" {
			t.Errorf("GET /v1/presence (%s) = %d %s; want 422 invalid_parameter", tc.name, status, body)
		}
	}
}

// TestPresenceStatus sets explicit statuses: they need an open stream, reach
// peers once, and are cleared when the user goes offline.
func TestPresenceStatus(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "150ms", "HERALD_TYPING_TIMEOUT": "200ms"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)

	status, body := s.do("POST", "/v1/presence", alice, map[string]string{"status": "away"})
	if status != http.StatusConflict || errorCode(t, body) != "not_connected" {
		t.Fatalf("POST /v1/presence away without a stream = %d %s; want 409 not_connected", status, body)
	}

	b1 := s.stream(bob, "")
	expectPresence(t, b1, "bob#1", "bob", "online")
	a1 := s.stream(alice, "")
	expectPresence(t, b1, "bob#1", "alice", "online")

	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"offline", `{"status":"offline"}`, http.StatusUnprocessableEntity},
		{"unknown", `{"status":"busy"}`, http.StatusUnprocessableEntity},
		{"upper case", `{"status":"AWAY"}`, http.StatusUnprocessableEntity},
		{"empty", `{"status":""}`, http.StatusUnprocessableEntity},
		{"missing", `{}`, http.StatusUnprocessableEntity},
		{"number", `{"status":1}`, http.StatusUnprocessableEntity},
		{"malformed", `{"status":`, http.StatusBadRequest},
	} {
		if status, body := s.do("POST", "/v1/presence", alice, tc.body); status != tc.want {
			t.Errorf("POST /v1/presence %s (%s) = %d %s; want %d", tc.body, tc.name, status, body, tc.want)
		}
	}

	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "away"}, nil)
	expectPresence(t, b1, "bob#1 (invalid statuses announce nothing)", "alice", "away")
	if p := getPresence(t, s, bob, "alice")[0]; p.Status != "away" {
		t.Errorf("GET /v1/presence alice after away = %q; want away", p.Status)
	}
	if mb := memberPresences(t, s, bob, room)["alice"]; mb.Status != "away" {
		t.Errorf("members alice after away = %q; want away", mb.Status)
	}
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "away"}, nil) // no change
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "dnd"}, nil)
	expectPresence(t, b1, "bob#1 (the same status again announces nothing)", "alice", "dnd")

	a1.Close()
	expectPresence(t, b1, "bob#1", "alice", "offline")
	status, body = s.do("POST", "/v1/presence", alice, map[string]string{"status": "away"})
	if status != http.StatusConflict || errorCode(t, body) != "not_connected" {
		t.Fatalf("POST /v1/presence away after going offline = %d %s; want 409 not_connected", status, body)
	}

	a2 := s.stream(alice, "")
	expectPresence(t, b1, "bob#1 (explicit status cleared by going offline)", "alice", "online")
	expectPresence(t, a2, "alice#2", "alice", "online")
	if p := getPresence(t, s, bob, "alice")[0]; p.Status != "online" || p.LastSeen != nil {
		t.Errorf("GET /v1/presence alice back online = %+v; want online, last_seen null", p)
	}
}

// TestPresenceFollowsMembership changes a connected user's rooms and checks
// that their presence reaches exactly the members of their rooms of the
// moment: the audience of a connected user comes from the stream index,
// which membership events keep up to date.
func TestPresenceFollowsMembership(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	lobby := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, lobby)
	side := s.createRoom(carol, "side", false)

	c := s.stream(carol, "")
	expectPresence(t, c, "carol", "carol", "online")
	b := s.stream(bob, "")
	presenceUntil(t, b, "bob", "bob", "online")
	a := s.stream(alice, "")
	presenceUntil(t, b, "bob", "alice", "online")
	marker := &statusMarker{s: s, token: carol, user: "carol"}

	// memberEvent skips presence and waits for alice's own member event:
	// once her stream has it, the index has it.
	memberEvent := func(typ string) {
		t.Helper()
		if f := nextEvent(t, a); f.Event != typ {
			t.Fatalf("alice: next event = %s %s; want %s", f.Event, f.Data, typ)
		}
	}
	joinRoom(t, s, alice, side)
	memberEvent("member:joined")
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "away"}, nil)
	expectPresence(t, b, "bob (shares lobby)", "alice", "away")
	if f := nextEvent(t, c); f.Event != "member:joined" {
		t.Fatalf("carol: next event = %s %s; want alice's member:joined", f.Event, f.Data)
	}
	presenceUntil(t, c, "carol (shares side since the join)", "alice", "away")

	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+side+"/leave", alice, nil, nil)
	memberEvent("member:left")
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "dnd"}, nil)
	expectPresence(t, b, "bob (still shares lobby)", "alice", "dnd")
	if f := nextEvent(t, c); f.Event != "member:left" {
		t.Fatalf("carol: next event = %s %s; want alice's member:left", f.Event, f.Data)
	}
	user, status := marker.fire()
	expectPresence(t, c, "carol (no longer shares a room with alice)", user, status)
}

// errorCode returns the code of an error answer; a body that is not one
// fails the test.
func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct{ Code string }
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error answer %q is not JSON: %v", body, err)
	}
	return e.Error.Code
}

// decodeData decodes an event's JSON data into v; data that is not JSON
// fails the test.
func decodeData(t *testing.T, f stream.Frame, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(f.Data), v); err != nil {
		t.Fatalf("%s data %q is not JSON: %v", f.Event, f.Data, err)
	}
}

// nextEvent returns the next event of c other than presence:changed, whose
// timing the typing and receipt tests do not control.
func nextEvent(t *testing.T, c *streamtest.Client) stream.Frame {
	t.Helper()
	for {
		if f := c.Next(); f.Event != event.PresenceChanged {
			return f
		}
	}
}

type typingInfo struct {
	Room string `json:"room"`
	User string `json:"user"`
	Name string `json:"name"`
}

// expectTyping reads the next non-presence event of c, which must be typ
// (typing:started or typing:stopped) about user in room, without an id.
func expectTyping(t *testing.T, c *streamtest.Client, name, typ, room, user string) {
	t.Helper()
	f := nextEvent(t, c)
	checkTyping(t, name, f, typ, room, user)
}

func checkTyping(t *testing.T, name string, f stream.Frame, typ, room, user string) {
	t.Helper()
	if f.Event != typ {
		t.Fatalf("%s: next event = %s %s; want %s by %s", name, f.Event, f.Data, typ, user)
	}
	if f.HasID {
		t.Fatalf("%s: %s has id %q; want none (ephemeral)", name, typ, f.ID)
	}
	var ti typingInfo
	if err := json.Unmarshal([]byte(f.Data), &ti); err != nil {
		t.Fatalf("%s: decode %s %q: %v", name, typ, f.Data, err)
	}
	wantName := strings.ToUpper(user[:1]) + user[1:]
	if ti.Room != room || ti.User != user || ti.Name != wantName {
		t.Fatalf("%s: %s = %s; want room %s user %s name %s", name, typ, f.Data, room, user, wantName)
	}
}

// expectMessage reads the next non-presence event of c, which must be the
// message:created of id.
func expectMessage(t *testing.T, c *streamtest.Client, name string, id int64) {
	t.Helper()
	f := nextEvent(t, c)
	var m struct{ ID int64 }
	if f.Event == "message:created" {
		decodeData(t, f, &m)
	}
	if f.Event != "message:created" || m.ID != id {
		t.Fatalf("%s: next event = %s %s; want message:created %d", name, f.Event, f.Data, id)
	}
}

func setTyping(t *testing.T, s *testServer, token, room string, typing bool) {
	t.Helper()
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/typing", token, map[string]bool{"typing": typing}, nil)
}

// TestTypingStartStop covers every way typing stops except the timeout, with
// a timeout and a grace period long enough that neither can be the cause.
func TestTypingStartStop(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "1m", "HERALD_TYPING_TIMEOUT": "1m"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	a1 := s.stream(alice, "")
	b1 := s.stream(bob, "")

	t.Run("started reaches others, not the typist", func(t *testing.T) {
		setTyping(t, s, alice, room, true)
		expectTyping(t, b1, "bob#1", event.TypingStarted, room, "alice")
		// Typing events are queued before the request answers: bob's start
		// would follow alice's own if she had been sent it.
		setTyping(t, s, bob, room, true)
		expectTyping(t, a1, "alice#1 (the typist's own start is not echoed)", event.TypingStarted, room, "bob")
		setTyping(t, s, bob, room, false)
		expectTyping(t, a1, "alice#1", event.TypingStopped, room, "bob")
	})

	t.Run("repeated start is throttled", func(t *testing.T) {
		setTyping(t, s, alice, room, true) // alice is still typing: no new event
		setTyping(t, s, alice, room, true)
		marker := s.post(bob, room, "marker")
		expectMessage(t, b1, "bob#1 (repeated typing announces nothing)", marker)
		expectMessage(t, a1, "alice#1", marker)
	})

	t.Run("explicit stop", func(t *testing.T) {
		setTyping(t, s, alice, room, false)
		expectTyping(t, b1, "bob#1", event.TypingStopped, room, "alice")
		setTyping(t, s, alice, room, false) // not typing: nothing to stop
		marker := s.post(bob, room, "marker")
		expectMessage(t, b1, "bob#1 (a second stop announces nothing)", marker)
		expectMessage(t, a1, "alice#1", marker)
	})

	t.Run("message stops", func(t *testing.T) {
		setTyping(t, s, alice, room, true)
		expectTyping(t, b1, "bob#1", event.TypingStarted, room, "alice")
		id := s.post(alice, room, "done typing")
		// The stop is queued by the request, the message by the log: either
		// may come first.
		var stopped, created bool
		for range 2 {
			f := nextEvent(t, b1)
			switch f.Event {
			case event.TypingStopped:
				checkTyping(t, "bob#1", f, event.TypingStopped, room, "alice")
				stopped = true
			case "message:created":
				var m struct{ ID int64 }
				if decodeData(t, f, &m); m.ID != id {
					t.Fatalf("bob#1: message:created %s; want id %d", f.Data, id)
				}
				created = true
			default:
				t.Fatalf("bob#1: event %s %s; want typing:stopped and message:created", f.Event, f.Data)
			}
		}
		if !stopped || !created {
			t.Fatalf("bob#1 after alice's message: typing:stopped %v, message:created %v; want both", stopped, created)
		}
		expectMessage(t, a1, "alice#1", id)
	})

	t.Run("last stream closing stops", func(t *testing.T) {
		a2 := s.stream(alice, "")
		setTyping(t, s, alice, room, true)
		expectTyping(t, b1, "bob#1", event.TypingStarted, room, "alice")
		a2.Close()
		waitStreamsOpen(t, s, 2)
		setTyping(t, s, bob, room, true) // marker for both: alice still has a stream
		expectTyping(t, a1, "alice#1", event.TypingStarted, room, "bob")
		setTyping(t, s, bob, room, false)
		expectTyping(t, a1, "alice#1", event.TypingStopped, room, "bob")
		marker := s.post(bob, room, "marker")
		expectMessage(t, b1, "bob#1 (closing one of two streams does not stop typing)", marker)
		a1.Close()
		// The grace period is a minute: this stop is not presence's offline.
		expectTyping(t, b1, "bob#1", event.TypingStopped, room, "alice")
	})
}

// TestTypingTimeout lets a typing indicator expire.
func TestTypingTimeout(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "1m", "HERALD_TYPING_TIMEOUT": "200ms"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	s.stream(alice, "")
	b1 := s.stream(bob, "")

	setTyping(t, s, alice, room, true)
	expectTyping(t, b1, "bob#1", event.TypingStarted, room, "alice")
	expectTyping(t, b1, "bob#1 (timeout)", event.TypingStopped, room, "alice")
	// After the timeout alice may start again.
	setTyping(t, s, alice, room, true)
	expectTyping(t, b1, "bob#1", event.TypingStarted, room, "alice")
	expectTyping(t, b1, "bob#1 (timeout)", event.TypingStopped, room, "alice")
}

// TestTypingRefused covers who may type where, and the body's shape.
func TestTypingRefused(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "150ms", "HERALD_TYPING_TIMEOUT": "1m"})
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	b1 := s.stream(bob, "")

	for _, tc := range []struct {
		name, token, room, body string
		want                    int
		code                    string
	}{
		{"non-member", carol, room, `{"typing":true}`, http.StatusForbidden, "not_member"},
		{"non-member stop", carol, room, `{"typing":false}`, http.StatusForbidden, "not_member"},
		{"unknown room", alice, "r_nope", `{"typing":true}`, http.StatusNotFound, "room_not_found"},
		{"string", alice, room, `{"typing":"yes"}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"number", alice, room, `{"typing":1}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"null", alice, room, `{"typing":null}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"missing", alice, room, `{}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"malformed", alice, room, `{"typing":`, http.StatusBadRequest, "malformed_json"},
		{"empty body", alice, room, ``, http.StatusBadRequest, "malformed_json"},
	} {
		status, body := s.do("POST", "/v1/rooms/"+tc.room+"/typing", tc.token, tc.body)
		if status != tc.want || errorCode(t, body) != tc.code {
			t.Errorf("POST typing %s (%s) = %d %s; want %d %s", tc.body, tc.name, status, body, tc.want, tc.code)
		}
	}
	marker := s.post(alice, room, "marker")
	expectMessage(t, b1, "bob#1 (refused typing announces nothing)", marker)
}

// TestTypingNotReplayed reconnects with Last-Event-ID past live and missed
// typing events: only logged events come back.
func TestTypingNotReplayed(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "1m", "HERALD_TYPING_TIMEOUT": "1m"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	s.stream(alice, "")
	b1 := s.stream(bob, "")

	first := s.post(alice, room, "before typing")
	expectMessage(t, b1, "bob#1", first)
	last := b1.LastID
	setTyping(t, s, alice, room, true)
	expectTyping(t, b1, "bob#1", event.TypingStarted, room, "alice")
	b1.Close()
	setTyping(t, s, alice, room, false) // missed while away
	setTyping(t, s, alice, room, true)
	marker := s.post(bob, room, "marker")

	b2 := s.stream(bob, last)
	f := nextEvent(t, b2)
	var m struct{ ID int64 }
	if f.Event == "message:created" {
		decodeData(t, f, &m)
	}
	if f.Event != "message:created" || m.ID != marker || !f.HasID {
		t.Fatalf("bob#2 first event after Last-Event-ID %s = %s %q %s; want message:created %d with id (typing is not replayed)", last, f.Event, f.ID, f.Data, marker)
	}
}

type receiptEvent struct {
	Room      string `json:"room"`
	User      string `json:"user"`
	MessageID int64  `json:"message_id"`
}

// expectReceipt reads the next non-presence event of c, which must be
// receipt:updated with an id, and returns the frame.
func expectReceipt(t *testing.T, c *streamtest.Client, name, room, user string, msg int64) stream.Frame {
	t.Helper()
	f := nextEvent(t, c)
	var r receiptEvent
	if f.Event == "receipt:updated" {
		decodeData(t, f, &r)
	}
	if f.Event != "receipt:updated" || r != (receiptEvent{room, user, msg}) {
		t.Fatalf("%s: next event = %s %s; want receipt:updated room %s user %s message_id %d", name, f.Event, f.Data, room, user, msg)
	}
	if !f.HasID {
		t.Fatalf("%s: receipt:updated without id; want one (replayable)", name)
	}
	return f
}

type receipt struct {
	User      string     `json:"user"`
	MessageID int64      `json:"message_id"`
	UpdatedAt *time.Time `json:"updated_at"`
}

func receipts(t *testing.T, s *testServer, token, room string) map[string]receipt {
	t.Helper()
	var out struct{ Receipts []receipt }
	s.must(http.StatusOK, "GET", "/v1/rooms/"+room+"/receipts", token, nil, &out)
	m := map[string]receipt{}
	for _, r := range out.Receipts {
		m[r.User] = r
	}
	return m
}

func markRead(t *testing.T, s *testServer, token, room string, id int64) {
	t.Helper()
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/read", token, map[string]int64{"message_id": id}, nil)
}

// TestReceiptsForward moves a read position forward, backward and to
// foreign or invalid messages.
func TestReceiptsForward(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "1m", "HERALD_TYPING_TIMEOUT": "1m"})
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	other := s.createRoom(carol, "elsewhere", false)
	foreign := s.post(carol, other, "not in lobby")
	a1 := s.stream(alice, "")
	b1 := s.stream(bob, "")

	m1, m2, m3 := s.post(alice, room, "one"), s.post(alice, room, "two"), s.post(alice, room, "three")
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "bob#1": b1} {
		for _, id := range []int64{m1, m2, m3} {
			expectMessage(t, c, name, id)
		}
	}

	rs := receipts(t, s, alice, room)
	for _, u := range []string{"alice", "bob"} {
		if r, ok := rs[u]; !ok || r.MessageID != 0 || r.UpdatedAt != nil {
			t.Errorf("receipts[%s] before reading = %+v (present %v); want message_id 0, updated_at null", u, r, ok)
		}
	}

	markRead(t, s, bob, room, m2)
	fa := expectReceipt(t, a1, "alice#1", room, "bob", m2)
	fb := expectReceipt(t, b1, "bob#1", room, "bob", m2)
	if fa.ID != fb.ID {
		t.Errorf("receipt:updated id on alice#1 %q != on bob#1 %q; want the same log position", fa.ID, fb.ID)
	}
	r := receipts(t, s, alice, room)["bob"]
	if r.MessageID != m2 || r.UpdatedAt == nil {
		t.Fatalf("receipts[bob] after reading %d = %+v; want message_id %d with updated_at", m2, r, m2)
	}

	// Backwards or in place: accepted, ignored, not announced.
	markRead(t, s, bob, room, m1)
	markRead(t, s, bob, room, m2)
	if got := receipts(t, s, bob, room)["bob"]; got.MessageID != m2 || !got.UpdatedAt.Equal(*r.UpdatedAt) {
		t.Fatalf("receipts[bob] after reading older %d = %+v; want unchanged %+v", m1, got, r)
	}

	for _, tc := range []struct {
		name, token, room, body string
		want                    int
		code                    string
	}{
		{"message of another room", bob, room, fmt.Sprintf(`{"message_id":%d}`, foreign), http.StatusNotFound, "message_not_found"},
		{"nonexistent message", bob, room, `{"message_id":999999}`, http.StatusNotFound, "message_not_found"},
		{"zero", bob, room, `{"message_id":0}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"negative", bob, room, `{"message_id":-1}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"string", bob, room, fmt.Sprintf(`{"message_id":"%d"}`, m3), http.StatusUnprocessableEntity, "invalid_field"},
		{"fraction", bob, room, `{"message_id":1.5}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"null", bob, room, `{"message_id":null}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"missing", bob, room, `{}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"malformed", bob, room, `{"message_id":`, http.StatusBadRequest, "malformed_json"},
		{"non-member", carol, room, fmt.Sprintf(`{"message_id":%d}`, m3), http.StatusForbidden, "not_member"},
		{"unknown room", bob, "r_nope", fmt.Sprintf(`{"message_id":%d}`, m3), http.StatusNotFound, "room_not_found"},
	} {
		status, body := s.do("POST", "/v1/rooms/"+tc.room+"/read", tc.token, tc.body)
		if status != tc.want || errorCode(t, body) != tc.code {
			t.Errorf("POST read %s (%s) = %d %s; want %d %s", tc.body, tc.name, status, body, tc.want, tc.code)
		}
	}
	if status, body := s.do("GET", "/v1/rooms/"+room+"/receipts", carol, nil); status != http.StatusForbidden || errorCode(t, body) != "not_member" {
		t.Errorf("GET receipts by a non-member = %d %s; want 403 not_member", status, body)
	}

	// The marker: a forward move, announced right after the ignored ones.
	markRead(t, s, bob, room, m3)
	expectReceipt(t, a1, "alice#1 (older, equal and refused reads announce nothing)", room, "bob", m3)
	expectReceipt(t, b1, "bob#1 (older, equal and refused reads announce nothing)", room, "bob", m3)
	rs = receipts(t, s, alice, room)
	if rs["bob"].MessageID != m3 || rs["alice"].MessageID != 0 {
		t.Fatalf("receipts = %+v; want bob at %d, alice at 0", rs, m3)
	}
}

// TestReceiptsUnread checks the unread counts of GET /v1/rooms: messages by
// others after the caller's read position.
func TestReceiptsUnread(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "150ms", "HERALD_TYPING_TIMEOUT": "200ms"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	quiet := s.createRoom(bob, "quiet", false)

	unread := func(token, room string) (unread, lastRead int64) {
		t.Helper()
		var out struct {
			Rooms []struct {
				ID       string
				Unread   int64
				LastRead int64 `json:"last_read"`
			}
		}
		s.must(http.StatusOK, "GET", "/v1/rooms", token, nil, &out)
		for _, r := range out.Rooms {
			if r.ID == room {
				return r.Unread, r.LastRead
			}
		}
		t.Fatalf("GET /v1/rooms: room %s missing", room)
		return 0, 0
	}
	check := func(step, user, token, room string, wantUnread, wantLast int64) {
		t.Helper()
		if u, l := unread(token, room); u != wantUnread || l != wantLast {
			t.Errorf("%s: unread(%s, %s) = %d, last_read %d; want %d, %d", step, user, room, u, l, wantUnread, wantLast)
		}
	}

	check("empty room", "bob", bob, room, 0, 0)
	a1, a2 := s.post(alice, room, "a1"), s.post(alice, room, "a2")
	s.post(alice, room, "a3")
	b1, b2 := s.post(bob, room, "b1"), s.post(bob, room, "b2")
	s.post(bob, quiet, "talking to myself")
	check("after posts", "bob", bob, room, 3, 0)
	check("after posts", "alice", alice, room, 2, 0)
	check("own messages only", "bob", bob, quiet, 0, 0)

	markRead(t, s, bob, room, a2)
	check("bob read a2", "bob", bob, room, 1, a2)
	markRead(t, s, bob, room, b2)
	check("bob read his own newest", "bob", bob, room, 0, b2)
	markRead(t, s, bob, room, a1)
	check("bob read older a1", "bob", bob, room, 0, b2)
	check("bob's reads", "alice", alice, room, 2, 0)

	markRead(t, s, alice, room, b1)
	check("alice read b1", "alice", alice, room, 1, b1)
	s.post(alice, room, "a4")
	check("alice posted again", "alice", alice, room, 1, b1)
	check("alice posted again", "bob", bob, room, 1, b2)
}

// TestReceiptsReplay reconnects with Last-Event-ID after missing a receipt:
// it is logged, so it comes back with the same id.
func TestReceiptsReplay(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_PRESENCE_GRACE": "1m", "HERALD_TYPING_TIMEOUT": "1m"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	joinRoom(t, s, bob, room)
	a1 := s.stream(alice, "")
	b1 := s.stream(bob, "")

	id := s.post(alice, room, "hello")
	expectMessage(t, a1, "alice#1", id)
	expectMessage(t, b1, "bob#1", id)
	last := a1.LastID
	a1.Close()

	markRead(t, s, bob, room, id)
	live := expectReceipt(t, b1, "bob#1", room, "bob", id)
	marker := s.post(bob, room, "marker")
	expectMessage(t, b1, "bob#1", marker)

	for _, tc := range []struct {
		name string
		open func() *streamtest.Client
	}{
		{"Last-Event-ID header", func() *streamtest.Client { return s.stream(alice, last) }},
		{"last_event_id parameter", func() *streamtest.Client {
			c := s.streamQuery(url.Values{"last_event_id": {last}}, http.Header{"Authorization": {"Bearer " + alice}})
			c.Expect("ready")
			return c
		}},
	} {
		c := tc.open()
		replayed := expectReceipt(t, c, "alice replay ("+tc.name+")", room, "bob", id)
		if replayed.ID != live.ID {
			t.Errorf("replayed receipt:updated id (%s) = %q; want %q as sent live", tc.name, replayed.ID, live.ID)
		}
		expectMessage(t, c, "alice replay ("+tc.name+")", marker)
		c.Close()
	}
}

type roomOnline struct {
	Room     string `json:"room"`
	Online   int    `json:"online"`
	Presence bool   `json:"presence"`
}

// expectRoomOnline reads the next event of c, which must be room:online
// for room with online and presence as given, without an id.
func expectRoomOnline(t *testing.T, c *streamtest.Client, name, room string, online int, presence bool) {
	t.Helper()
	f := c.Next()
	var ro roomOnline
	if f.Event == event.RoomOnline {
		decodeData(t, f, &ro)
	}
	if want := (roomOnline{room, online, presence}); f.Event != event.RoomOnline || ro != want {
		t.Fatalf("%s: next event = %s %s; want room:online %+v", name, f.Event, f.Data, want)
	}
	if f.HasID {
		t.Fatalf("%s: room:online has id %q; want none (ephemeral)", name, f.ID)
	}
}

// expectMember reads the next event of c, which must be typ (member:joined
// or member:left) about user in room.
func expectMember(t *testing.T, c *streamtest.Client, name, typ, room, user string) {
	t.Helper()
	f := c.Next()
	var m struct{ Room, User string }
	if f.Event == typ {
		decodeData(t, f, &m)
	}
	if f.Event != typ || m.Room != room || m.User != user {
		t.Fatalf("%s: next event = %s %s; want %s of %s in %s", name, f.Event, f.Data, typ, user, room)
	}
}

// TestPresenceBigRoom follows a room across --presence-room-limit (3 here)
// both ways. At the limit its members hear each other's presence changes;
// past it they do not, and get room:online counts instead, a new stream
// the last count at once; back at the limit, room:online with presence
// true says that changes come again, and they do. A user who shares a
// small room as well still hears presence through it, and no one hears of
// a room they are not in.
//
// Each negative check rests on the order of the tracker's work: a change's
// presence:changed events are queued before the count that change causes,
// and before later changes' events.
func TestPresenceBigRoom(t *testing.T) {
	s := startServer(t, map[string]string{
		"HERALD_PRESENCE_ROOM_LIMIT": "3", "HERALD_PRESENCE_COUNT_INTERVAL": "30ms",
		"HERALD_PRESENCE_BATCH": "20ms", "HERALD_PRESENCE_GRACE": "150ms", "HERALD_TYPING_TIMEOUT": "1m",
	})
	alice, bob, carol, dave, frank := s.token("alice"), s.token("bob"), s.token("carol"), s.token("dave"), s.token("frank")
	big := s.createRoom(alice, "big", false)
	joinRoom(t, s, bob, big)
	joinRoom(t, s, carol, big)
	side := s.createRoom(alice, "side", false) // alice and dave, small throughout
	joinRoom(t, s, dave, side)
	s.createRoom(frank, "lone", false)

	// At the limit: presence as in any room, and no count.
	a1 := s.stream(alice, "")
	expectPresence(t, a1, "alice#1", "alice", "online")
	b1 := s.stream(bob, "")
	expectPresence(t, a1, "alice#1", "bob", "online")
	expectPresence(t, b1, "bob#1", "bob", "online")
	c1 := s.stream(carol, "")
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "bob#1": b1, "carol#1": c1} {
		expectPresence(t, c, name+" (3 members: at the limit)", "carol", "online")
	}
	f1 := s.stream(frank, "")
	expectPresence(t, f1, "frank#1", "frank", "online")

	// One more member: past the limit. The members online are counted.
	joinRoom(t, s, dave, big)
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "bob#1": b1, "carol#1": c1} {
		expectMember(t, c, name, "member:joined", big, "dave")
		expectRoomOnline(t, c, name+" (4 members: past the limit)", big, 3, false)
	}

	// Dave comes online: the members of big are not told, only counted;
	// alice hears it through side, which she shares with him. His new
	// stream gets the last count first.
	d1 := s.stream(dave, "")
	expectPresence(t, d1, "dave#1", "dave", "online")
	expectRoomOnline(t, d1, "dave#1 (the last count, as the stream opens)", big, 3, false)
	expectPresence(t, a1, "alice#1 (shares side with dave)", "dave", "online")
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "bob#1": b1, "carol#1": c1, "dave#1": d1} {
		expectRoomOnline(t, c, name+" (dave counted, not announced)", big, 4, false)
	}
	// Over the limit or not, REST answers for anyone sharing a room.
	if p := getPresence(t, s, bob, "dave")[0]; p.Status != "online" {
		t.Errorf("GET /v1/presence dave by bob (a big room's member) = %+v; want online", p)
	}
	if mb := memberPresences(t, s, carol, big)["dave"]; mb.Status != "online" {
		t.Errorf("members of big: dave = %+v; want online", mb)
	}

	// A second device of alice's gets the count; her first does not get it
	// again. A status is no change to the count.
	a2 := s.stream(alice, "")
	expectRoomOnline(t, a2, "alice#2 (the last count, as the stream opens)", big, 4, false)
	s.must(http.StatusNoContent, "POST", "/v1/presence", carol, map[string]string{"status": "away"}, nil)
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "away"}, nil)
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "dave#1": d1} {
		// carol's away reached no one (she shares big alone with them);
		// alice's reached side.
		expectPresence(t, c, name+" (carol's status is not announced in big)", "alice", "away")
	}

	// Bob goes offline: counted again, announced to no one of big.
	b1.Close()
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "carol#1": c1, "dave#1": d1} {
		expectRoomOnline(t, c, name+" (bob offline)", big, 3, false)
	}

	// Dave leaves: back at the limit. The members are told that presence
	// comes again, and it does.
	s.must(http.StatusNoContent, "POST", "/v1/rooms/"+big+"/leave", dave, nil, nil)
	expectMember(t, d1, "dave#1", "member:left", big, "dave")
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "carol#1": c1} {
		expectMember(t, c, name, "member:left", big, "dave")
		expectRoomOnline(t, c, name+" (3 members: back at the limit)", big, 2, true)
	}
	s.must(http.StatusNoContent, "POST", "/v1/presence", carol, map[string]string{"status": "dnd"}, nil)
	for name, c := range map[string]*streamtest.Client{"alice#1": a1, "alice#2": a2, "carol#1": c1} {
		expectPresence(t, c, name+" (presence again in big)", "carol", "dnd")
	}
	s.must(http.StatusNoContent, "POST", "/v1/presence", alice, map[string]string{"status": "dnd"}, nil)
	expectPresence(t, d1, "dave#1 (no longer shares a room with carol)", "alice", "dnd")

	// Frank, in a room of his own, heard of none of it.
	s.must(http.StatusNoContent, "POST", "/v1/presence", frank, map[string]string{"status": "away"}, nil)
	expectPresence(t, f1, "frank#1 (shares no room)", "frank", "away")
}

// TestPresenceRoomLimitEdges: with --presence-room-limit 3, rooms of 2 and
// 3 members (limit-1, limit) carry their members' presence changes, and a
// room of 4 (limit+1) carries none but counts them. In each, the first
// member sets a status and then a marker user, who shares a small room
// with the second member only, sets one: the tracker announces in order,
// so when the marker's change reaches the second member, the first's has
// already, or never will.
func TestPresenceRoomLimitEdges(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		t.Run(fmt.Sprintf("%d_members", n), func(t *testing.T) {
			s := startServer(t, map[string]string{
				"HERALD_PRESENCE_ROOM_LIMIT": "3", "HERALD_PRESENCE_COUNT_INTERVAL": "30ms",
				"HERALD_PRESENCE_BATCH": "20ms",
			})
			tokens := make([]string, n)
			for i := range n {
				tokens[i] = s.token(fmt.Sprintf("m%d", i))
			}
			room := s.createRoom(tokens[0], "room", false)
			for _, tok := range tokens[1:] {
				joinRoom(t, s, tok, room)
			}
			marker := s.token("marker")
			side := s.createRoom(marker, "side", false)
			joinRoom(t, s, tokens[1], side)

			streams := make([]*streamtest.Client, n)
			for i, tok := range tokens {
				streams[i] = s.stream(tok, "")
			}
			mk := s.stream(marker, "")
			waitStreamsOpen(t, s, n+1)
			s.must(http.StatusNoContent, "POST", "/v1/presence", tokens[0], map[string]string{"status": "away"}, nil)
			s.must(http.StatusNoContent, "POST", "/v1/presence", marker, map[string]string{"status": "dnd"}, nil)
			mk.Close()

			// The second member's stream, up to the marker's change.
			heard, counts, online := false, 0, 0
			for {
				f := streams[1].Next()
				if f.Event == event.RoomOnline {
					var ro roomOnline
					decodeData(t, f, &ro)
					if ro.Room != room || ro.Presence {
						t.Fatalf("m1: room:online %s; want room %s, presence false", f.Data, room)
					}
					counts, online = counts+1, ro.Online
					continue
				}
				if f.Event != event.PresenceChanged {
					t.Fatalf("m1: %s %s; want presence or counts only", f.Event, f.Data)
				}
				var p presenceInfo
				decodeData(t, f, &p)
				if p.User == "m0" && p.Status == "away" {
					heard = true
				}
				if p.User == "marker" && p.Status == "dnd" {
					break
				}
			}
			large := n > 3
			if heard == large {
				t.Errorf("m1 heard m0 go away = %v; want %v (room of %d, limit 3)", heard, !large, n)
			}
			if !large && counts > 0 {
				t.Errorf("m1 got %d room:online in a room of %d; want none at or under the limit", counts, n)
			}
			if large {
				// Every member online is counted, sooner or later.
				for online != n {
					f := streams[1].Next()
					if f.Event != event.RoomOnline {
						continue
					}
					var ro roomOnline
					decodeData(t, f, &ro)
					online = ro.Online
				}
			}
			// GET /v1/presence answers whatever the room's size.
			if p := getPresence(t, s, tokens[1], "m0")[0]; p.Status != "away" {
				t.Errorf("GET /v1/presence m0 by m1 = %+v; want away", p)
			}
		})
	}
}
