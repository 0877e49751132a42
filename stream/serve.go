package stream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
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

// conn is one open stream. The hub's dispatcher fills q; the handler's
// goroutine is the only one that writes to the client.
type conn struct {
	user string
	q    chan []byte   // bounded; the hub never blocks on it
	gone chan struct{} // closed by the hub when it drops the conn

	// Guarded by Hub.mu.
	rooms   map[string]int // room → index in the room's connection list
	removed bool
}

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
	rc := http.NewResponseController(w)

	c := &conn{user: sub.User, q: make(chan []byte, h.opts.QueueSize), gone: make(chan struct{}), rooms: map[string]int{}}
	pos, rooms, err := h.place(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			h.rejected.Add(1)
			h.refuse(w, rc, err)
		}
		return
	}
	defer h.unregister(c)

	from, resync := h.resumePoint(sub.LastEventID, pos)
	buf := make([]byte, 0, 4096)
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
	if err := h.write(w, rc, buf); err != nil {
		return
	}
	if from < pos {
		if err := h.replay(ctx, w, rc, c.user, rooms, from, pos); err != nil {
			if !errors.Is(err, errWrite) && ctx.Err() == nil {
				h.opts.Logger.Error("replay", "err", err, "user", sub.User)
				h.write(w, rc, closingFrame(nil, h.opts.Retry, errUnavailable))
			}
			return
		}
	}
	h.pump(ctx, w, rc, c, buf[:0])
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
func (h *Hub) refuse(w http.ResponseWriter, rc *http.ResponseController, reason error) {
	retry := h.opts.Retry
	if errors.Is(reason, errOverloaded) || errors.Is(reason, errTooManyStreams) {
		retry = 5 * h.opts.Retry
	}
	w.WriteHeader(http.StatusOK)
	h.write(w, rc, closingFrame(nil, retry, reason))
}

func closingFrame(b []byte, retry time.Duration, reason error) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, retry.Milliseconds(), 10)
	b = append(b, "\n: closing "...)
	b = append(b, reason.Error()...)
	return append(b, "\n\n"...)
}

var errWrite = errors.New("stream: write to client")

// write sends b and flushes it, within the write timeout.
func (h *Hub) write(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	rc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
	if _, err := w.Write(b); err != nil {
		return errWrite
	}
	if err := rc.Flush(); err != nil {
		return errWrite
	}
	return nil
}

// pump is the stream's writer: it drains the queue in batches, one write and
// one flush per batch, with heartbeats when idle.
func (h *Hub) pump(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, c *conn, buf []byte) {
	const maxBatch = 64 << 10
	heartbeat := time.NewTicker(h.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case f := <-c.q:
			buf = append(buf[:0], f...)
		drain:
			for len(buf) < maxBatch {
				select {
				case f := <-c.q:
					buf = append(buf, f...)
				default:
					break drain
				}
			}
			if h.write(w, rc, buf) != nil {
				return
			}
		case <-heartbeat.C:
			if h.write(w, rc, []byte(": ping\n\n")) != nil {
				return
			}
		case <-c.gone:
			// Dropped for falling behind; the client resumes by replay.
			return
		case <-h.closing:
			h.write(w, rc, closingFrame(buf[:0], h.opts.Retry, errShutdown))
			return
		case <-ctx.Done():
			return
		}
	}
}
