package stream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Reasons a stream is refused or ended with a retry hint instead of an HTTP
// error: EventSource gives up for good on any non-200 answer.
var (
	errShutdown       = errors.New("shutdown")
	errOverloaded     = errors.New("overloaded")
	errTooManyStreams = errors.New("too_many_streams")
	errBehind         = errors.New("behind")
	errUnavailable    = errors.New("unavailable")
)

// Subscriber is who opens a stream and where they resume.
type Subscriber struct {
	User string
	// LastEventID is the id of the last event the client received, from the
	// Last-Event-ID header or the last_event_id parameter; empty for a fresh
	// stream.
	LastEventID string
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
	wr := h.newWriter(w)

	c := newConn(sub.User, h.opts.QueueSize)
	pos, rooms, err := h.place(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			h.rejected.Add(1)
			h.refuse(wr, err)
		}
		return
	}
	defer h.unregister(c)

	from, resync := h.resumePoint(sub.LastEventID, pos)
	buf := make([]byte, 0, 256)
	buf = append(buf, "retry: "...)
	buf = strconv.AppendInt(buf, h.opts.Retry.Milliseconds(), 10)
	buf = append(buf, "\n\n"...)
	ready, _ := json.Marshal(struct {
		User      string `json:"user"`
		Heartbeat int64  `json:"heartbeat_ms"`
	}{sub.User, h.opts.Heartbeat.Milliseconds()})
	buf = AppendFrame(buf, Position{h.epoch, from}.String(), TypeReady, ready)
	if resync != "" {
		data, _ := json.Marshal(struct {
			Reason string `json:"reason"`
		}{resync})
		buf = AppendFrame(buf, "", TypeResync, data)
	}
	w.WriteHeader(http.StatusOK)
	if err := wr.write(buf); err != nil {
		return
	}
	if from < pos {
		if err := h.replay(ctx, wr, c.user, rooms, from, pos); err != nil {
			if !errors.Is(err, errWrite) && ctx.Err() == nil {
				h.opts.Logger.Error("replay", "err", err, "user", sub.User)
				wr.write(closingFrame(nil, h.opts.Retry, errUnavailable))
			}
			return
		}
	}
	h.pump(ctx, wr, c)
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
		rooms, head, err := h.log.Snapshot(ctx, c.user)
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
	case p.Seq < h.log.PrunedThrough():
		return pos, "expired"
	}
	return p.Seq, ""
}

// refuse answers a stream that cannot be served now with 200, a retry hint
// and a closing comment, so that EventSource tries again.
func (h *Hub) refuse(w *writer, reason error) {
	retry := h.opts.Retry
	if errors.Is(reason, errOverloaded) || errors.Is(reason, errTooManyStreams) {
		retry = 5 * h.opts.Retry
	}
	w.w.WriteHeader(http.StatusOK)
	w.write(closingFrame(nil, retry, reason))
}

func closingFrame(b []byte, retry time.Duration, reason error) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, retry.Milliseconds(), 10)
	b = append(b, "\n: closing "...)
	b = append(b, reason.Error()...)
	return append(b, "\n\n"...)
}

var errWrite = errors.New("stream: write to client")

// writer sends bytes to one client with a bounded wait. It renews the
// connection's write deadline only when half of it has been used, rather
// than on every write: a stuck client still fails within WriteTimeout, and
// the hot path saves a timer update per write.
type writer struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	timeout  time.Duration
	deadline time.Time
}

func (h *Hub) newWriter(w http.ResponseWriter) *writer {
	return &writer{w: w, rc: http.NewResponseController(w), timeout: h.opts.WriteTimeout}
}

// write sends b and flushes it.
func (w *writer) write(b []byte) error {
	now := time.Now()
	if w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		w.rc.SetWriteDeadline(w.deadline)
	}
	if _, err := w.w.Write(b); err != nil {
		return errWrite
	}
	if err := w.rc.Flush(); err != nil {
		return errWrite
	}
	return nil
}

// bufPool holds write buffers, so that idle streams keep none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// pump is the stream's writer: each time frames are queued it takes them
// all and sends them in one write and one flush; heartbeats when idle.
func (h *Hub) pump(ctx context.Context, w *writer, c *conn) {
	heartbeat := time.NewTicker(h.opts.Heartbeat)
	defer heartbeat.Stop()
	var spare [][]byte
	for {
		select {
		case <-c.wake:
			frames := c.take(spare)
			bp := bufPool.Get().(*[]byte)
			buf := (*bp)[:0]
			for _, f := range frames {
				buf = append(buf, f...)
			}
			clear(frames)
			spare = frames[:0]
			err := w.write(buf)
			if cap(buf) <= 256<<10 {
				*bp = buf
				bufPool.Put(bp)
			}
			if err != nil {
				return
			}
		case <-heartbeat.C:
			if w.write([]byte(": ping\n\n")) != nil {
				return
			}
		case <-c.gone:
			// Dropped for falling behind; the client resumes by replay.
			return
		case <-h.closing:
			w.write(closingFrame(nil, h.opts.Retry, errShutdown))
			return
		case <-ctx.Done():
			return
		}
	}
}
