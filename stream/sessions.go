package stream

import "sync"

// Session reports that one of a user's streams on this hub opened or
// closed.
type Session struct {
	User   string
	Opened bool // false: closed
}

// SessionFeed is the hub's feed of streams opening and closing, in the
// order they happened: presence reads it. The hub appends with its lock
// held and never waits for the reader; the feed holds what the reader has
// not taken yet. It has one reader.
type SessionFeed struct {
	mu      sync.Mutex // guards pending
	pending []Session
	ready   chan struct{} // capacity 1: sessions are pending
}

func newSessionFeed() *SessionFeed { return &SessionFeed{ready: make(chan struct{}, 1)} }

func (f *SessionFeed) add(s Session) {
	f.mu.Lock()
	f.pending = append(f.pending, s)
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// Ready receives after sessions were added; a receive may find them taken
// already, by a Take that came first.
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
