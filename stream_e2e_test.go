package main

// End-to-end tests of the stream's guarantees (DESIGN.md, "The stream"),
// black box: a real server over HTTP, real SSE clients, no access to the
// hub. Absence is never proved by waiting: a later marker event in another
// room shows that anything sent before it would already have arrived.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files from the current output")

// ---------------------------------------------------------------------------
// Helpers

// streamScene drives one test server the way its users would, by user name;
// every REST call fails the test unless it answers as the contract says.
type streamScene struct {
	*testServer
	t *testing.T
}

func newStreamScene(t *testing.T, env map[string]string) *streamScene {
	t.Helper()
	sc := &streamScene{testServer: startServer(t, env), t: t}
	sc.closeIdleBeforeStop()
	return sc
}

// closeIdleBeforeStop drops the client's idle keep-alive connections before
// the server stops. The transport sometimes dials a spare connection that
// never carries a request; http.Server.Shutdown waits 5s for such a "new"
// connection before it counts as idle.
func (sc *streamScene) closeIdleBeforeStop() {
	sc.t.Cleanup(http.DefaultClient.CloseIdleConnections)
}

// in returns the scene for a subtest t, on the same server: failures of
// its REST calls then end the subtest, not its parent.
func (sc *streamScene) in(t *testing.T) *streamScene {
	ts := *sc.testServer
	ts.t = t
	return &streamScene{testServer: &ts, t: t}
}

// restartServer stops the server and starts it again on the same data dir.
func (sc *streamScene) restartServer() {
	http.DefaultClient.CloseIdleConnections()
	sc.testServer = sc.testServer.restart()
	sc.closeIdleBeforeStop()
}

func (sc *streamScene) tok(user string) string { return sc.token(user) }

func (sc *streamScene) room(owner, name string, private bool) string {
	return sc.createRoom(sc.tok(owner), name, private)
}

func (sc *streamScene) join(user, room string) {
	sc.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", sc.tok(user), nil, nil)
}

func (sc *streamScene) leave(user, room string) {
	sc.must(http.StatusNoContent, "POST", "/v1/rooms/"+room+"/leave", sc.tok(user), nil, nil)
}

// directAdds lets an owner add members without asking them: for the
// tests of routing by membership, which make and end memberships as an
// owner would, and look at nothing else.
var directAdds = map[string]string{"HERALD_MEMBER_ADDS": "direct"}

// add makes user a member of room as its owner, on a server started with
// directAdds.
func (sc *streamScene) add(owner, room, user string) {
	sc.must(http.StatusCreated, "POST", "/v1/rooms/"+room+"/members", sc.tok(owner), map[string]string{"user": user}, nil)
}

func (sc *streamScene) remove(owner, room, user string) {
	sc.must(http.StatusNoContent, "DELETE", "/v1/rooms/"+room+"/members/"+user, sc.tok(owner), nil, nil)
}

func (sc *streamScene) say(user, room, text string) int64 { return sc.post(sc.tok(user), room, text) }

// open opens user's stream, resuming after lastID unless it is empty, and
// consumes ready; the client's LastID is then the ready id.
func (sc *streamScene) open(user, lastID string) *streamtest.Client {
	return sc.stream(sc.tok(user), lastID)
}

// metric reads one unlabelled sample from GET /metrics.
func (sc *streamScene) metric(name string) float64 {
	sc.t.Helper()
	status, body := sc.do("GET", "/metrics", "", nil)
	if status != http.StatusOK {
		sc.t.Fatalf("GET /metrics = %d; want 200", status)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				sc.t.Fatalf("metric %s = %q: %v", name, v, err)
			}
			return f
		}
	}
	sc.t.Fatalf("GET /metrics has no sample %s", name)
	return 0
}

// ssePostFrom posts a message and reports failure as an error, so that it can
// run on goroutines other than the test's.
func ssePostFrom(base, token, room, text string) (int64, error) {
	body, _ := json.Marshal(map[string]string{"text": text})
	req, err := http.NewRequest("POST", base+"/v1/rooms/"+room+"/messages", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post %q: %w", text, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("post %q = %d %s; want 201", text, resp.StatusCode, data)
	}
	var msg struct{ ID int64 }
	if err := json.Unmarshal(data, &msg); err != nil {
		return 0, fmt.Errorf("post %q: decode %s: %w", text, data, err)
	}
	return msg.ID, nil
}

// ssePostInBackground posts texts in order from its own goroutine, as a busy
// room would. Before texts[pauseAt] it closes paused and waits for resume
// to close. done yields the first error, or nil once all were posted. It
// gives up when the test ends.
func ssePostInBackground(t *testing.T, base, token, room string, texts []string, pauseAt int, resume <-chan struct{}) (paused <-chan struct{}, done <-chan error) {
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit) })
	pausedc, donec := make(chan struct{}), make(chan error, 1)
	go func() {
		for i, text := range texts {
			if i == pauseAt {
				close(pausedc)
				select {
				case <-resume:
				case <-quit:
					donec <- errors.New("test ended while the poster waited")
					return
				}
			}
			if _, err := ssePostFrom(base, token, room, text); err != nil {
				donec <- err
				return
			}
		}
		donec <- nil
	}()
	return pausedc, donec
}

// ssePayload holds the fields of every event's data that the tests look at.
type ssePayload struct {
	ID     int64  `json:"id"` // message id
	Room   string `json:"room"`
	User   string `json:"user"`
	Text   string `json:"text"`
	Reason string `json:"reason"`
	By     string `json:"by"`
}

// sseEvent is a dispatched frame with its data decoded.
type sseEvent struct {
	stream.Frame
	p ssePayload
}

func (e sseEvent) isMessage(text string) bool {
	return e.Event == "message:created" && e.p.Text == text
}

// describe describes an event for failure messages and sequence comparisons;
// rooms is an optional id → label map that makes them readable.
func (e sseEvent) describe(rooms map[string]string) string {
	room := e.p.Room
	if l, ok := rooms[room]; ok {
		room = l
	}
	if e.Event == "message:created" {
		return fmt.Sprintf("%s %s %q", e.Event, room, sseShort(e.p.Text))
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", e.Event, room, e.p.User, e.p.Reason))
}

// sseEphemeral are the event types that carry no id and are never
// replayed (presence, typing). They interleave with the log's events at no
// fixed place, so the tests of the log's guarantees step over them.
var sseEphemeral = map[string]bool{"presence:changed": true, "room:online": true, "typing:started": true, "typing:stopped": true}

// sseShort abbreviates long texts in failure messages.
func sseShort(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}

// sseNext returns c's next event, other than an ephemeral one, with its
// data decoded.
func sseNext(t *testing.T, c *streamtest.Client) sseEvent {
	t.Helper()
	f := c.Next()
	for !f.HasID && sseEphemeral[f.Event] {
		f = c.Next()
	}
	e := sseEvent{Frame: f}
	if err := json.Unmarshal([]byte(f.Data), &e.p); err != nil {
		t.Fatalf("event %s data %q is not JSON: %v", f.Event, f.Data, err)
	}
	return e
}

// sseExpectMessage fails unless c's next event is the message text in room.
func sseExpectMessage(t *testing.T, c *streamtest.Client, room, text string) sseEvent {
	t.Helper()
	e := sseNext(t, c)
	if !e.isMessage(text) || e.p.Room != room {
		t.Fatalf("next event = %s; want message:created %s %q", e.describe(nil), room, text)
	}
	return e
}

// sseEventsBefore reads c until the message marker and returns what came
// before it.
func sseEventsBefore(t *testing.T, c *streamtest.Client, marker string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		e := sseNext(t, c)
		if e.isMessage(marker) {
			return out
		}
		out = append(out, e)
	}
}

// sseRead reads n events from c.
func sseRead(t *testing.T, c *streamtest.Client, n int) []sseEvent {
	t.Helper()
	out := make([]sseEvent, 0, n)
	for range n {
		out = append(out, sseNext(t, c))
	}
	return out
}

// sseDescribeAll describes each event of evs.
func sseDescribeAll(evs []sseEvent, rooms map[string]string) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.describe(rooms)
	}
	return out
}

// sseSeq returns the seq part of an event id "<epoch>-<seq>".
func sseSeq(t testing.TB, id string) int64 {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		t.Fatalf("event id %q is not <epoch>-<seq>", id)
	}
	n, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		t.Fatalf("event id %q is not <epoch>-<seq>: %v", id, err)
	}
	return n
}

// sseEpoch returns the epoch part of an event id "<epoch>-<seq>".
func sseEpoch(id string) string { return id[:max(strings.LastIndexByte(id, '-'), 0)] }

// sseCheckIncreasing fails unless every event has an id of one epoch and the
// seqs strictly increase.
func sseCheckIncreasing(t *testing.T, who string, evs []sseEvent) {
	t.Helper()
	for i, e := range evs {
		if !e.HasID {
			t.Fatalf("%s: event %d (%s) has no id", who, i, e.describe(nil))
		}
		if i == 0 {
			continue
		}
		prev := evs[i-1]
		if sseEpoch(e.ID) != sseEpoch(prev.ID) || sseSeq(t, e.ID) <= sseSeq(t, prev.ID) {
			t.Fatalf("%s: id %s follows %s; want a greater seq of the same epoch", who, e.ID, prev.ID)
		}
	}
}

// sseCheckMessages fails unless evs are exactly the messages want, in order,
// with strictly increasing ids: no gap, no duplicate, no reordering.
func sseCheckMessages(t *testing.T, who string, evs []sseEvent, want []string) {
	t.Helper()
	got := make([]string, len(evs))
	for i, e := range evs {
		got[i] = e.p.Text
		if e.Event != "message:created" {
			got[i] = e.describe(nil)
		}
	}
	if i := sseFirstDiff(got, want); i >= 0 {
		g, w := "(end)", "(end)"
		if i < len(got) {
			g = sseShort(got[i])
		}
		if i < len(want) {
			w = sseShort(want[i])
		}
		t.Fatalf("%s: got %d messages, want %d; first difference at %d: got %q, want %q", who, len(got), len(want), i, g, w)
	}
	sseCheckIncreasing(t, who, evs)
}

// sseNumbered returns n texts "prefix-000", "prefix-001", ...
func sseNumbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// sseClosingReason returns the reason of a stream's ": closing <reason>" frame,
// which must be its last and carry a retry: hint, or "" when there is none.
func sseClosingReason(t *testing.T, frames []stream.Frame) string {
	t.Helper()
	if len(frames) == 0 {
		return ""
	}
	last := frames[len(frames)-1]
	reason, ok := strings.CutPrefix(last.Comment, "closing ")
	if !ok {
		return ""
	}
	if last.Retry <= 0 || last.HasData {
		t.Fatalf("closing frame = %+v; want a retry: hint and no data", last)
	}
	return reason
}

// ---------------------------------------------------------------------------
// 1. Routing

// A join reaches an open stream at once, without reconnecting: the joiner's
// first event of the room is their own member:joined, never something said
// before it, and the room's events follow.
func TestStreamRoutingJoinTakesEffectMidStream(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	bob := sc.open("bob", "")

	sc.say("alice", room, "before bob joined")
	sc.join("bob", room)
	e := sseNext(t, bob)
	if e.Event != "member:joined" || e.p.Room != room || e.p.User != "bob" {
		t.Fatalf("bob's first event = %s; want his own member:joined of %s", e.describe(nil), room)
	}
	sc.say("alice", room, "after bob joined")
	sseExpectMessage(t, bob, room, "after bob joined")
	sc.join("carol", room)
	if e := sseNext(t, bob); e.Event != "member:joined" || e.p.User != "carol" {
		t.Fatalf("bob's next event = %s; want carol's member:joined", e.describe(nil))
	}
}

// After a leave, and after an owner's removal, not one more event of the
// room reaches the user's open stream; a later join brings it back.
func TestStreamRoutingNothingAfterLeave(t *testing.T) {
	tests := []struct {
		name    string
		private bool
		enter   func(sc *streamScene, room string) // makes bob a member
		exit    func(sc *streamScene, room string) // ends bob's membership
		reason  string
		by      string
	}{
		{
			name:   "left",
			enter:  func(sc *streamScene, room string) { sc.join("bob", room) },
			exit:   func(sc *streamScene, room string) { sc.leave("bob", room) },
			reason: "left",
		},
		{
			name:    "removed by owner",
			private: true,
			enter:   func(sc *streamScene, room string) { sc.add("alice", room, "bob") },
			exit:    func(sc *streamScene, room string) { sc.remove("alice", room, "bob") },
			reason:  "removed",
			by:      "alice",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := newStreamScene(t, directAdds)
			room := sc.room("alice", "topic", tc.private)
			shared := sc.room("alice", "shared", false)
			sc.join("bob", shared)
			tc.enter(sc, room)
			bob := sc.open("bob", "")
			alice := sc.open("alice", "")

			sc.say("alice", room, "while a member")
			sseExpectMessage(t, bob, room, "while a member")
			tc.exit(sc, room)
			e := sseNext(t, bob)
			if e.Event != "member:left" || e.p.Room != room || e.p.User != "bob" || e.p.Reason != tc.reason || e.p.By != tc.by {
				t.Fatalf("bob's event after %s = %s by %q; want member:left bob %s by %q", tc.name, e.describe(nil), e.p.By, tc.reason, tc.by)
			}

			// The room goes on without bob: messages and a member event.
			sc.say("alice", room, "after 1")
			sc.add("alice", room, "carol")
			sc.say("carol", room, "after 2")
			sc.say("alice", shared, "marker")
			for _, e := range sseEventsBefore(t, bob, "marker") {
				if e.p.Room == room {
					t.Fatalf("bob got %s after his member:left", e.describe(map[string]string{room: "topic"}))
				}
			}
			// Those events were live: alice saw them before the marker.
			if got := sseDescribeAll(sseEventsBefore(t, alice, "marker"), map[string]string{room: "topic"}); !slices.Contains(got, `message:created topic "after 2"`) {
				t.Fatalf("alice's events = %q; want them to include carol's \"after 2\"", got)
			}

			// Coming back takes effect on the same stream.
			tc.enter(sc, room)
			if e := sseNext(t, bob); e.Event != "member:joined" || e.p.User != "bob" || e.p.Room != room {
				t.Fatalf("bob's event after rejoining = %s; want his member:joined", e.describe(nil))
			}
			sc.say("alice", room, "welcome back")
			sseExpectMessage(t, bob, room, "welcome back")
		})
	}
}

// Every open connection of a user gets the user's events, with the same ids.
func TestStreamRoutingEveryConnection(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	conns := []*streamtest.Client{sc.open("bob", ""), sc.open("bob", "")}

	sc.join("bob", room)
	msg := sc.say("alice", room, "to both")
	sc.leave("bob", room)
	sc.say("alice", room, "to neither")
	shared := sc.room("carol", "shared", false)
	sc.join("bob", shared)
	sc.say("carol", shared, "marker")

	var first []string
	for i, c := range conns {
		evs := sseEventsBefore(t, c, "marker")
		got := sseDescribeAll(evs, map[string]string{room: "lobby", shared: "shared"})
		want := []string{"member:joined lobby bob", `message:created lobby "to both"`, "member:left lobby bob left", "member:joined shared bob"}
		if !slices.Equal(got, want) {
			t.Fatalf("connection %d: events = %q; want %q", i, got, want)
		}
		if evs[1].p.ID != msg {
			t.Fatalf("connection %d: message id = %d; want %d", i, evs[1].p.ID, msg)
		}
		ids := make([]string, len(evs))
		for j, e := range evs {
			ids[j] = e.ID
		}
		if i == 0 {
			first = ids
		} else if !slices.Equal(ids, first) {
			t.Fatalf("connection %d: ids = %q; want %q as on connection 0", i, ids, first)
		}
	}
}

// ---------------------------------------------------------------------------
// 2. Order

// Members see a room's events in one order while several authors post at
// once, each connection's ids only increase, and each author's messages
// keep the order in which the author sent them.
func TestStreamOrderConcurrentAuthors(t *testing.T) {
	const perAuthor = 40
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "busy", false)
	authors := []string{"alice", "bob", "carol"}
	for _, u := range []string{"bob", "carol", "dave"} {
		sc.join(u, room)
	}
	readers := map[string]*streamtest.Client{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "dave#2"} {
		readers[u] = sc.open(strings.TrimSuffix(u, "#2"), "")
	}

	var wg sync.WaitGroup
	for _, a := range authors {
		token := sc.tok(a)
		wg.Go(func() {
			for _, text := range sseNumbered(a, perAuthor) {
				if _, err := ssePostFrom(sc.URL, token, room, text); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	total := perAuthor * len(authors)
	var order []string
	for _, name := range slices.Sorted(maps.Keys(readers)) {
		evs := sseRead(t, readers[name], total)
		sseCheckIncreasing(t, name, evs)
		got := make([]string, len(evs))
		for i, e := range evs {
			got[i] = e.ID + " " + e.p.Text
		}
		if order == nil {
			order = got
			sseCheckAuthorOrder(t, name, evs, authors, perAuthor)
		} else if i := sseFirstDiff(got, order); i >= 0 {
			t.Fatalf("%s: event %d = %q; another member saw %q there", name, i, got[i], order[i])
		}
	}
}

// sseCheckAuthorOrder fails unless each author's messages appear in the order
// the author posted them (each post was answered before the next was sent).
func sseCheckAuthorOrder(t *testing.T, who string, evs []sseEvent, authors []string, n int) {
	t.Helper()
	byAuthor := map[string][]string{}
	for _, e := range evs {
		byAuthor[e.p.User] = append(byAuthor[e.p.User], e.p.Text)
	}
	for _, a := range authors {
		if got, want := byAuthor[a], sseNumbered(a, n); !slices.Equal(got, want) {
			t.Fatalf("%s: %s's messages = %q; want %q", who, a, got, want)
		}
	}
}

// sseFirstDiff returns the first index where a and b differ, or -1.
func sseFirstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// ---------------------------------------------------------------------------
// 3. Replay after a disconnect

// A reader that drops mid-burst and comes back with the id of the last
// event it saw gets every message exactly once, in order, while the burst
// goes on: the replay of what it missed hands over to live events with no
// gap and no duplicate. Both ways of passing the id are covered.
func TestStreamReplayAfterDisconnectMidBurst(t *testing.T) {
	const total, readFirst, pauseAt = 200, 50, 100
	header := func(sc *streamScene, user, lastID string) *streamtest.Client {
		return sc.open(user, lastID)
	}
	param := func(sc *streamScene, user, lastID string) *streamtest.Client {
		c := sc.streamQuery(url.Values{"last_event_id": {lastID}}, http.Header{"Authorization": {"Bearer " + sc.tok(user)}})
		c.Expect("ready")
		return c
	}
	tests := []struct {
		name      string
		env       map[string]string
		reconnect func(sc *streamScene, user, lastID string) *streamtest.Client
	}{
		{"Last-Event-ID header", nil, header},
		{"last_event_id parameter", nil, param},
		// The missed events are no longer in memory: the replay reads the
		// durable log while the burst goes on.
		{"beyond the in-memory tail", map[string]string{"HERALD_REPLAY_BUFFER": "16"}, header},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := newStreamScene(t, tc.env)
			room := sc.room("alice", "burst", false)
			sc.join("bob", room)
			first := sc.open("bob", "")

			// Bob reads part of the first pauseAt messages and goes away;
			// the rest of them are surely missed. The poster resumes as
			// bob reconnects, so the others are posted while he replays.
			texts := sseNumbered("m", total)
			resume := make(chan struct{})
			paused, posted := ssePostInBackground(t, sc.URL, sc.tok("alice"), room, texts, pauseAt, resume)

			seen := sseRead(t, first, readFirst)
			first.Close()
			lastID := seen[len(seen)-1].ID
			<-paused
			close(resume)

			again := tc.reconnect(sc, "bob", lastID)
			if again.LastID != lastID {
				t.Fatalf("ready id after resuming from %s = %s; want the resumed position", lastID, again.LastID)
			}
			seen = append(seen, sseRead(t, again, total-readFirst)...)
			if err := <-posted; err != nil {
				t.Fatal(err)
			}
			sseCheckMessages(t, "bob", seen, texts)

			// Nothing more than the burst: a marker comes next.
			sc.say("alice", room, "marker")
			if got := sseEventsBefore(t, again, "marker"); len(got) > 0 {
				t.Fatalf("events after the burst = %q; want none before the marker", sseDescribeAll(got, nil))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 4. Replay follows membership at the time of each event

// A user removed while away gets, on resuming, what was said before the
// removal, then their member:left, then nothing more of the room; a user
// added while away gets the room from their member:joined on. The same
// from the in-memory tail and from the durable log after a restart.
func TestStreamReplayFollowsMembershipAtEventTime(t *testing.T) {
	tests := []struct {
		name   string
		member bool                               // bob is in the room when he goes away
		away   func(sc *streamScene, room string) // what happens meanwhile
		replay []string                           // what bob's resumed stream replays
		live   []string                           // then, of carol's live "later"
	}{
		{
			name:   "removed",
			member: true,
			away: func(sc *streamScene, room string) {
				sc.say("alice", room, "missed 1")
				sc.say("carol", room, "missed 2")
				sc.remove("alice", room, "bob")
				sc.say("alice", room, "after removal 1")
				sc.say("carol", room, "after removal 2")
				sc.add("alice", room, "dave")
			},
			replay: []string{`message:created team "missed 1"`, `message:created team "missed 2"`, "member:left team bob removed"},
		},
		{
			name:   "removed and added back",
			member: true,
			away: func(sc *streamScene, room string) {
				sc.say("alice", room, "missed")
				sc.remove("alice", room, "bob")
				sc.say("carol", room, "while out")
				sc.add("alice", room, "bob")
				sc.say("carol", room, "back")
			},
			replay: []string{`message:created team "missed"`, "member:left team bob removed", "member:joined team bob", `message:created team "back"`},
			live:   []string{`message:created team "later"`},
		},
		{
			name: "added",
			away: func(sc *streamScene, room string) {
				sc.say("alice", room, "before bob")
				sc.add("alice", room, "bob")
				sc.say("carol", room, "after bob")
			},
			replay: []string{"member:joined team bob", `message:created team "after bob"`},
			live:   []string{`message:created team "later"`},
		},
	}
	for _, tc := range tests {
		for _, restart := range []bool{false, true} {
			source := "from memory"
			if restart {
				source = "from the durable log after a restart"
			}
			t.Run(tc.name+"/"+source, func(t *testing.T) {
				sc := newStreamScene(t, directAdds)
				room := sc.room("alice", "team", true)
				shared := sc.room("alice", "shared", false)
				labels := map[string]string{room: "team", shared: "shared"}
				sc.add("alice", room, "carol")
				if tc.member {
					sc.add("alice", room, "bob")
				}
				sc.join("bob", shared)

				bob := sc.open("bob", "")
				sc.say("alice", shared, "seen live")
				sseExpectMessage(t, bob, shared, "seen live")
				lastID := bob.LastID
				bob.Close()

				tc.away(sc, room)
				sc.say("alice", shared, "marker")
				if restart {
					sc.restartServer()
				}

				bob = sc.open("bob", lastID)
				if got := sseDescribeAll(sseEventsBefore(t, bob, "marker"), labels); !slices.Equal(got, tc.replay) {
					t.Fatalf("replay from %s = %q; want %q", lastID, got, tc.replay)
				}
				// Live again, with the membership the replay ended with.
				sc.say("carol", room, "later")
				sc.say("alice", shared, "marker 2")
				if got := sseDescribeAll(sseEventsBefore(t, bob, "marker 2"), labels); !slices.Equal(got, tc.live) {
					t.Fatalf("live events after the replay = %q; want %q", got, tc.live)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// 5. Replay across a restart

// Ids handed out before a restart still resume exactly, from the durable
// log: the restarted server's memory holds nothing older than its start.
// The stream open at the restart is told to reconnect.
func TestStreamReplayAcrossRestart(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "durable", false)
	sc.join("bob", room)
	alice := sc.open("alice", "")
	bob := sc.open("bob", "")

	texts := sseNumbered("before restart", 6)
	for _, text := range texts {
		sc.say("alice", room, text)
	}
	logged := sseRead(t, alice, len(texts)) // ids as the log numbered them
	sseRead(t, bob, 2)
	lastID := bob.LastID

	sc.restartServer()
	if reason := sseClosingReason(t, bob.Ended()); reason != "shutdown" {
		t.Fatalf("closing reason at restart = %q; want shutdown", reason)
	}

	bob = sc.open("bob", lastID)
	if bob.LastID != lastID {
		t.Fatalf("ready id after restart = %s; want %s", bob.LastID, lastID)
	}
	replayed := sseRead(t, bob, len(texts)-2)
	for i, e := range replayed {
		want := logged[i+2]
		if e.ID != want.ID || e.p.Text != want.p.Text || e.p.ID != want.p.ID {
			t.Fatalf("replayed event %d = %s %q (message %d); want %s %q (message %d)", i, e.ID, e.p.Text, e.p.ID, want.ID, want.p.Text, want.p.ID)
		}
	}
	sc.say("alice", room, "after restart")
	live := sseExpectMessage(t, bob, room, "after restart")
	sseCheckIncreasing(t, "bob", append(replayed, live))
}

// A replay from before a restart that is longer than a page of the durable
// log (2,048 events), with another room's events interleaved, still has
// every event of the user's rooms once and in order, then goes live.
func TestStreamReplayAcrossRestartManyEvents(t *testing.T) {
	const perAuthor = 520 // 4 authors: 2,080 events
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "archive", false)
	other := sc.room("erin", "elsewhere", false)
	authors := []string{"alice", "bob", "carol", "dave"}
	for _, u := range authors[1:] {
		sc.join(u, room)
	}
	bob := sc.open("bob", "")
	lastID := bob.LastID
	bob.Close()

	var wg sync.WaitGroup
	post := func(user, room string, texts []string) {
		token := sc.tok(user)
		wg.Go(func() {
			for _, text := range texts {
				if _, err := ssePostFrom(sc.URL, token, room, text); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for _, a := range authors {
		post(a, room, sseNumbered(a, perAuthor))
	}
	post("erin", other, sseNumbered("noise", 200))
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	sc.restartServer()
	bob = sc.open("bob", lastID)
	evs := sseRead(t, bob, perAuthor*len(authors))
	sseCheckIncreasing(t, "bob", evs)
	sseCheckAuthorOrder(t, "bob", evs, authors, perAuthor)
	sc.say("alice", room, "live")
	sseExpectMessage(t, bob, room, "live")
}

// ---------------------------------------------------------------------------
// 6. resync

// A position the server cannot honour answers ready (at the current head),
// then resync with the reason and no id, then live events.
func TestStreamResync(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	sc.join("bob", room)

	// An id of another log: a server with a fresh data dir is a new epoch.
	// Its seq is one this server also has, so only the epoch is wrong.
	other := startServer(t, nil)
	other.createRoom(other.token("alice"), "elsewhere", false)
	foreign := other.stream(other.token("alice"), "").LastID
	if sseSeq(t, foreign) != 1 {
		t.Fatalf("other server's head = %s; want seq 1", foreign)
	}

	head := sc.open("bob", "").LastID
	epoch := sseEpoch(head)
	if epoch == sseEpoch(foreign) {
		t.Fatalf("two fresh data dirs share epoch %q", epoch)
	}
	tests := []struct {
		name   string
		lastID func(t testing.TB, head string) string
		reason string
	}{
		{"another epoch", func(testing.TB, string) string { return foreign }, "unknown_epoch"},
		{"garbage", func(testing.TB, string) string { return "garbage" }, "malformed_id"},
		{"no seq", func(testing.TB, string) string { return epoch + "-" }, "malformed_id"},
		{"seq not a number", func(testing.TB, string) string { return epoch + "-x7" }, "malformed_id"},
		{"one past the head", func(t testing.TB, h string) string { return epoch + "-" + strconv.FormatInt(sseSeq(t, h)+1, 10) }, "unknown_position"},
		{"far in the future", func(t testing.TB, h string) string {
			return epoch + "-" + strconv.FormatInt(sseSeq(t, h)+1_000_000, 10)
		}, "unknown_position"},
		// The boundary that is honoured: nothing missed, no resync.
		{"the head itself", func(_ testing.TB, h string) string { return h }, ""},
	}
	for _, tc := range tests {
		for _, form := range []string{"header", "parameter"} {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				sc := sc.in(t)
				lastID := tc.lastID(t, head)
				h := http.Header{"Authorization": {"Bearer " + sc.tok("bob")}}
				q := url.Values{}
				if form == "header" {
					h.Set("Last-Event-ID", lastID)
				} else {
					q.Set("last_event_id", lastID)
				}
				c := sc.streamQuery(q, h)
				if ready := c.Expect("ready"); ready.ID != head {
					t.Fatalf("ready id for %q = %q; want the head %q", lastID, ready.ID, head)
				}
				if tc.reason != "" {
					var data struct{ Reason string }
					f := c.ExpectData("resync", &data)
					if f.HasID || data.Reason != tc.reason {
						t.Fatalf("resync for %q = id %q reason %q; want no id and reason %q", lastID, f.ID, data.Reason, tc.reason)
					}
				}
				text := "live after " + tc.name + " " + form
				sc.say("alice", room, text)
				head = sseExpectMessage(t, c, room, text).ID
			})
		}
	}
}

// A position that retention has since deleted gets resync with the reason
// expired; the last position it deleted is still honoured, as the client
// has seen everything up to it. Retention is a day at least, so the test
// ages the log's rows in the file while the server is stopped; the pruner,
// which runs as the server starts, deletes them.
func TestStreamResyncExpired(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	sc.join("bob", room)
	bob := sc.open("bob", "")
	before := bob.LastID
	sc.say("alice", room, "aged")
	aged := sseExpectMessage(t, bob, room, "aged").ID
	sc.say("alice", room, "kept")
	sseExpectMessage(t, bob, room, "kept")
	bob.Close()

	sc.testServer.stop()
	db, err := sql.Open("sqlite3", "file:"+sc.cfg.dbPath()+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := time.Now().Add(-2 * sc.cfg.Retention).UnixMilli()
	if _, err := db.Exec(`UPDATE events SET created_at = ? WHERE seq <= ?`, old, sseSeq(t, aged)); err != nil {
		t.Fatalf("age the log: %v", err)
	}
	sc.restartServer()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var through int64
		err := db.QueryRow(`SELECT value FROM meta WHERE key = 'pruned_through'`).Scan(&through)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("read the pruned mark: %v", err)
		}
		if through == sseSeq(t, aged) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the log is pruned through %d; want %d", through, sseSeq(t, aged))
		}
	}

	expired := sc.open("bob", before)
	var data struct{ Reason string }
	if f := expired.ExpectData("resync", &data); f.HasID || data.Reason != "expired" {
		t.Fatalf("resync from %s = id %q reason %q; want no id, reason expired", before, f.ID, data.Reason)
	}
	resumed := sc.open("bob", aged)
	sseExpectMessage(t, resumed, room, "kept")
	sc.say("alice", room, "live")
	sseExpectMessage(t, expired, room, "live")
	sseExpectMessage(t, resumed, room, "live")
}

// ---------------------------------------------------------------------------
// 7. Slow consumers

// openUnread opens user's stream on a raw TCP connection and reads only the
// response head. Nothing reads the body until the caller does, so the
// server's writes fill the socket buffers and then the stream's queue.
func (sc *streamScene) openUnread(user string) (net.Conn, *http.Response) {
	sc.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(sc.URL, "http://"))
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest("GET", sc.URL+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+sc.tok(user))
	req.Header.Set("Accept", "text/event-stream")
	if err := req.Write(conn); err != nil {
		sc.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		sc.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		sc.t.Fatalf("GET /v1/stream = %d; want 200", resp.StatusCode)
	}
	return conn, resp
}

// A reader that stops reading is disconnected once its queue is full, while
// another reader of the same room gets every message without waiting for
// it; the slow reader then resumes from the last event it did receive and
// misses nothing.
func TestStreamSlowConsumerIsDroppedAndResumes(t *testing.T) {
	// Large messages fill the socket buffers (some MB on loopback) in about
	// 150 posts; then 16 more frames fill the queue.
	const textSize = 32000
	sc := newStreamScene(t, map[string]string{"HERALD_QUEUE_SIZE": "16", "HERALD_MAX_TEXT": strconv.Itoa(textSize)})
	room := sc.room("alice", "firehose", false)
	sc.join("bob", room)
	sc.join("sloth", room)
	bob := sc.open("bob", "")
	conn, slow := sc.openUnread("sloth")

	// Post in lock step with bob, so bob never has more than one frame
	// queued: only the sloth can fall behind. Stop once the server counts
	// a dropped stream (looking every 8 posts: /metrics is slow under
	// -race); the bound only keeps a broken server from looping.
	var texts []string
	var bobs []sseEvent
	post := func(text string) {
		texts = append(texts, text)
		sc.say("alice", room, text)
		bobs = append(bobs, sseExpectMessage(t, bob, room, text))
	}
	for i := 0; i%8 != 0 || sc.metric("herald_streams_dropped_total") == 0; i++ {
		if i == 2000 {
			t.Fatalf("no stream dropped after %d unread messages of %d bytes", i, textSize)
		}
		head := fmt.Sprintf("big-%04d ", i)
		post(head + strings.Repeat("x", textSize-len(head)))
	}
	t.Logf("the server dropped the sloth after %d unread messages", len(texts))
	for _, text := range sseNumbered("after the drop", 3) {
		post(text)
	}
	sseCheckMessages(t, "bob", bobs, texts)

	// The server ended the sloth's stream: reading it now yields what was
	// written before the drop, then the end.
	got, lastID := readToEnd(t, "dropped", conn, slow.Body)
	if len(got) >= len(texts) {
		t.Fatalf("the sloth read all %d messages before being dropped; want it behind", len(got))
	}

	again := sc.open("sloth", lastID)
	got = append(got, sseRead(t, again, len(texts)-len(got))...)
	sseCheckMessages(t, "sloth", got, texts)
	if n := sc.metric("herald_streams_dropped_total"); n != 1 {
		t.Fatalf("herald_streams_dropped_total = %v; want 1 (only the sloth)", n)
	}
}

// A reader whose socket stays full past the write timeout, while its queue
// still has room, is dropped by the timeout: that is counted as a dropped
// stream too, and the stream resumes by replay like any other drop.
func TestStreamWriteTimeoutCountsAsDropped(t *testing.T) {
	const textSize = 32000
	// A queue far larger than what the test posts: only the write timeout
	// can end the sloth's stream.
	sc := newStreamScene(t, map[string]string{
		"HERALD_QUEUE_SIZE": "100000", "HERALD_QUEUE_BYTES": strconv.Itoa(1 << 30),
		"HERALD_WRITE_TIMEOUT": "100ms", "HERALD_MAX_TEXT": strconv.Itoa(textSize),
	})
	room := sc.room("alice", "firehose", false)
	sc.join("sloth", room)
	conn, slow := sc.openUnread("sloth")

	var texts []string
	for i := 0; i%8 != 0 || sc.metric("herald_streams_dropped_total") == 0; i++ {
		if i == 2000 {
			t.Fatalf("herald_streams_dropped_total = 0 after %d unread messages of %d bytes; want the timed-out stream counted", i, textSize)
		}
		head := fmt.Sprintf("big-%04d ", i)
		texts = append(texts, head+strings.Repeat("x", textSize-len(head)))
		sc.say("alice", room, texts[len(texts)-1])
	}
	if n := sc.metric("herald_streams_dropped_total"); n != 1 {
		t.Fatalf("herald_streams_dropped_total = %v; want 1 (only the sloth)", n)
	}

	// The stream ended; what it delivered, then a replay, is everything.
	got, lastID := readToEnd(t, "timed-out", conn, slow.Body)
	again := sc.open("sloth", lastID)
	got = append(got, sseRead(t, again, len(texts)-len(got))...)
	sseCheckMessages(t, "sloth", got, texts)
}

// readToEnd reads a stream the server ended (what is named which) until
// its end: the messages it delivered, and the id of its last event. A
// stream that does not end within streamtest.Timeout fails the test.
func readToEnd(t *testing.T, which string, conn net.Conn, body io.Reader) (got []sseEvent, lastID string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(streamtest.Timeout))
	dec := stream.NewDecoder(body)
	for {
		f, err := dec.Next()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the %s stream did not end (after %d events)", which, len(got))
		}
		if err != nil {
			return got, lastID // the end, clean or cut mid-frame; only whole frames count
		}
		if f.HasID {
			lastID = f.ID
		}
		if f.Event == "message:created" {
			e := sseEvent{Frame: f}
			if err := json.Unmarshal([]byte(f.Data), &e.p); err != nil {
				t.Fatalf("message:created data %q: %v", f.Data, err)
			}
			got = append(got, e)
		}
	}
}

// ---------------------------------------------------------------------------
// 8. Refusals that EventSource survives

// A stream beyond the per-user cap answers 200 with retry: and a closing
// comment, so EventSource retries instead of giving up; other users are not
// affected, and once the user's stream closes a retry gets in.
func TestStreamTooManyStreamsAnswers200(t *testing.T) {
	sc := newStreamScene(t, map[string]string{"HERALD_MAX_STREAMS_PER_USER": "1"})
	room := sc.room("alice", "lobby", false)
	sc.join("bob", room)
	first := sc.open("bob", "")
	auth := http.Header{"Authorization": {"Bearer " + sc.tok("bob")}}

	second := sc.streamQuery(nil, auth)
	frames := second.Ended()
	if reason := sseClosingReason(t, frames); reason != "too_many_streams" {
		t.Fatalf("second stream of bob = %+v; want it closed with reason too_many_streams", frames)
	}
	for _, f := range frames {
		if f.HasData {
			t.Fatalf("refused stream sent event %s %s; want none", f.Event, f.Data)
		}
	}

	sc.open("carol", "") // another user's stream is not capped by bob's
	sc.say("alice", room, "still live")
	sseExpectMessage(t, first, room, "still live")

	// Reconnect as EventSource does, waiting out each retry: hint, until
	// the server has seen the first stream go.
	first.Close()
	for attempt := 1; ; attempt++ {
		c := sc.streamQuery(nil, auth)
		f, ok := c.Frame()
		for ok && !f.HasData && !strings.HasPrefix(f.Comment, "closing") {
			f, ok = c.Frame()
		}
		if ok && f.Event == "ready" {
			break
		}
		if !ok || attempt == 50 {
			t.Fatalf("attempt %d after closing bob's stream = %+v; want ready", attempt, f)
		}
		time.Sleep(time.Duration(f.Retry) * time.Millisecond)
	}
}

// At shutdown an open stream gets retry: and ": closing shutdown", then
// ends, so its client reconnects (elsewhere or later).
func TestStreamShutdownClosesStreams(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	alice := sc.open("alice", "")
	sc.say("alice", room, "before shutdown")
	sseExpectMessage(t, alice, room, "before shutdown")

	sc.stop()
	if reason := sseClosingReason(t, alice.Ended()); reason != "shutdown" {
		t.Fatalf("closing reason = %q; want shutdown", reason)
	}
}

// ---------------------------------------------------------------------------
// 9. Tickets

// A ticket opens one stream without a header and sets the stream cookie;
// the same URL works again only with that cookie (an EventSource
// reconnecting), and then resumes from Last-Event-ID.
func TestStreamTicket(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	sc.join("bob", room)
	ticket := func(user string) string {
		var tk struct {
			Ticket    string
			ExpiresIn int `json:"expires_in"`
		}
		sc.must(http.StatusCreated, "POST", "/v1/stream/tickets", sc.tok(user), nil, &tk)
		if tk.Ticket == "" || tk.ExpiresIn <= 0 {
			t.Fatalf("ticket = %+v; want a ticket and a positive expires_in", tk)
		}
		return tk.Ticket
	}
	streamURL := func(ticket string) string { return "/v1/stream?" + url.Values{"ticket": {ticket}}.Encode() }

	bobTicket := ticket("bob")
	c := streamtest.Connect(t, sc.URL+streamURL(bobTicket), nil)
	var ready struct{ User string }
	c.ExpectData("ready", &ready)
	if ready.User != "bob" {
		t.Fatalf("ready user = %q; want bob", ready.User)
	}
	cookie := sseStreamCookie(t, c.Resp)
	sc.say("alice", room, "seen")
	lastID := sseExpectMessage(t, c, room, "seen").ID
	c.Close()
	sc.say("alice", room, "missed")

	carol := streamtest.Connect(t, sc.URL+streamURL(ticket("carol")), nil)
	carol.Expect("ready")
	carolCookie := sseStreamCookie(t, carol.Resp)
	// Bob's cookie under the signature of Carol's: well formed, but not
	// signed by the server.
	bobPass, _, _ := strings.Cut(cookie.Value, ".")
	_, carolMAC, _ := strings.Cut(carolCookie.Value, ".")
	forgedCookie := &http.Cookie{Name: cookie.Name, Value: bobPass + "." + carolMAC}

	refused := []struct {
		name   string
		url    string
		cookie *http.Cookie
	}{
		{"spent ticket without cookie", streamURL(bobTicket), nil},
		{"spent ticket with another user's cookie", streamURL(bobTicket), carolCookie},
		{"spent ticket with a forged cookie", streamURL(bobTicket), forgedCookie},
		{"garbage ticket", streamURL("garbage"), nil},
		{"garbage ticket with a valid cookie", streamURL("garbage"), cookie},
		{"cookie without ticket", "/v1/stream", cookie},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			sc := sc.in(t)
			h := http.Header{}
			if tc.cookie != nil {
				h.Set("Cookie", tc.cookie.String())
			}
			resp, body := sc.doResp("GET", tc.url, "", nil, h)
			var e struct{ Error struct{ Code string } }
			if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
				t.Fatalf("GET %s = %d %s; want 401 with a JSON error", tc.url, resp.StatusCode, body)
			}
		})
	}

	// EventSource reconnects with its original URL, the cookie the first
	// answer set, and the id of the last event it saw.
	h := http.Header{"Cookie": {cookie.String()}, "Last-Event-ID": {lastID}}
	again := streamtest.Connect(t, sc.URL+streamURL(bobTicket), h)
	if f := again.Expect("ready"); f.ID != lastID {
		t.Fatalf("ready id on reconnect = %s; want %s", f.ID, lastID)
	}
	sseExpectMessage(t, again, room, "missed")
}

// sseStreamCookie returns the herald_stream cookie that resp sets, and fails
// unless it is HttpOnly and scoped to the stream.
func sseStreamCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, ck := range resp.Cookies() {
		if ck.Name == "herald_stream" {
			if !ck.HttpOnly || ck.Path != "/v1/stream" || ck.Value == "" {
				t.Fatalf("stream cookie = %s; want a value, HttpOnly and Path=/v1/stream", ck)
			}
			return &http.Cookie{Name: ck.Name, Value: ck.Value}
		}
	}
	t.Fatalf("Set-Cookie = %q; want a herald_stream cookie", resp.Header.Values("Set-Cookie"))
	return nil
}

// ---------------------------------------------------------------------------
// 10. Heartbeat

// An idle stream receives ": ping" comments at the configured interval,
// which ready announces.
func TestStreamHeartbeat(t *testing.T) {
	sc := newStreamScene(t, map[string]string{"HERALD_HEARTBEAT": "50ms"})
	c := sc.streamQuery(nil, http.Header{"Authorization": {"Bearer " + sc.tok("alice")}})
	var ready struct {
		Heartbeat int `json:"heartbeat_ms"`
	}
	c.ExpectData("ready", &ready)
	if ready.Heartbeat != 50 {
		t.Fatalf("ready heartbeat_ms = %d; want 50", ready.Heartbeat)
	}
	for pings := 0; pings < 3; {
		f, ok := c.Frame()
		switch {
		case ok && !f.HasID && sseEphemeral[f.Event]:
			// The user's own presence; not idle traffic of the log.
		case !ok || f.Comment != "ping" || f.HasData || f.HasID:
			t.Fatalf("idle frame after %d pings = %+v (ok %v); want a bare ping comment", pings, f, ok)
		default:
			pings++
		}
	}
}

// ---------------------------------------------------------------------------
// 11. Framing

// Line breaks of every kind and unusual characters in a message travel as
// one data: line of JSON that decodes back to the exact text.
func TestStreamFramingSpecialText(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "lobby", false)
	c := sc.open("alice", "")
	texts := []struct{ name, text string }{
		{"LF", "one\ntwo"},
		{"CR", "one\rtwo"},
		{"CRLF", "one\r\ntwo"},
		{"trailing and leading breaks", "\n\r\nmiddle\r\n\n"},
		{"blank line", "first\n\nsecond"},
		{"SSE field injection", "x\n\nid: 0-1\nevent: resync\ndata: {}\n\n: comment"},
		{"tab", "a\tb"},
		{"emoji", "ok 👍🏽 🧑‍🤝‍🧑 😀"},
		{"right to left", "שלום مرحبا"},
		{"line and paragraph separators", "a\u2028b\u2029c"},
		{"JSON and HTML specials", `"quoted" \back\slash </script> <&> '`},
		{"non-BMP and combining", "𝔘𝔫𝔦 e\u0301"},
	}
	for _, tc := range texts {
		sc.say("alice", room, tc.text)
		e := sseNext(t, c)
		switch {
		case e.Event != "message:created":
			t.Fatalf("%s: next event = %s; want message:created", tc.name, e.describe(nil))
		case strings.ContainsAny(e.Data, "\r\n"):
			t.Errorf("%s: data spans several data: lines: %q", tc.name, e.Data)
		case e.p.Text != tc.text:
			t.Errorf("%s: decoded text = %q; want %q", tc.name, e.p.Text, tc.text)
		}
	}
}

// The exact bytes of a stream, with its random parts normalised, against
// testdata/*.golden (go test -run TestStreamGolden -update rewrites them).
func TestStreamGolden(t *testing.T) {
	tests := []struct {
		name   string
		lastID string
		act    func(sc *streamScene, room string) // runs once ready has arrived
		frames int                                // how many frames act causes
	}{
		{"stream_events", "", func(sc *streamScene, room string) {
			sc.join("bob", room)
			sc.say("alice", room, "hello")
			sc.say("bob", room, "two\nlines")
			sc.remove("alice", room, "bob")
		}, 4},
		{"stream_resync", "garbage", func(sc *streamScene, room string) {
			sc.say("alice", room, "after resync")
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := newStreamScene(t, nil)
			room := sc.room("alice", "golden", false)
			resp, br := sc.openRaw("alice", tc.lastID)
			for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q; want %q", k, got, want)
				}
			}
			got := sseReadRawFrames(t, br, 2) // retry:, ready
			if tc.lastID != "" {
				got = append(got, sseReadRawFrames(t, br, 1)...) // resync
			}
			tc.act(sc, room)
			got = append(got, sseReadRawFrames(t, br, tc.frames)...)
			sseCheckGolden(t, tc.name, sseNormalise(got, room))
		})
	}
}

// openRaw opens user's stream for reading its bytes.
func (sc *streamScene) openRaw(user, lastID string) (*http.Response, *bufio.Reader) {
	sc.t.Helper()
	// A stuck read fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), streamtest.Timeout)
	sc.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", sc.URL+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+sc.tok(user))
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		sc.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		sc.t.Fatalf("GET /v1/stream = %d; want 200", resp.StatusCode)
	}
	return resp, bufio.NewReader(resp.Body)
}

// sseReadRawFrames returns the bytes of the next n frames, each ended by a
// blank line, leaving out ephemeral events, whose place among the others
// is not fixed.
func sseReadRawFrames(t *testing.T, br *bufio.Reader, n int) []byte {
	t.Helper()
	var out, frame []byte
	for n > 0 {
		line, err := br.ReadBytes('\n')
		frame = append(frame, line...)
		if err != nil {
			t.Fatalf("read stream after %q: %v", append(out, frame...), err)
		}
		if len(line) > 1 {
			continue
		}
		if !sseRawEphemeral(frame) {
			out = append(out, frame...)
			n--
		}
		frame = nil
	}
	return out
}

// sseRawEphemeral reports whether a raw frame is an ephemeral event: an
// event type of sseEphemeral and no id.
func sseRawEphemeral(frame []byte) bool {
	typ, hasID := "", false
	for line := range strings.Lines(string(frame)) {
		hasID = hasID || strings.HasPrefix(line, "id:")
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			typ = strings.TrimSuffix(v, "\n")
		}
	}
	return !hasID && sseEphemeral[typ]
}

var (
	sseGoldenEpoch = regexp.MustCompile(`(?m)^id: [^\n]*-(\d+)$`)
	sseGoldenTime  = regexp.MustCompile(`"created_at":"[^"]*"`)
)

// sseNormalise replaces what changes from run to run: the epoch, the
// room id and timestamps. Positions and message ids stay: a fresh data dir
// numbers them the same way every time.
func sseNormalise(b []byte, room string) []byte {
	b = sseGoldenEpoch.ReplaceAll(b, []byte("id: EPOCH-$1"))
	b = sseGoldenTime.ReplaceAll(b, []byte(`"created_at":"TIME"`))
	return bytes.ReplaceAll(b, []byte(room), []byte("ROOM"))
}

// sseCheckGolden compares got with testdata/name.golden, or rewrites the
// file under -update.
func sseCheckGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestStreamGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("stream bytes differ from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// A stream ends when the token it opened with expires, with a retry hint,
// and the client, back with a fresh token and its Last-Event-ID, misses
// nothing.
func TestStreamEndsWhenTokenExpires(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "r", false)
	sc.join("bob", room)
	short, err := api.Mint(sc.secret, "bob", "Bob", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := sc.stream(short, "")
	sc.say("alice", room, "before")
	sseEventsBefore(t, c, "before")
	if reason := sseClosingReason(t, c.Ended()); reason != "token_expired" {
		t.Fatalf("stream of a token that expired ended with %q; want closing token_expired", reason)
	}
	sc.say("alice", room, "while away")
	again := sc.open("bob", c.LastID)
	sseExpectMessage(t, again, room, "while away")
}

// A stream ticket opens one stream, also across a restart of the server.
func TestStreamTicketSpentAcrossRestart(t *testing.T) {
	sc := newStreamScene(t, nil)
	var tk struct{ Ticket string }
	sc.must(http.StatusCreated, "POST", "/v1/stream/tickets", sc.tok("bob"), nil, &tk)
	u := "/v1/stream?" + url.Values{"ticket": {tk.Ticket}}.Encode()
	c := streamtest.Connect(t, sc.URL+u, nil)
	c.Expect("ready")
	c.Close()
	sc.restartServer()
	resp, body := sc.doResp("GET", u, "", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || errorCode(t, body) != "invalid_ticket" {
		t.Fatalf("the spent ticket after a restart = %d %s; want 401 invalid_ticket", resp.StatusCode, body)
	}
}

// A replay longer than --max-replay stops with resync too_far after the
// events it sent, then live events follow.
func TestStreamReplayBounded(t *testing.T) {
	sc := newStreamScene(t, map[string]string{"HERALD_MAX_REPLAY": "5"})
	room := sc.room("alice", "busy", false)
	sc.join("bob", room)
	away := sc.open("bob", "")
	from := away.LastID
	away.Close()
	for _, text := range sseNumbered("m", 12) {
		sc.say("alice", room, text)
	}
	again := sc.open("bob", from)
	replayed := sseRead(t, again, 5)
	if f := again.Next(); f.Event != "resync" || !strings.Contains(f.Data, "too_far") {
		t.Fatalf("after %d replayed events: %s %s; want resync too_far", len(replayed), f.Event, f.Data)
	}
	sc.say("alice", room, "live")
	sseExpectMessage(t, again, room, "live")
	// Operators see it: one resync, five events replayed.
	for name, want := range map[string]float64{"herald_stream_resyncs_total": 1, "herald_replayed_events_total": 5} {
		if got := sc.metric(name); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
}
