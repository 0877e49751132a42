package stream

import "sync"

// conn is one open stream. The hub queues frames without blocking; the
// stream's writer goroutine is the only one that writes to the client. The
// queue is a slice that the writer swaps out whole, so a burst of events
// leaves in one write, and an idle stream holds no buffer.
//
// Everything the writer waits for arrives on one channel, wake, with the
// reason in notes: a receive on one channel costs much less than a select
// over several, and the writer wakes once per batch.
type conn struct {
	user     string
	issued   int64 // when the subscriber's token was issued, Unix seconds
	max      int   // queue bound in frames: a fuller queue drops the stream
	maxBytes int   // and in bytes (0: no bound); set before the conn is registered

	mu      sync.Mutex // guards pending, bytes and notes
	pending [][]byte
	bytes   int // of the frames pending
	notes   note
	wake    chan struct{} // capacity 1: frames or notes are waiting

	// Guarded by Hub.mu.
	rooms   map[string]int // room → index in the room's connection list
	removed bool
	stamp   uint64 // last Notify call that reached this stream
	fresh   bool   // opened, and not yet told what a new stream learns (NotifyNew)
}

// A note tells the writer something other than "frames are queued".
type note uint8

const (
	noteDropped      note = 1 << iota // the hub dropped the stream: it fell behind
	noteClosing                       // the hub is closing
	noteHungUp                        // the client went away
	notePing                          // a heartbeat is due
	noteExpired                       // the stream's credential expired
	noteDisconnected                  // the server API disconnected the user
)

func newConn(user string, max int) *conn {
	return &conn{user: user, max: max, wake: make(chan struct{}, 1), rooms: map[string]int{}, fresh: true}
}

// notify gives the writer a note and wakes it.
func (c *conn) notify(n note) {
	c.mu.Lock()
	c.notes |= n
	c.mu.Unlock()
	c.signal()
}

// hangUp tells the writer that the client went away.
func (c *conn) hangUp() { c.notify(noteHungUp) }

// enqueue queues a frame without waking the writer; first reports that the
// queue was empty, so the caller must signal once it has queued the rest.
func (c *conn) enqueue(frame []byte) (ok, first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A frame bigger than the bound still goes into an empty queue.
	if len(c.pending) >= c.max || (c.maxBytes > 0 && len(c.pending) > 0 && c.bytes+len(frame) > c.maxBytes) {
		return false, false
	}
	c.bytes += len(frame)
	c.pending = append(c.pending, frame)
	return true, len(c.pending) == 1
}

// signal wakes the writer.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take returns the queued frames and notes, and starts a new queue in
// spare's storage.
func (c *conn) take(spare [][]byte) ([][]byte, note) {
	c.mu.Lock()
	frames, notes := c.pending, c.notes
	c.pending = spare[:0]
	c.bytes = 0
	c.notes = 0
	c.mu.Unlock()
	return frames, notes
}
