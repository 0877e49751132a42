package stream

import "sync"

// Session reports that one of a user's streams on this hub opened or
// closed.
type Session struct {
	User   string
	Opened bool // false: closed
}

// SessionFeed is the hub's feed of streams opening and closing, in the
// order they happened, and of the rooms whose membership changed: presence
// reads it. The hub appends with its lock held and never waits for the
// reader; the feed holds what the reader has not taken yet. It has one
// reader.
type SessionFeed struct {
	mu      sync.Mutex // guards pending and rooms
	pending []Session
	// rooms are the rooms whose membership changed since the last
	// TakeRooms, each once: a burst of joins to one room is one entry.
	rooms map[string]struct{}
	ready chan struct{} // capacity 1: sessions or rooms are pending
}

func newSessionFeed() *SessionFeed {
	return &SessionFeed{rooms: map[string]struct{}{}, ready: make(chan struct{}, 1)}
}

func (f *SessionFeed) add(s Session) {
	f.mu.Lock()
	f.pending = append(f.pending, s)
	f.mu.Unlock()
	f.wake()
}

// roomChanged records that a room's membership changed: a join, a leave,
// a removal or the room's deletion, of any room in the log, whether or
// not it has streams here.
func (f *SessionFeed) roomChanged(room string) {
	f.mu.Lock()
	_, known := f.rooms[room]
	if !known {
		f.rooms[room] = struct{}{}
	}
	f.mu.Unlock()
	if !known {
		f.wake()
	}
}

func (f *SessionFeed) wake() {
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// Ready receives after sessions or rooms were added; a receive may find
// them taken already, by a Take that came first.
func (f *SessionFeed) Ready() <-chan struct{} { return f.ready }

// Take returns the pending sessions in order and empties the feed. A
// reader that takes and applies them under one lock of its own sees every
// change that happened before the call, in order: so a presence lookup can
// take first and never miss a stream that already opened.
func (f *SessionFeed) Take() []Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.pending
	f.pending = nil
	return out
}

// TakeRooms returns the rooms whose membership changed since the last
// call, each once, in no particular order.
func (f *SessionFeed) TakeRooms() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rooms) == 0 {
		return nil
	}
	out := make([]string, 0, len(f.rooms))
	for r := range f.rooms {
		out = append(out, r)
	}
	clear(f.rooms)
	return out
}
