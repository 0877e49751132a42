package stream

import "sync"

// conn is one open stream. The hub queues frames without blocking; the
// stream's writer goroutine is the only one that writes to the client. The queue is a slice that the writer swaps out whole, so a
// burst of events leaves in one write, and an idle stream holds no buffer.
type conn struct {
	user string
	max  int // queue bound: a fuller queue drops the stream

	mu      sync.Mutex // guards pending
	pending [][]byte
	wake    chan struct{} // capacity 1: frames are waiting
	gone    chan struct{} // closed by the hub when it drops the stream

	// Guarded by Hub.mu.
	rooms   map[string]int // room → index in the room's connection list
	removed bool
	stamp   uint64 // last SendRooms call that reached this stream
}

func newConn(user string, max int) *conn {
	return &conn{user: user, max: max, wake: make(chan struct{}, 1), gone: make(chan struct{}), rooms: map[string]int{}}
}

// enqueue queues a frame without waking the writer; first reports that the
// queue was empty, so the caller must signal once it has queued the rest.
func (c *conn) enqueue(frame []byte) (ok, first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) >= c.max {
		return false, false
	}
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

// take returns the queued frames and starts a new queue in spare's storage.
func (c *conn) take(spare [][]byte) [][]byte {
	c.mu.Lock()
	frames := c.pending
	c.pending = spare[:0]
	c.mu.Unlock()
	return frames
}
