package stream

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/heraldchat/herald/internal/event"
)

// A Last-Event-ID older than what retention kept cannot be replayed in
// full: the stream says resync, with the reason expired, and goes live from
// the head. The position retention trimmed through is still honoured: the
// client has seen everything up to it, and the rest is there.
func TestServeResyncWhenExpired(t *testing.T) {
	tests := []struct {
		name   string
		lastID string
		ready  string   // ready's id: where the stream continues from
		resync string   // "" for none
		replay []string // the ids replayed before the marker
	}{
		{"from the start", "mem-0", "mem-6", "expired", nil},
		{"inside the trimmed part", "mem-2", "mem-6", "expired", nil},
		{"the last trimmed", "mem-3", "mem-3", "", idsOf(4, 5, 6)},
		{"after the trim", "mem-5", "mem-5", "", idsOf(6)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newMemLog()
			l.append("r", event.MemberJoined, "bob")
			l.appendMessages("r", 5)
			l.trim(3)
			h := newMemHub(t, l, Options{})
			srv := httptest.NewServer(streamHandler(h))
			t.Cleanup(srv.Close)

			s := dialStream(t, srv.Client(), srv.URL, "bob", tt.lastID)
			if ready := s.next(); ready.Event != event.Ready || ready.ID != tt.ready {
				t.Fatalf("first event = %s %q; want ready %q", ready.Event, ready.ID, tt.ready)
			}
			if tt.resync != "" {
				if f := s.next(); f.Event != event.Resync || f.HasID || f.Data != `{"reason":"`+tt.resync+`"}` {
					t.Fatalf("after ready = %s id %q %s; want resync without id, reason %s", f.Event, f.ID, f.Data, tt.resync)
				}
			}
			marker := idsOf(l.append("r", event.MessageCreated, ""))[0]
			var got []string
			for f := s.next(); f.ID != marker; f = s.next() {
				got = append(got, f.Event+" "+f.ID)
			}
			var want []string
			for _, id := range tt.replay {
				want = append(want, event.MessageCreated+" "+id)
			}
			if !slices.Equal(got, want) {
				t.Errorf("events before the marker = %v; want %v", got, want)
			}
			resyncs := int64(0)
			if tt.resync != "" {
				resyncs = 1
			}
			if st := h.Stats(); st.Resyncs != resyncs || st.Replayed != int64(len(tt.replay)) {
				t.Errorf("Stats: %d resyncs, %d events replayed; want %d, %d", st.Resyncs, st.Replayed, resyncs, len(tt.replay))
			}
		})
	}
}

// A replay longer than MaxReplay sends that many events, then resync
// too_far, then goes live: the client refetches the rest by REST.
func TestServeReplayTooLong(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	l.appendMessages("r", 5)
	h := newMemHub(t, l, Options{MaxReplay: 3})
	srv := httptest.NewServer(streamHandler(h))
	t.Cleanup(srv.Close)

	s := dialStream(t, srv.Client(), srv.URL, "bob", "mem-1")
	if ready := s.next(); ready.Event != event.Ready || ready.ID != "mem-1" {
		t.Fatalf("first event = %s %q; want ready mem-1", ready.Event, ready.ID)
	}
	var got []string
	for range 3 {
		got = append(got, s.next().ID)
	}
	if want := idsOf(2, 3, 4); !slices.Equal(got, want) {
		t.Fatalf("replayed %v; want %v", got, want)
	}
	if f := s.next(); f.Event != event.Resync || f.Data != `{"reason":"too_far"}` {
		t.Fatalf("after 3 replayed = %s %s; want resync too_far", f.Event, f.Data)
	}
	live := idsOf(l.append("r", event.MessageCreated, ""))[0]
	if f := s.next(); f.ID != live {
		t.Fatalf("after the resync = %s %q; want the live %s", f.Event, f.ID, live)
	}
	if st := h.Stats(); st.Resyncs != 1 || st.Replayed != 3 {
		t.Errorf("Stats: %d resyncs, %d events replayed; want 1, 3", st.Resyncs, st.Replayed)
	}
}

// Retention may delete events that a replay from the durable log still
// has to send. The stream must not send what is left, with a gap: it ends
// with a retry hint, and the client's next attempt gets resync.
func TestServeEndsReplayTrimmedMidway(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	l.appendMessages("r", 10)
	// The hub starts at the head: the replay below reads the log, not the
	// tail.
	h := newMemHub(t, l, Options{})
	srv := httptest.NewServer(streamHandler(h))
	t.Cleanup(srv.Close)

	// Retention runs while the replay reads bob's rooms.
	l.hook(nil, func(q event.Query) {
		if q.Rooms != nil {
			l.trim(4)
		}
	})
	s := dialStream(t, srv.Client(), srv.URL, "bob", "mem-1")
	if ready := s.next(); ready.Event != event.Ready || ready.ID != "mem-1" {
		t.Fatalf("first event = %s %q; want ready mem-1", ready.Event, ready.ID)
	}
	s.expectClosing(errUnavailable.Error())

	l.hook(nil, nil)
	s = dialStream(t, srv.Client(), srv.URL, "bob", "mem-1")
	if ready := s.next(); ready.Event != event.Ready || ready.ID != "mem-11" {
		t.Fatalf("again: first event = %s %q; want ready mem-11", ready.Event, ready.ID)
	}
	if f := s.next(); f.Event != event.Resync || f.Data != `{"reason":"expired"}` {
		t.Fatalf("again: after ready = %s %s; want resync expired", f.Event, f.Data)
	}
}

// A replay for a user in more rooms than it names to the durable log
// reads the range whole, a page per query whatever the number of rooms,
// and sends the same events: those of the user's rooms, in order.
func TestServeReplayOverManyRooms(t *testing.T) {
	l := newMemLog()
	const rooms = 4 * maxNamedRooms
	for i := range rooms {
		l.append(fmt.Sprint("r", i), event.MemberJoined, "bob")
	}
	from := l.append("elsewhere", event.MessageCreated, "")
	var want []string
	for _, i := range []int{0, rooms - 1, rooms / 2, 7} {
		want = append(want, idsOf(l.append(fmt.Sprint("r", i), event.MessageCreated, ""))...)
		l.append("elsewhere", event.MessageCreated, "")
	}
	// The hub starts at the head: the replay below reads the log, not the
	// tail.
	h := newMemHub(t, l, Options{})
	srv := httptest.NewServer(streamHandler(h))
	t.Cleanup(srv.Close)

	var (
		mu    sync.Mutex
		named []int
	)
	l.hook(nil, func(q event.Query) {
		if q.Subject == "" {
			mu.Lock()
			named = append(named, len(q.Rooms))
			mu.Unlock()
		}
	})
	s := dialStream(t, srv.Client(), srv.URL, "bob", idsOf(from)[0])
	if ready := s.next(); ready.Event != event.Ready {
		t.Fatalf("first event = %s; want ready", ready.Event)
	}
	marker := idsOf(l.append("r0", event.MessageCreated, ""))[0]
	var got []string
	for f := s.next(); f.ID != marker; f = s.next() {
		got = append(got, f.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("replay over %d rooms = %v; want %v", rooms, got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range named {
		if n > maxNamedRooms {
			t.Errorf("a range query of the replay names %d rooms; want at most %d, or none", n, maxNamedRooms)
		}
	}
}

// Over HTTP/2 a stream cannot leave net/http: it is written through the
// handler's ResponseWriter, flushed after each batch, and ends when the
// client resets it or the hub closes.
func TestServeHTTP2(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	h := newMemHub(t, l, Options{})
	srv := httptest.NewUnstartedServer(streamHandler(h))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	s := dialStream(t, srv.Client(), srv.URL, "bob", "")
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("stream over %s; want HTTP/2", s.resp.Proto)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}
	if ready := s.next(); ready.Event != event.Ready || ready.ID != "mem-1" {
		t.Fatalf("first event = %s %q; want ready mem-1", ready.Event, ready.ID)
	}
	waitSession(t, h, Session{User: "bob", Opened: true})
	live := l.append("r", event.MessageCreated, "")
	if f := s.next(); f.ID != idsOf(live)[0] {
		t.Fatalf("live event = %s %q; want %s", f.Event, f.ID, idsOf(live)[0])
	}

	// The client leaves: the stream leaves the hub.
	s.cancel()
	waitSession(t, h, Session{User: "bob"})

	// A replay, then live events, through the same writer.
	s = dialStream(t, srv.Client(), srv.URL, "bob", "mem-1")
	if ready := s.next(); ready.ID != "mem-1" {
		t.Fatalf("resumed ready id = %q; want mem-1", ready.ID)
	}
	if f := s.next(); f.ID != idsOf(live)[0] {
		t.Fatalf("replayed %s %q; want %s", f.Event, f.ID, idsOf(live)[0])
	}
	after := l.append("r", event.MessageCreated, "")
	if f := s.next(); f.ID != idsOf(after)[0] {
		t.Fatalf("live after replay = %s %q; want %s", f.Event, f.ID, idsOf(after)[0])
	}

	// Close ends it with a retry hint.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	s.expectClosing(errShutdown.Error())
}

// waitSession reads the hub's session feed until want comes.
func waitSession(t *testing.T, h *Hub, want Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		if slices.Contains(h.Sessions().Take(), want) {
			return
		}
		select {
		case <-h.Sessions().Ready():
		case <-ctx.Done():
			t.Fatalf("session feed: no %+v", want)
		}
	}
}

// A replay sends the events of the rooms the user belonged to at the time
// of each event: their own leave, nothing of that room after it, and a room
// they joined from their join on; their own room:deleted and nothing after
// it, never another member's; the events for them alone, in their place,
// never another user's; and no disconnect (a control event). It reads the
// tail when the tail holds the whole range and the log otherwise, page by
// page; both must agree.
func TestServeReplayFollowsMembershipAtEventTime(t *testing.T) {
	// history appends what bob missed after position 2, and returns the
	// positions he must be sent.
	history := func(l *memLog) []int64 {
		var want []int64
		keep := func(seq int64) { want = append(want, seq) }
		keep(l.append("a", event.MessageCreated, ""))
		l.append("e", event.MessageCreated, "")
		keep(l.append("b", event.MessageCreated, ""))
		keep(l.append("b", event.MemberLeft, "bob"))
		l.append("b", event.MessageCreated, "")
		l.append("c", event.MessageCreated, "")
		keep(l.append("c", event.MemberJoined, "bob"))
		keep(l.append("c", event.MessageCreated, ""))
		l.append("b", event.MemberJoined, "carol")
		keep(l.append("a", event.MessageCreated, ""))
		keep(l.append("a", event.MemberLeft, "bob"))
		l.append("a", event.MessageCreated, "")
		keep(l.append("f", event.MemberJoined, "bob"))
		keep(l.append("f", event.MemberJoined, "carol"))
		keep(l.append("f", event.MessageCreated, ""))
		keep(l.append("", event.Custom, "bob"))
		l.append("", event.Custom, "carol")
		l.append("", event.UserDisconnected, "bob")
		keep(l.append("f", event.MessageCreated, ""))
		l.append("f", event.RoomDeleted, "carol")
		keep(l.append("f", event.RoomDeleted, "bob"))
		l.append("f", event.MessageCreated, "") // none can follow; none would reach bob
		keep(l.append("", event.Custom, "bob"))
		// More than a page of the log's Range, of bob's rooms and of his
		// member events, so that reading the log takes several.
		for range replayPage/2 + 1 {
			keep(l.append("d", event.MemberJoined, "bob"))
			keep(l.append("d", event.MemberLeft, "bob"))
		}
		keep(l.append("e", event.MemberJoined, "bob")) // past the first page
		keep(l.append("e", event.MessageCreated, ""))
		last := l.appendMessages("c", replayPage+1)
		for seq := last - replayPage; seq <= last; seq++ {
			keep(seq)
		}
		keep(l.append("", event.Custom, "bob")) // after the last of his rooms' events
		return want
	}
	for _, from := range []string{"tail", "log"} {
		t.Run(from, func(t *testing.T) {
			l := newMemLog()
			l.append("a", event.MemberJoined, "bob")
			l.append("b", event.MemberJoined, "bob")
			var want []int64
			if from == "log" {
				want = history(l) // before the hub starts: only the log has it
			}
			h := newMemHub(t, l, Options{TailSize: 1 << 16})
			if from == "tail" {
				want = history(l)
			}
			reach(t, h, want[len(want)-1])
			srv := httptest.NewServer(streamHandler(h))
			t.Cleanup(srv.Close)

			s := dialStream(t, srv.Client(), srv.URL, "bob", "mem-2")
			if ready := s.next(); ready.Event != event.Ready || ready.ID != "mem-2" {
				t.Fatalf("first event = %s %q; want ready mem-2", ready.Event, ready.ID)
			}
			marker := l.append("c", event.MessageCreated, "")
			var got []string
			for f := s.next(); f.ID != idsOf(marker)[0]; f = s.next() {
				got = append(got, f.ID)
			}
			if !slices.Equal(got, idsOf(want...)) {
				t.Errorf("replay from %s: %s", from, diffIDs(got, idsOf(want...)))
			}
		})
	}
}

// A disconnected stream gets what came before the disconnect, then a
// retry hint and the closing comment: a client that may come back does,
// and one whose token is refused learns it when it tries.
func TestServeDisconnect(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	h := newMemHub(t, l, Options{})
	srv := httptest.NewServer(streamHandler(h))
	t.Cleanup(srv.Close)
	s := dialStream(t, srv.Client(), srv.URL, "bob", "")
	if ready := s.next(); ready.Event != event.Ready {
		t.Fatalf("first event = %s; want ready", ready.Event)
	}
	msg := l.append("r", event.MessageCreated, "")
	l.appendData("", event.UserDisconnected, "bob", `{"user":"bob"}`)
	if f := s.next(); f.ID != idsOf(msg)[0] {
		t.Fatalf("next event = %s %s; want the message before the disconnect", f.Event, f.ID)
	}
	s.expectClosing(errDisconnected.Error())
}
