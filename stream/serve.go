package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// Reasons a stream is refused or ended with a retry hint instead of an HTTP
// error: EventSource gives up for good on any non-200 answer.
var (
	errShutdown       = errors.New("shutdown")
	errOverloaded     = errors.New("overloaded")
	errTooManyStreams = errors.New("too_many_streams")
	errBehind         = errors.New("behind")
	errUnavailable    = errors.New("unavailable")
	errTokenExpired   = errors.New("token_expired")
	errDisconnected   = errors.New("disconnected")
)

// Subscriber is who opens a stream and where they resume.
type Subscriber struct {
	User string
	// LastEventID is the id of the last event the client received, from the
	// Last-Event-ID header or the last_event_id parameter; empty for a fresh
	// stream.
	LastEventID string
	// Expires, when set, is when the credential the stream opened with
	// expires: the stream ends then, with a retry hint, and the client
	// comes back with a fresh one, losing nothing (Last-Event-ID).
	Expires time.Time
	// IssuedAt is when the subscriber's token was issued, in Unix seconds
	// (0 when it did not say): a stream whose token a disconnect's cut-off
	// refuses is closed, even one that was opening as the disconnect came.
	IssuedAt int64
}

// Serve runs one SSE stream until the client leaves, falls behind, or the
// hub closes. The caller has authenticated the subscriber.
//
// A stream starts with retry: and a ready frame whose id is the position the
// stream continues from; with a LastEventID it then replays every missed
// event of the rooms the user belonged to at the time of each event, then
// goes live with no gap and no duplicate. When the position cannot be
// honoured (unknown epoch, malformed, trimmed by retention) a resync event
// follows ready and the stream goes live from now.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, sub Subscriber) {
	ctx := r.Context()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")

	c := newConn(sub.User, h.opts.QueueSize)
	c.maxBytes = h.opts.QueueBytes
	c.issued = sub.IssuedAt
	pos, rooms, err := h.place(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			h.rejected.Add(1)
			h.refuse(w, err)
		}
		return
	}

	from, resync := h.resumePoint(sub.LastEventID, pos)
	head := make([]byte, 0, 256)
	head = append(head, "retry: "...)
	head = strconv.AppendInt(head, h.opts.Retry.Milliseconds(), 10)
	head = append(head, "\n\n"...)
	ready, _ := json.Marshal(struct {
		User      string `json:"user"`
		Heartbeat int64  `json:"heartbeat_ms"`
	}{sub.User, h.opts.Heartbeat.Milliseconds()})
	head = AppendFrame(head, Position{h.epoch, from}.String(), event.Ready, ready)
	if resync != "" {
		h.resyncs.Add(1)
		head = resyncFrame(head, resync)
	}
	s := stream{c: c, rooms: rooms, from: from, to: pos, expires: sub.Expires}

	// An HTTP/1 stream leaves net/http: the hub takes the connection, so a
	// stream costs one small goroutine and no HTTP buffers, and each batch
	// is one write(2) with no chunk framing. The body ends when the
	// connection closes, which is how an SSE stream ends anyway.
	if r.ProtoMajor == 1 {
		if nc, _, err := http.NewResponseController(w).Hijack(); err == nil {
			h.serveConn(nc, hdr, head, s)
			return
		}
	}
	defer h.unregister(c)
	stop := context.AfterFunc(ctx, c.hangUp)
	defer stop()
	wr := h.httpWriter(w)
	w.WriteHeader(http.StatusOK)
	if err := wr.write(head); err != nil {
		h.writeFailed(s.c, err)
		return
	}
	h.deliver(ctx, wr, &s)
}

// stream is what a registered connection still has to send: the replay of
// (from, to] for a user whose rooms at to are rooms, then live events.
type stream struct {
	c        *conn
	rooms    map[string]bool
	from, to int64
	expires  time.Time // zero: never
}

// deliver replays what the stream missed, then pumps live events until the
// client leaves, falls behind, or the hub closes.
func (h *Hub) deliver(ctx context.Context, w *writer, s *stream) {
	if s.from < s.to {
		err := h.replay(ctx, w, s.c.user, s.rooms, s.from, s.to)
		if errors.Is(err, errReplayTooLong) {
			// The rest of what was missed is left to REST: the client
			// refetches history, and goes on with live events.
			h.resyncs.Add(1)
			err = w.write(resyncFrame(nil, "too_far"))
		}
		if err != nil {
			if !errors.Is(err, errWrite) && ctx.Err() == nil {
				h.opts.Logger.Error("replay", "err", err, "user", s.c.user)
				w.write(closingFrame(nil, h.opts.Retry, errUnavailable))
			}
			h.writeFailed(s.c, err)
			return
		}
	}
	s.rooms = nil // only the replay needed them; the stream may live for days
	h.writeFailed(s.c, h.pump(w, s.c, s.expires))
}

// writeFailed counts a stream whose write timed out as dropped, like one
// whose queue filled: both are readers too slow for the events, and
// resume by replay. Once dropped (by either), a stream is counted once.
func (h *Hub) writeFailed(c *conn, err error) {
	if !errors.Is(err, errWriteTimeout) {
		return
	}
	h.mu.Lock()
	if !c.removed {
		h.dropLocked(c)
		h.dropped.Add(1)
	}
	h.mu.Unlock()
}

// serveConn runs a hijacked stream on a goroutine the hub owns, which Close
// waits for; the hub's hang-up watcher tells it when the client leaves.
func (h *Hub) serveConn(nc net.Conn, hdr http.Header, head []byte, s stream) {
	resp := make([]byte, 0, 512+len(head))
	resp = append(resp, "HTTP/1.1 200 OK\r\n"...)
	for k, vs := range hdr {
		for _, v := range vs {
			resp = append(resp, k...)
			resp = append(resp, ": "...)
			resp = append(resp, v...)
			resp = append(resp, "\r\n"...)
		}
	}
	resp = append(resp, "Connection: close\r\n\r\n"...)

	// The goroutine joins h.conns only while the hub is open, so that Close
	// never waits on a group that is still growing.
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.unregister(s.c)
		h.connWriter(nc).write(closingFrame(resp, h.opts.Retry, errShutdown))
		nc.Close()
		return
	}
	h.conns.Add(1)
	h.mu.Unlock()
	// A stream request that came with a body keeps the read deadline that
	// bounded sending it (--read-timeout); a stream reads nothing, but where
	// hang-ups are noticed by a read (TLS, or off Linux) that deadline
	// would end it.
	nc.SetReadDeadline(time.Time{})
	resp = append(resp, head...)
	// A hang-up ends the pump at once; a replay then in progress ends at
	// its next write.
	unwatch := h.hangups.watch(nc, s.c)
	go func() {
		defer h.conns.Done()
		defer nc.Close()
		defer unwatch()
		defer h.unregister(s.c)
		w := h.connWriter(nc)
		if err := w.write(resp); err != nil {
			h.writeFailed(s.c, err)
			return
		}
		h.deliver(context.Background(), w, &s)
	}()
}

// place registers c at the hub's current position and returns it with the
// user's rooms as of that position.
func (h *Hub) place(ctx context.Context, c *conn) (int64, map[string]bool, error) {
	for range 3 {
		h.mu.Lock()
		err := h.admitLocked(c.user)
		h.mu.Unlock()
		if err != nil {
			return 0, nil, err
		}
		rooms, head, err := h.members.Snapshot(ctx, c.user)
		if err != nil {
			if ctx.Err() == nil {
				h.opts.Logger.Error("membership snapshot", "err", err, "user", c.user)
			}
			return 0, nil, errUnavailable
		}
		if err := h.waitFor(ctx, head); err != nil {
			return 0, nil, err
		}
		pos, set, err := h.register(c, rooms, head)
		if !errors.Is(err, errBehind) {
			return pos, set, err
		}
	}
	return 0, nil, errOverloaded
}

// resumePoint decides where the stream continues from: the client's position
// when it can be honoured, else now with a resync reason.
func (h *Hub) resumePoint(lastEventID string, pos int64) (from int64, resync string) {
	if lastEventID == "" {
		return pos, ""
	}
	p, err := ParsePosition(lastEventID)
	switch {
	case err != nil:
		return pos, "malformed_id"
	case p.Epoch != h.epoch:
		return pos, "unknown_epoch"
	case p.Seq > pos:
		return pos, "unknown_position"
	case p.Seq < h.log.TrimmedThrough():
		return pos, "expired"
	}
	return p.Seq, ""
}

// resyncFrame appends a resync event: the client must refetch what it
// shows over REST, for reason.
func resyncFrame(b []byte, reason string) []byte {
	data, _ := json.Marshal(struct {
		Reason string `json:"reason"`
	}{reason})
	return AppendFrame(b, "", event.Resync, data)
}

// refuse answers a stream that cannot be served now with 200, a retry hint
// and a closing comment, so that EventSource tries again.
func (h *Hub) refuse(w http.ResponseWriter, reason error) {
	retry := h.opts.Retry
	if errors.Is(reason, errOverloaded) || errors.Is(reason, errTooManyStreams) {
		retry = 5 * h.opts.Retry
	}
	h.Refuse(w, reason.Error(), retry)
}

// Refuse answers a stream that may not open now (reason is a snake_case
// word, such as rate_limited) with 200, a retry hint of at least retry and
// a closing comment, so that EventSource tries again rather than give up.
func (h *Hub) Refuse(w http.ResponseWriter, reason string, retry time.Duration) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.Write(closingFrame(nil, max(retry, h.opts.Retry), errors.New(reason)))
}

func closingFrame(b []byte, retry time.Duration, reason error) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, retry.Milliseconds(), 10)
	b = append(b, "\n: closing "...)
	b = append(b, reason.Error()...)
	return append(b, "\n\n"...)
}

var (
	errWrite = errors.New("stream: write to client")
	// errWriteTimeout is a write that did not finish within WriteTimeout:
	// a client too slow to read its events.
	errWriteTimeout = fmt.Errorf("%w: timed out", errWrite)
)

// writer sends bytes to one client with a bounded wait.
//
// On a connection (HTTP/1, hijacked) a deadline only fails a write still
// in progress when it passes, so an idle stream may keep a past one: the
// writer renews it only when half of it has been used, rather than on
// every write, and a stuck client still fails within the timeout. Over
// HTTP/2 a stream's write deadline is a timer that resets the stream when
// it fires, written to or not: it is armed before each write and cleared
// after, or every idle stream would end one timeout after its last write
// (before its next heartbeat).
type writer struct {
	w           io.Writer
	flush       func() error // nil for a hijacked connection
	setDeadline func(time.Time) error
	timeout     time.Duration
	deadline    time.Time
	perWrite    bool // arm and clear the deadline around each write (HTTP/2)
}

// httpWriter writes through net/http (HTTP/2, or when hijacking fails).
func (h *Hub) httpWriter(w http.ResponseWriter) *writer {
	rc := http.NewResponseController(w)
	return &writer{w: w, flush: rc.Flush, setDeadline: rc.SetWriteDeadline, timeout: h.opts.WriteTimeout, perWrite: true}
}

// connWriter writes to a hijacked connection.
func (h *Hub) connWriter(nc net.Conn) *writer {
	return &writer{w: nc, setDeadline: nc.SetWriteDeadline, timeout: h.opts.WriteTimeout}
}

// write sends b and flushes it. It returns errWriteTimeout when the client
// did not take it within the timeout, and errWrite for any other failure
// (the client went away).
func (w *writer) write(b []byte) error {
	if now := time.Now(); w.perWrite || w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		w.setDeadline(w.deadline)
	}
	_, err := w.w.Write(b)
	if err == nil && w.flush != nil {
		err = w.flush()
	}
	if w.perWrite {
		w.setDeadline(time.Time{})
	}
	if err == nil {
		return nil
	}
	// Over HTTP/2 a stream reset by its deadline fails as closed; the
	// clock tells that it was the deadline.
	if errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(w.deadline) {
		return errWriteTimeout
	}
	return errWrite
}

// bufPool holds write buffers, so that idle streams keep none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// pump is the stream's writer: each time it wakes it takes everything
// queued and sends it in one write and one flush, with a heartbeat when one
// is due. It returns when the stream ends, at the latest when its
// credential expires, with the error of the write that failed, if one did.
func (h *Hub) pump(w *writer, c *conn, expires time.Time) error {
	heartbeat := time.AfterFunc(h.opts.Heartbeat, func() { c.notify(notePing) })
	defer heartbeat.Stop()
	if !expires.IsZero() {
		expiry := time.AfterFunc(time.Until(expires), func() { c.notify(noteExpired) })
		defer expiry.Stop()
	}
	var spare [][]byte
	for {
		<-c.wake
		frames, notes := c.take(spare)
		if notes&(noteDropped|noteHungUp) != 0 {
			// A dropped stream resumes by replay; a gone client reads nothing.
			return nil
		}
		bp := bufPool.Get().(*[]byte)
		buf := (*bp)[:0]
		for _, f := range frames {
			buf = append(buf, f...)
		}
		clear(frames)
		// Keep a small queue's storage for the next batch; let a burst's
		// go, so that idle streams stay small.
		spare = nil
		if cap(frames) <= 4 {
			spare = frames[:0]
		}
		if notes&notePing != 0 {
			buf = append(buf, ": ping\n\n"...)
			heartbeat.Reset(h.opts.Heartbeat)
		}
		switch {
		case notes&noteDisconnected != 0:
			buf = closingFrame(buf, h.opts.Retry, errDisconnected)
		case notes&noteClosing != 0:
			buf = closingFrame(buf, h.opts.Retry, errShutdown)
		case notes&noteExpired != 0:
			buf = closingFrame(buf, h.opts.Retry, errTokenExpired)
		}
		err := w.write(buf)
		if cap(buf) <= 256<<10 {
			*bp = buf
			bufPool.Put(bp)
		}
		if err != nil || notes&(noteClosing|noteExpired|noteDisconnected) != 0 {
			return err
		}
	}
}
