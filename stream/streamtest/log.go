package streamtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/stream"
)

// LogHarness is a stream.Log under test with the means to change it. Each
// method commits a change through the implementation's own write path
// (the store, a sequencer) and returns once it committed; its events may
// reach the log a little later, as they do in production.
type LogHarness interface {
	Log() stream.Log
	Members() stream.Membership
	// CreateRoom creates a room owned by owner, who joins it, and returns
	// its id.
	CreateRoom(t testing.TB, owner string) string
	Join(t testing.TB, user, room string)
	Leave(t testing.TB, user, room string)
	// Post posts a message of user's in room.
	Post(t testing.TB, user, room string)
	// SendTo logs an event for user alone (a custom event of the server
	// API), in no room.
	SendTo(t testing.TB, user string)
	// DeleteRoom deletes a room as its owner: a room:deleted about each
	// member.
	DeleteRoom(t testing.TB, owner, room string)
	// Trim makes retention delete the events through position through.
	Trim(t testing.TB, through int64)
}

// NewLogHarness opens a new, empty log whose live window (what Read
// serves before it returns event.ErrTrimmed) is no more than live events.
type NewLogHarness func(t *testing.T, live int) LogHarness

// TestLog is the contract of stream.Log (and of the Membership beside
// it) that every implementation passes: order, dense positions, bounded
// waits, ranges, trimming and epochs.
func TestLog(t *testing.T, newLog NewLogHarness) {
	t.Run("OrderAndDensity", func(t *testing.T) { testLogOrder(t, newLog) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testLogConcurrent(t, newLog) })
	t.Run("BoundedWait", func(t *testing.T) { testLogBoundedWait(t, newLog) })
	t.Run("Range", func(t *testing.T) { testLogRange(t, newLog) })
	t.Run("LiveWindow", func(t *testing.T) { testLogLiveWindow(t, newLog) })
	t.Run("Trim", func(t *testing.T) { testLogTrim(t, newLog) })
	t.Run("Epochs", func(t *testing.T) { testLogEpochs(t, newLog) })
	t.Run("Snapshot", func(t *testing.T) { testLogSnapshot(t, newLog) })
	t.Run("UserEvents", func(t *testing.T) { testLogUserEvents(t, newLog) })
	t.Run("RoomDeletion", func(t *testing.T) { testLogRoomDeletion(t, newLog) })
}

// head returns the log's head through its Membership.
func head(t testing.TB, h LogHarness) int64 {
	t.Helper()
	_, pos, err := h.Members().Snapshot(context.Background(), "")
	if err != nil {
		t.Fatalf("Snapshot(\"\") = %v", err)
	}
	return pos
}

// ReadN reads the log from after until it has n events, as a hub does
// (Range when Read says it is behind), failing the test after Timeout. It
// checks that positions follow one another.
func ReadN(t testing.TB, l stream.Log, after int64, n int) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var out []event.Event
	for len(out) < n {
		evs, err := l.Read(ctx, after, n-len(out))
		if errors.Is(err, event.ErrTrimmed) {
			evs, err = l.Range(ctx, event.Query{After: after, UpTo: 1<<63 - 1, Limit: n - len(out)})
		}
		if err != nil {
			t.Fatalf("Read(after %d) = %v after %d of %d events", after, err, len(out), n)
		}
		for _, e := range evs {
			if e.Seq != after+1 {
				t.Fatalf("Read returned position %d after %d; want %d (dense, increasing)", e.Seq, after, after+1)
			}
			after = e.Seq
		}
		out = append(out, evs...)
	}
	return out
}

func describe(evs []event.Event, rooms map[string]string) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s %s %s", e.Type, rooms[e.Room], e.Subject)
	}
	return out
}

func testLogOrder(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	start := head(t, h)
	a := h.CreateRoom(t, "alice")
	b := h.CreateRoom(t, "bob")
	h.Join(t, "bob", a)
	h.Post(t, "alice", a)
	h.Post(t, "bob", b)
	h.Leave(t, "bob", a)
	h.Post(t, "alice", a)
	names := map[string]string{a: "A", b: "B"}
	got := describe(ReadN(t, h.Log(), start, 7), names)
	want := []string{
		"member:joined A alice", "member:joined B bob", "member:joined A bob",
		"message:created A ", "message:created B ", "member:left A bob", "message:created A ",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("log after %d = %q; want %q", start, got, want)
	}
	if evs, err := h.Log().Read(context.Background(), start+7, 10); err != nil || len(evs) != 0 {
		// The bounded wait returns none: nothing more was written.
		t.Fatalf("Read(after the last) = %d events, %v; want none", len(evs), err)
	}
}

func testLogConcurrent(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 4096)
	start := head(t, h)
	room := h.CreateRoom(t, "alice")
	start = ReadN(t, h.Log(), start, 1)[0].Seq // the owner's join
	const writers, each = 8, 20
	var wg sync.WaitGroup
	for w := range writers {
		user := fmt.Sprint("u", w)
		h.Join(t, user, room)
		wg.Go(func() {
			for range each {
				h.Post(t, user, room)
			}
		})
	}
	wg.Wait()
	evs := ReadN(t, h.Log(), start, writers*(1+each))
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Type]++
	}
	if counts[event.MessageCreated] != writers*each || counts[event.MemberJoined] != writers {
		t.Fatalf("log holds %v; want %d messages and %d joins, each once", counts, writers*each, writers)
	}
	if got, err := h.Log().Range(context.Background(), event.Query{After: start, UpTo: start + int64(len(evs)), Limit: 10_000}); err != nil || len(got) != len(evs) {
		t.Fatalf("Range over what Read returned = %d events, %v; want %d", len(got), err, len(evs))
	}
}

func testLogBoundedWait(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	start := head(t, h)
	room := h.CreateRoom(t, "alice")
	pos := ReadN(t, h.Log(), start, 1)[0].Seq

	// With nothing new, Read returns by itself, without an error.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := h.Log().Read(ctx, pos, 10)
	if err != nil || len(evs) != 0 || ctx.Err() != nil {
		t.Fatalf("Read(at the head) = %d events, %v (ctx %v); want none, nil, before the context ends", len(evs), err, ctx.Err())
	}

	// A waiting Read wakes for a new event.
	got := make(chan []event.Event, 1)
	go func() {
		for ctx.Err() == nil {
			evs, err := h.Log().Read(ctx, pos, 10)
			if err != nil || len(evs) > 0 {
				got <- evs
				return
			}
		}
		got <- nil
	}()
	h.Post(t, "alice", room)
	if evs := <-got; len(evs) != 1 || evs[0].Seq != pos+1 || evs[0].Type != event.MessageCreated {
		t.Fatalf("waiting Read = %+v; want the message at %d", evs, pos+1)
	}

	// Cancelling ends a Read that waits.
	cctx, ccancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.Log().Read(cctx, pos+1, 10)
		done <- err
	}()
	ccancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel = %v; want nil or context.Canceled", err)
		}
	case <-time.After(Timeout):
		t.Fatalf("Read did not return within %v of its context ending", Timeout)
	}
}

func testLogRange(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	start := head(t, h)
	a := h.CreateRoom(t, "alice")
	b := h.CreateRoom(t, "alice")
	h.Join(t, "bob", a)
	h.Post(t, "alice", a)
	h.Post(t, "alice", b)
	h.Leave(t, "bob", a)
	h.Join(t, "bob", b)
	all := ReadN(t, h.Log(), start, 7)
	end := all[len(all)-1].Seq
	names := map[string]string{a: "A", b: "B"}
	ctx := context.Background()
	tests := []struct {
		name string
		q    event.Query
		want []string
	}{
		{"everything", event.Query{After: start, UpTo: end, Limit: 100}, describe(all, names)},
		{"bounds are (after, upTo]", event.Query{After: start + 2, UpTo: start + 4, Limit: 100}, describe(all[2:4], names)},
		{"limit", event.Query{After: start, UpTo: end, Limit: 2}, describe(all[:2], names)},
		{"one room", event.Query{After: start, UpTo: end, Rooms: []string{a}, Limit: 100},
			[]string{"member:joined A alice", "member:joined A bob", "message:created A ", "member:left A bob"}},
		{"no rooms", event.Query{After: start, UpTo: end, Rooms: []string{}, Limit: 100}, []string{}},
		{"member events about bob", event.Query{After: start, UpTo: end, Subject: "bob", Limit: 100},
			[]string{"member:joined A bob", "member:left A bob", "member:joined B bob"}},
		{"about bob in B", event.Query{After: start, UpTo: end, Rooms: []string{b}, Subject: "bob", Limit: 100},
			[]string{"member:joined B bob"}},
	}
	for _, tt := range tests {
		evs, err := h.Log().Range(ctx, tt.q)
		if err != nil {
			t.Errorf("%s: Range(%+v) = %v", tt.name, tt.q, err)
			continue
		}
		if got := describe(evs, names); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Range(%+v) = %q; want %q", tt.name, tt.q, got, tt.want)
		}
	}
}

// A reader further behind than the live window is told so, and Range
// still has what it missed.
func testLogLiveWindow(t *testing.T, newLog NewLogHarness) {
	const live = 16
	h := newLog(t, live)
	start := head(t, h)
	room := h.CreateRoom(t, "alice")
	start = ReadN(t, h.Log(), start, 1)[0].Seq
	for range 4 * live {
		h.Post(t, "alice", room)
	}
	end := start + 4*live
	ReadN(t, h.Log(), start, 4*live) // every post reached the log
	evs, err := h.Log().Read(context.Background(), start, 10)
	switch {
	case errors.Is(err, event.ErrTrimmed):
	case err == nil && len(evs) > 0 && evs[0].Seq == start+1:
		// A log may serve more than asked of its live window; then it
		// must still be complete.
	default:
		t.Fatalf("Read(after %d, %d events behind) = %d events, %v; want event.ErrTrimmed or the next events", start, end-start, len(evs), err)
	}
	got, err := h.Log().Range(context.Background(), event.Query{After: start, UpTo: end, Limit: 1000})
	if err != nil || len(got) != int(end-start) || got[0].Seq != start+1 {
		t.Fatalf("Range(%d, %d] = %d events, %v; want %d from %d", start, end, len(got), err, end-start, start+1)
	}
}

func testLogTrim(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	start := head(t, h)
	room := h.CreateRoom(t, "alice")
	for range 5 {
		h.Post(t, "alice", room)
	}
	end := ReadN(t, h.Log(), start, 6)[5].Seq
	if got := h.Log().TrimmedThrough(); got != 0 {
		t.Fatalf("TrimmedThrough before any trim = %d; want 0", got)
	}
	h.Trim(t, end-2)
	if got := h.Log().TrimmedThrough(); got < end-2 {
		t.Fatalf("TrimmedThrough after trimming through %d = %d; want at least that", end-2, got)
	}
	evs, err := h.Log().Range(context.Background(), event.Query{After: 0, UpTo: end, Limit: 100})
	if err != nil || len(evs) != 2 || evs[0].Seq != end-1 {
		t.Fatalf("Range after trim = %d events, %v; want the 2 newest", len(evs), err)
	}
	// The head never goes back, and new positions follow it.
	h.Post(t, "alice", room)
	if evs := ReadN(t, h.Log(), end, 1); evs[0].Seq != end+1 {
		t.Fatalf("first position after a trim = %d; want %d", evs[0].Seq, end+1)
	}
}

func testLogEpochs(t *testing.T, newLog NewLogHarness) {
	a, b := newLog(t, 16), newLog(t, 16)
	ea, eb := a.Log().Epoch(), b.Log().Epoch()
	if ea == "" || eb == "" || ea == eb {
		t.Fatalf("epochs of two logs = %q, %q; want two different, non-empty ones", ea, eb)
	}
	if _, err := stream.ParsePosition(stream.Position{Epoch: ea, Seq: 7}.String()); err != nil {
		t.Fatalf("an id of epoch %q does not parse back: %v", ea, err)
	}
	if got := a.Log().Epoch(); got != ea {
		t.Fatalf("Epoch changed from %q to %q", ea, got)
	}
}

// A snapshot is exact as of its head: the rooms after every member event
// up to the head, and none after it.
func testLogSnapshot(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	ctx := context.Background()
	start := head(t, h)
	a := h.CreateRoom(t, "alice")
	b := h.CreateRoom(t, "alice")
	check := func(what string, want ...string) {
		t.Helper()
		rooms, pos, err := h.Members().Snapshot(ctx, "bob")
		if err != nil {
			t.Fatalf("%s: Snapshot = %v", what, err)
		}
		// The membership must be what the log says as of pos.
		evs, err := h.Log().Range(ctx, event.Query{After: 0, UpTo: pos, Subject: "bob", Limit: 1000})
		if err != nil {
			t.Fatalf("%s: Range = %v", what, err)
		}
		in := map[string]bool{}
		for _, e := range evs {
			in[e.Room] = e.Type == event.MemberJoined
		}
		var fromLog []string
		for r, ok := range in {
			if ok {
				fromLog = append(fromLog, r)
			}
		}
		slices.Sort(rooms)
		slices.Sort(fromLog)
		slices.Sort(want)
		if !slices.Equal(rooms, fromLog) {
			t.Fatalf("%s: Snapshot = %v at %d, but the log says %v as of %d", what, rooms, pos, fromLog, pos)
		}
		if !slices.Equal(rooms, want) && pos >= head(t, h) {
			t.Fatalf("%s: Snapshot at the head = %v; want %v", what, rooms, want)
		}
	}
	check("before joining")
	h.Join(t, "bob", a)
	h.Join(t, "bob", b)
	ReadN(t, h.Log(), start, 4) // two rooms' joins, then bob's
	check("after joining two", a, b)
	h.Leave(t, "bob", a)
	ReadN(t, h.Log(), start+4, 1)
	check("after leaving one", b)
	if _, pos, err := h.Members().Snapshot(ctx, "nobody"); err != nil || pos != head(t, h) {
		t.Fatalf("Snapshot(nobody) = %d, %v; want the head %d", pos, err, head(t, h))
	}
}

// An event for one user has no room and the user as its subject: it is in
// the log in its place, among the user's subject events, and in no room's.
func testLogUserEvents(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	start := head(t, h)
	a := h.CreateRoom(t, "alice")
	h.Join(t, "bob", a)
	h.SendTo(t, "bob")
	h.Post(t, "alice", a)
	h.SendTo(t, "carol")
	h.SendTo(t, "bob")
	all := ReadN(t, h.Log(), start, 6)
	end := all[len(all)-1].Seq
	names := map[string]string{a: "A", "": "-"}
	want := []string{"member:joined A alice", "member:joined A bob", "custom - bob", "message:created A ", "custom - carol", "custom - bob"}
	if got := describe(all, names); !slices.Equal(got, want) {
		t.Fatalf("log = %q; want %q", got, want)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		q    event.Query
		want []string
	}{
		{"about bob", event.Query{After: start, UpTo: end, Subject: "bob", Limit: 100},
			[]string{"member:joined A bob", "custom - bob", "custom - bob"}},
		{"room A", event.Query{After: start, UpTo: end, Rooms: []string{a}, Limit: 100},
			[]string{"member:joined A alice", "member:joined A bob", "message:created A "}},
	} {
		evs, err := h.Log().Range(ctx, tt.q)
		if err != nil {
			t.Fatalf("%s: Range = %v", tt.name, err)
		}
		if got := describe(evs, names); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Range = %q; want %q", tt.name, got, tt.want)
		}
	}
}

// A room's deletion is a room:deleted about each member, after which the
// membership as of the head no longer has the room.
func testLogRoomDeletion(t *testing.T, newLog NewLogHarness) {
	h := newLog(t, 1024)
	ctx := context.Background()
	start := head(t, h)
	a := h.CreateRoom(t, "alice")
	b := h.CreateRoom(t, "alice")
	h.Join(t, "bob", a)
	h.Join(t, "bob", b)
	h.DeleteRoom(t, "alice", a)
	evs := ReadN(t, h.Log(), start, 6)
	names := map[string]string{a: "A", b: "B"}
	got := describe(evs[4:], names)
	slices.Sort(got)
	if want := []string{"room:deleted A alice", "room:deleted A bob"}; !slices.Equal(got, want) {
		t.Fatalf("the deletion's events = %q; want %q", got, want)
	}
	rooms, pos, err := h.Members().Snapshot(ctx, "bob")
	if err != nil || pos < evs[5].Seq || !slices.Equal(rooms, []string{b}) {
		t.Fatalf("Snapshot(bob) after the deletion = %v at %d, %v; want [B] at %d or later", rooms, pos, err, evs[5].Seq)
	}
	mine, err := h.Log().Range(ctx, event.Query{After: start, UpTo: pos, Subject: "bob", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(mine, names), []string{"member:joined A bob", "member:joined B bob", "room:deleted A bob"}; !slices.Equal(got, want) {
		t.Errorf("bob's subject events = %q; want %q", got, want)
	}
}
