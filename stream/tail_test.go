package stream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/heraldchat/herald/internal/event"
)

func ev(seq int64, room, typ, subject string) *entry {
	return &entry{Event: event.Event{Seq: seq, Room: room, Type: typ, Subject: subject}}
}

func seqs(evs []*entry) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func set(rooms ...string) map[string]bool {
	out := map[string]bool{}
	for _, r := range rooms {
		out[r] = true
	}
	return out
}

// The tail answers a room query from its rooms' indexes, or, when they
// are more than the range holds, from the range: the same events.
func TestTailIndexes(t *testing.T) {
	tl := newTail(1000, 1<<30, 10)
	tl.append([]*entry{
		ev(11, "a", "message:created", ""),
		ev(12, "b", event.MemberJoined, "bob"),
		ev(13, "a", "message:created", ""),
		ev(14, "b", "message:created", ""),
		ev(15, "a", event.MemberLeft, "bob"),
		ev(16, "c", "message:created", ""),
	})
	tests := []struct {
		rooms       []string
		after, upTo int64
		want        string
	}{
		{[]string{"a"}, 10, 16, "[11 13 15]"},
		{[]string{"a", "b"}, 10, 16, "[11 12 13 14 15]"},
		{[]string{"a", "b"}, 12, 14, "[13 14]"},
		{[]string{"c"}, 15, 16, "[16]"},
		{[]string{"zzz"}, 10, 16, "[]"},
		{[]string{"a"}, 16, 16, "[]"},
		// More rooms than events in the range: read from the range.
		{[]string{"a", "b", "x", "y", "z", "w", "v"}, 10, 16, "[11 12 13 14 15]"},
		{[]string{"c", "x", "y"}, 13, 16, "[16]"},
		{[]string{"a", "x"}, 12, 13, "[13]"},
	}
	for _, tt := range tests {
		got, err := tl.roomEvents(set(tt.rooms...), tt.after, tt.upTo)
		if err != nil || fmt.Sprint(seqs(got)) != tt.want {
			t.Errorf("roomEvents(%v, %d, %d) = %v, %v; want %s", tt.rooms, tt.after, tt.upTo, seqs(got), err, tt.want)
		}
	}
	got, err := tl.subjectEvents("bob", 10, 16)
	if err != nil || fmt.Sprint(seqs(got)) != "[12 15]" {
		t.Errorf("memberEvents(bob) = %v, %v; want [12 15]", seqs(got), err)
	}
	if !tl.covers(10, 16) || tl.covers(9, 16) || tl.covers(10, 17) {
		t.Errorf("covers: want exactly (10, 16]")
	}
}

func TestTailEviction(t *testing.T) {
	tl := newTail(16, 1<<30, 0)
	for i := int64(1); i <= 100; i++ {
		room := "r" + fmt.Sprint(i%3)
		tl.append([]*entry{ev(i, room, "message:created", "")})
	}
	if len(tl.events) > 16 {
		t.Fatalf("tail holds %d events; want at most 16", len(tl.events))
	}
	if tl.base != tl.events[0].Seq-1 || tl.last != 100 {
		t.Fatalf("base, last = %d, %d; want %d, 100", tl.base, tl.last, tl.events[0].Seq-1)
	}
	if _, err := tl.roomEvents(set("r1"), 0, 100); !errors.Is(err, event.ErrTrimmed) {
		t.Errorf("roomEvents before base: err = %v; want event.ErrTrimmed", err)
	}
	got, err := tl.roomEvents(set("r0", "r1", "r2"), tl.base, 100)
	if err != nil || len(got) != len(tl.events) {
		t.Fatalf("roomEvents over the whole tail = %d events, %v; want %d", len(got), err, len(tl.events))
	}
	for i, e := range got {
		if e != tl.events[i] {
			t.Fatalf("merged order differs at %d: %d vs %d", i, e.Seq, tl.events[i].Seq)
		}
	}
	// The per-room indexes hold exactly what the tail holds.
	n := 0
	for _, s := range tl.byRoom {
		n += len(s)
	}
	if n != len(tl.events) {
		t.Errorf("room indexes hold %d events; tail holds %d", n, len(tl.events))
	}
}

// A tail bounded in bytes holds fewer large events than small ones.
func TestTailEvictsByBytes(t *testing.T) {
	tl := newTail(1000, 20_000, 0)
	big := make([]byte, 4000)
	for i := int64(1); i <= 20; i++ {
		e := ev(i, "r", "message:created", "")
		e.Data, e.frame = big, big
		tl.append([]*entry{e})
		if tl.bytes > 20_000 {
			t.Fatalf("after %d events of 8 KB the tail holds %d bytes; want at most 20000", i, tl.bytes)
		}
	}
	if !tl.covers(19, 20) || tl.covers(0, 20) {
		t.Fatalf("the tail covers (%d, %d]; want the newest, not all 20", tl.base, tl.last)
	}
}

// A connection's queue is bounded in bytes as in frames; a frame bigger
// than the bound still goes into an empty queue.
func TestConnQueueBytes(t *testing.T) {
	c := newConn("bob", 1000)
	c.maxBytes = 10_000
	frame := make([]byte, 4000)
	for i, want := range []bool{true, true, false} {
		if ok, _ := c.enqueue(frame); ok != want {
			t.Fatalf("enqueue #%d of 4000 bytes into a 10000-byte queue = %v; want %v", i+1, ok, want)
		}
	}
	c.take(nil)
	if ok, _ := c.enqueue(make([]byte, 50_000)); !ok {
		t.Fatal("enqueue of a frame bigger than the bound into an empty queue = false; want true")
	}
}

// The queue's bounds are exact: it holds max frames and maxBytes bytes,
// not one more, and says which frame found it empty (the caller wakes the
// writer once per batch on that).
func TestConnQueueBoundsAreExact(t *testing.T) {
	c := newConn("bob", 3)
	for i, want := range []bool{true, true, true, false} {
		ok, first := c.enqueue([]byte("x"))
		if ok != want || first != (i == 0) {
			t.Fatalf("enqueue #%d into a queue of 3 frames = %v, first %v; want %v, first %v", i+1, ok, first, want, i == 0)
		}
	}
	c = newConn("bob", 1000)
	c.maxBytes = 10_000
	for i, size := range []int{4000, 6000} {
		if ok, _ := c.enqueue(make([]byte, size)); !ok {
			t.Fatalf("enqueue #%d (%d bytes) filling a 10000-byte queue exactly = false; want true", i+1, size)
		}
	}
	if ok, _ := c.enqueue([]byte("x")); ok {
		t.Fatal("enqueue of 1 byte into a full 10000-byte queue = true; want false")
	}
	if frames, _ := c.take(nil); len(frames) != 2 {
		t.Fatalf("take = %d frames; want the 2 queued", len(frames))
	}
	if ok, first := c.enqueue(make([]byte, 10_001)); !ok || !first {
		t.Fatalf("enqueue of 10001 bytes into the emptied queue = %v, first %v; want true, true", ok, first)
	}
}
