package stream

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// A stream opens in three steps: a membership snapshot at some head, a wait
// for the dispatcher to reach that head, and register, which brings the
// membership forward with the member events the dispatcher routed since.
// Here bob leaves room r between the snapshot and register, and the
// dispatcher routes the leave and a message of r before register runs:
// register must apply the leave, or the stream would receive r's events.
// When the tail no longer holds the events since the snapshot, place must
// take a new snapshot rather than trust the old one.
func TestPlaceAppliesLeaveBetweenSnapshotAndRegister(t *testing.T) {
	tests := []struct {
		name      string
		tailSize  int
		messages  int // messages in r after bob's leave, before register
		snapshots int // how many snapshots of bob place takes
	}{
		{"caught up from the tail", 1000, 1, 1},
		{"tail evicted the leave: snapshot again", 4, 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newMemLog()
			for _, room := range []string{"r", "b"} {
				l.append(room, event.MemberJoined, "alice")
				l.append(room, event.MemberJoined, "bob")
			}
			h := newMemHub(t, l, Options{TailSize: tt.tailSize})
			snapshots := 0
			var last int64
			l.hook(func(string) {
				snapshots++
				if snapshots > 1 {
					return
				}
				l.append("r", event.MemberLeft, "bob")
				for range tt.messages {
					last = l.append("r", event.MessageCreated, "")
				}
				reach(t, h, last)
			}, nil)

			c := newConn("bob", 64)
			pos, rooms, err := h.place(context.Background(), c)
			if err != nil {
				t.Fatalf("place(bob) = %v", err)
			}
			if pos != last || !maps.Equal(rooms, map[string]bool{"b": true}) || snapshots != tt.snapshots {
				t.Errorf("place(bob) = %d, %v after %d snapshots; want %d, [b] after %d", pos, rooms, snapshots, last, tt.snapshots)
			}
			if got, ok := h.RoomsOf("bob"); !ok || !slices.Equal(got, []string{"b"}) {
				t.Errorf("RoomsOf(bob) = %v, %v; want [b]", got, ok)
			}

			// Later events of r must not reach bob; the marker in b shows
			// that anything routed before it has been queued.
			l.append("r", event.MessageCreated, "")
			marker := l.append("b", event.MessageCreated, "")
			reach(t, h, marker)
			if got := ids(queued(t, c)); !slices.Equal(got, idsOf(marker)) {
				t.Errorf("bob's queue = %v; want only the marker %v", got, idsOf(marker))
			}
		})
	}
}

// When the log no longer serves the hub's position live (Read answers
// event.ErrTrimmed, as the store does once its memory has moved past), the
// dispatcher catches up with Range, page after page, then reads live
// again: every event reaches the stream once, in order.
func TestHubCatchesUpByRangeWhenReadIsTrimmed(t *testing.T) {
	l, h, c, start := bobInRoom(t)
	// More than one page of Range behind, as a hub that stalled would be.
	const behind = 5000
	l.refuseLiveBefore(start + behind)
	caughtUp := l.appendMessages("r", behind)
	reach(t, h, caughtUp)
	live := l.append("r", event.MessageCreated, "")
	reach(t, h, live)

	var want []int64
	for seq := start + 1; seq <= live; seq++ {
		want = append(want, seq)
	}
	if got := ids(queued(t, c)); !slices.Equal(got, idsOf(want...)) {
		t.Errorf("bob received %s", diffIDs(got, idsOf(want...)))
	}
}

// A hub that falls a whole retention period behind finds, when it catches
// up, that events it never dispatched are gone: its streams must not go on
// as if nothing was missed. They are dropped, to resume and get resync.
func TestHubDropsStreamsWhenTrimmedPastIt(t *testing.T) {
	l, h, c, start := bobInRoom(t)
	l.refuseLiveBefore(start + 10)
	l.appendMessages("r", 10)
	l.trim(start + 5)
	last := l.append("r", event.MessageCreated, "")
	reach(t, h, last)
	frames, notes := c.take(nil)
	if notes&noteDropped == 0 {
		t.Fatalf("bob's stream after the hub skipped trimmed events: %d frames, notes %b; want it dropped", len(frames), notes)
	}
	if got := h.Stats().Dropped; got != 1 {
		t.Errorf("Stats().Dropped = %d; want 1", got)
	}
}

// diffIDs describes how got differs from want, for failure messages about
// long sequences.
func diffIDs(got, want []string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	at := func(s []string) string {
		if i < len(s) {
			return s[i]
		}
		return "nothing"
	}
	return fmt.Sprintf("%d events; want %d; event %d is %s; want %s", len(got), len(want), i, at(got), at(want))
}

// placed opens a stream of user's on h.
// bobInRoom is a hub over a log where bob joined room r, and a stream of
// bob's placed on it, with room for thousands of frames, at position start.
func bobInRoom(t *testing.T) (l *memLog, h *Hub, c *conn, start int64) {
	t.Helper()
	l = newMemLog()
	l.append("r", event.MemberJoined, "bob")
	h = newMemHub(t, l, Options{})
	c = newConn("bob", 1<<14)
	start, _, err := h.place(context.Background(), c)
	if err != nil {
		t.Fatalf("place(bob) = %v", err)
	}
	return l, h, c, start
}

func placed(t *testing.T, h *Hub, user string) *conn {
	t.Helper()
	c := newConn(user, 1024)
	if _, _, err := h.place(context.Background(), c); err != nil {
		t.Fatalf("place(%s) = %v", user, err)
	}
	return c
}

// routing appends events to a log and notes which streams each must reach.
type routing struct {
	l    *memLog
	want map[*conn][]int64
	last int64 // the position of the last event appended
}

func (r *routing) send(room, typ, subject string, to ...*conn) {
	r.last = r.l.append(room, typ, subject)
	if r.want == nil {
		r.want = map[*conn][]int64{}
	}
	for _, c := range to {
		r.want[c] = append(r.want[c], r.last)
	}
}

// check fails the test unless c's queue holds exactly the events sent to it.
func (r *routing) check(t *testing.T, name string, c *conn) {
	t.Helper()
	if got := ids(queued(t, c)); !slices.Equal(got, idsOf(r.want[c]...)) {
		t.Errorf("%s received %v; want %v", name, got, idsOf(r.want[c]...))
	}
}

// The dispatcher routes each event to the streams of the room's members at
// the time of the event: a join takes effect at once on every stream of the
// user, the join included; a leave is the last event of the room the user
// gets; a stream that ends gets nothing more, and the room's other streams
// still do.
func TestHubRoutesByMembershipAtEventTime(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	l.append("r", event.MemberJoined, "carol")
	h := newMemHub(t, l, Options{})
	open := func(user string) *conn { return placed(t, h, user) }
	bob1, bob2, carol := open("bob"), open("bob"), open("carol")
	r := &routing{l: l}
	send := r.send
	send("r", event.MessageCreated, "", bob1, bob2, carol)
	send("s", event.MemberJoined, "bob", bob1, bob2)
	send("s", event.MessageCreated, "", bob1, bob2)
	send("r", event.MemberLeft, "carol", bob1, bob2, carol)
	send("r", event.MessageCreated, "", bob1, bob2)
	reach(t, h, r.last)
	h.unregister(bob1)
	if n := h.Stats().Streams; n != 2 {
		t.Errorf("Streams after one ended = %d; want 2", n)
	}
	send("r", event.MessageCreated, "", bob2)
	send("s", event.MemberLeft, "bob", bob2)
	send("s", event.MessageCreated, "")
	send("r", event.MessageCreated, "", bob2)
	reach(t, h, r.last)

	for name, c := range map[string]*conn{"bob#1": bob1, "bob#2": bob2, "carol": carol} {
		r.check(t, name, c)
	}
	if rooms, ok := h.RoomsOf("bob"); !ok || !slices.Equal(rooms, []string{"r"}) {
		t.Errorf("RoomsOf(bob) = %v, %v; want [r]", rooms, ok)
	}
	h.unregister(bob2)
	h.unregister(carol)
	if rooms, ok := h.RoomsOf("bob"); ok {
		t.Errorf("RoomsOf(bob) with no stream = %v; want none", rooms)
	}
	if n := h.Stats().Streams; n != 0 {
		t.Errorf("Streams after all ended = %d; want 0", n)
	}
}

// A stream whose queue fills is dropped while the dispatcher walks its
// room's list of streams, and dropping it takes it out of that list: the
// walk must still reach every other stream once, wherever the dropped one
// stood, and typing notices likewise.
func TestHubDropsASlowStreamMidRoom(t *testing.T) {
	for _, slow := range []int{0, 1, 2} {
		t.Run(fmt.Sprint("slow stream at ", slow), func(t *testing.T) {
			l := newMemLog()
			users := []string{"a", "b", "c"}
			for _, u := range users {
				l.append("r", event.MemberJoined, u)
			}
			h := newMemHub(t, l, Options{})
			conns := make([]*conn, len(users))
			for i, u := range users {
				conns[i] = newConn(u, 16)
				if _, _, err := h.place(context.Background(), conns[i]); err != nil {
					t.Fatalf("place(%s) = %v", u, err)
				}
			}
			var want []int64
			for range 20 {
				last := l.append("r", event.MessageCreated, "")
				want = append(want, last)
				reach(t, h, last)
				h.Notify([]Notice{{Rooms: []string{"r"}, Type: event.TypingStarted, Data: []byte(`{}`)}})
				for i, c := range conns {
					if i != slow {
						c.take(nil) // the others keep up
					}
				}
			}
			if got := h.Stats().Dropped; got != 1 {
				t.Errorf("Stats().Dropped = %d; want 1, the slow stream", got)
			}
			if _, notes := conns[slow].take(nil); notes&noteDropped == 0 {
				t.Errorf("the slow stream was not told it was dropped")
			}
			// The dispatcher still runs, and the others get what follows.
			last := l.append("r", event.MessageCreated, "")
			reach(t, h, last)
			for i, c := range conns {
				if i == slow {
					continue
				}
				if got := ids(queued(t, c)); !slices.Equal(got, idsOf(last)) {
					t.Errorf("%s after the drop received %v; want %v", users[i], got, idsOf(last))
				}
			}
		})
	}
}

// An event without a room is for one user: it reaches every stream of
// theirs, whatever their rooms, and no one else's. A room:deleted is each
// member's own: it reaches that member, who then gets nothing more of the
// room, while the members whose own has not come yet still get theirs.
func TestHubRoutesUserEventsAndRoomDeletion(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	l.append("r", event.MemberJoined, "carol")
	l.append("s", event.MemberJoined, "bob")
	h := newMemHub(t, l, Options{})
	open := func(user string) *conn { return placed(t, h, user) }
	bob1, bob2, carol, dave := open("bob"), open("bob"), open("carol"), open("dave")
	r := &routing{l: l}
	send := r.send
	send("", event.Custom, "bob", bob1, bob2)
	send("", event.Custom, "dave", dave)
	send("", event.Custom, "erin") // no stream here
	send("r", event.Custom, "", bob1, bob2, carol)
	send("r", event.RoomDeleted, "carol", carol)
	send("r", event.MessageCreated, "", bob1, bob2) // between two members' own
	send("r", event.RoomDeleted, "bob", bob1, bob2)
	send("r", event.MessageCreated, "") // none can follow a deletion; none would reach anyone
	send("s", event.MessageCreated, "", bob1, bob2)
	reach(t, h, r.last)
	for name, c := range map[string]*conn{"bob#1": bob1, "bob#2": bob2, "carol": carol, "dave": dave} {
		r.check(t, name, c)
	}
	if rooms, _ := h.RoomsOf("bob"); !slices.Equal(rooms, []string{"s"}) {
		t.Errorf("RoomsOf(bob) after r's deletion = %v; want [s]", rooms)
	}
}

// A disconnect in the log closes every stream of its user here, after
// what was queued before it, and no one else's; with a cut-off, a stream
// of that user whose token is older is refused from then on, also when it
// was authenticated before the disconnect came, and a newer one is not.
func TestHubDisconnect(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	l.append("r", event.MemberJoined, "carol")
	h := newMemHub(t, l, Options{})
	open := func(user string, issued int64) (*conn, error) {
		c := newConn(user, 1024)
		c.issued = issued
		_, _, err := h.place(context.Background(), c)
		return c, err
	}
	bob1, _ := open("bob", 100)
	bob2, _ := open("bob", 100)
	carol, _ := open("carol", 100)
	before := l.append("r", event.MessageCreated, "")
	cut := time.Unix(200, 0)
	l.appendData("", event.UserDisconnected, "bob", fmt.Sprintf(`{"user":"bob","revoke_before":%d}`, cut.UnixMilli()+500))
	after := l.append("r", event.MessageCreated, "")
	reach(t, h, after)
	for name, c := range map[string]*conn{"bob#1": bob1, "bob#2": bob2} {
		frames, notes := c.take(nil)
		if len(frames) != 1 || notes&noteDisconnected == 0 {
			t.Errorf("%s: %d frames, notes %b; want the message before the disconnect, then closed", name, len(frames), notes)
		}
	}
	if got := ids(queued(t, carol)); !slices.Equal(got, idsOf(before, after)) {
		t.Errorf("carol received %v; want %v", got, idsOf(before, after))
	}
	if n := h.Stats().Streams; n != 1 {
		t.Errorf("Streams after bob's disconnect = %d; want 1, carol's", n)
	}
	for _, tt := range []struct {
		issued int64
		ok     bool
	}{
		{199, false}, // before the cut-off
		{0, false},   // a token that does not say
		{200, true},  // the cut-off's own second
		{300, true},
	} {
		if _, err := open("bob", tt.issued); (err == nil) != tt.ok {
			t.Errorf("a stream of bob's with a token of %d: place = %v; want ok %v", tt.issued, err, tt.ok)
		}
		if got := h.Revoked("bob", tt.issued); got == tt.ok {
			t.Errorf("Revoked(bob, %d) = %v; want %v", tt.issued, got, !tt.ok)
		}
	}
	if h.Revoked("carol", 0) {
		t.Errorf("Revoked(carol, 0) = true; want false: carol has no cut-off")
	}
	// An earlier cut-off never lowers a later one.
	h.Revoke("bob", time.Unix(100, 0))
	if !h.Revoked("bob", 150) {
		t.Errorf("after an earlier cut-off, Revoked(bob, 150) = false; want true")
	}
}

// A notice reaches every stream of its rooms but those of the user it
// excepts (a typist is not told of their own typing), once each, however
// many of its rooms a stream shares.
func TestHubNotifyExcept(t *testing.T) {
	l := newMemLog()
	l.append("r", event.MemberJoined, "bob")
	l.append("r", event.MemberJoined, "carol")
	last := l.append("s", event.MemberJoined, "carol")
	h := newMemHub(t, l, Options{})
	reach(t, h, last)
	bob, carol := placed(t, h, "bob"), placed(t, h, "carol")
	h.Notify([]Notice{{Rooms: []string{"r", "s"}, Except: "bob", Type: "typing:started", Data: []byte(`{}`)}})
	if got := queued(t, bob); len(got) != 0 {
		t.Errorf("bob, the one excepted, got %d frames; want none", len(got))
	}
	if got := queued(t, carol); len(got) != 1 || got[0].Event != "typing:started" {
		t.Errorf("carol got %+v; want the notice once", got)
	}
}

// A log that says the hub is behind what it serves live, while its range
// has nothing after the hub's position yet, is waited for: the hub neither
// stops nor fails, and dispatches the events once they come.
func TestHubWaitsOutAnEmptyCatchUp(t *testing.T) {
	l, h, c, start := bobInRoom(t)
	ranged := make(chan struct{}, 1)
	l.hook(nil, func(event.Query) {
		select {
		case ranged <- struct{}{}:
		default:
		}
	})
	l.refuseLiveBefore(start + 3)
	// The second look for events to catch up on comes after the first
	// found none, and waited.
	for range 2 {
		select {
		case <-ranged:
		case <-time.After(testTimeout):
			t.Fatal("the hub did not try again to catch up")
		}
	}
	last := l.appendMessages("r", 3)
	reach(t, h, last)
	if got, want := ids(queued(t, c)), idsOf(start+1, start+2, start+3); !slices.Equal(got, want) {
		t.Errorf("bob received %s", diffIDs(got, want))
	}
}
