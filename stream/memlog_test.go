package stream

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// memLog is a Log and a Membership in memory, for unit tests of the hub.
// Tests append events, trim its history, make Read refuse old positions,
// and set hooks that run inside a call, so that they drive interleavings a
// real log shows only under load.
type memLog struct {
	mu       sync.Mutex
	events   []event.Event // events[i].Seq == i+1
	trimmed  int64         // Range holds only positions after it
	liveFrom int64         // Read refuses to read after a position before it
	notify   chan struct{} // closed and replaced by each append

	// afterSnapshot, when set, runs after Snapshot has read a user's
	// membership and before it returns it; the hub's own Snapshot (empty
	// user) does not run it. Guarded by mu, like beforeRange, which runs at
	// the start of each Range. Both run without the lock.
	afterSnapshot func(user string)
	beforeRange   func(q event.Query)
}

// hook sets the hooks; nil clears one.
func (l *memLog) hook(afterSnapshot func(user string), beforeRange func(q event.Query)) {
	l.mu.Lock()
	l.afterSnapshot, l.beforeRange = afterSnapshot, beforeRange
	l.mu.Unlock()
}

func newMemLog() *memLog { return &memLog{notify: make(chan struct{})} }

func (l *memLog) Epoch() string { return "mem" }

// append adds an event and returns its position. Member events are about
// subject; data carries the room, subject and position, so that a test can
// tell frames apart.
func (l *memLog) append(room, typ, subject string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq := int64(len(l.events)) + 1
	data := fmt.Appendf(nil, `{"room":%q,"user":%q,"n":%d}`, room, subject, seq)
	l.events = append(l.events, event.Event{Seq: seq, Room: room, Type: typ, Subject: subject, Data: data})
	close(l.notify)
	l.notify = make(chan struct{})
	return seq
}

// appendData adds an event with the given payload and returns its position.
func (l *memLog) appendData(room, typ, subject, data string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq := int64(len(l.events)) + 1
	l.events = append(l.events, event.Event{Seq: seq, Room: room, Type: typ, Subject: subject, Data: []byte(data)})
	close(l.notify)
	l.notify = make(chan struct{})
	return seq
}

// trim deletes the history through position through, as retention does:
// the mark first, then the events (here at once).
func (l *memLog) trim(through int64) {
	l.mu.Lock()
	l.trimmed = max(l.trimmed, through)
	l.mu.Unlock()
}

// refuseLiveBefore makes Read answer event.ErrTrimmed for a position
// before seq, as a log whose live window has moved on does.
func (l *memLog) refuseLiveBefore(seq int64) {
	l.mu.Lock()
	l.liveFrom = seq
	close(l.notify) // a reader waiting for events reads again
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

func (l *memLog) Read(ctx context.Context, after int64, max int) ([]event.Event, error) {
	timer := time.NewTimer(100 * time.Millisecond)
	defer timer.Stop()
	for {
		l.mu.Lock()
		if after < l.liveFrom {
			l.mu.Unlock()
			return nil, event.ErrTrimmed
		}
		evs := slices.Clone(l.events[min(after, int64(len(l.events))):min(after+int64(max), int64(len(l.events)))])
		notify := l.notify
		l.mu.Unlock()
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, nil
		}
	}
}

func (l *memLog) Range(ctx context.Context, q event.Query) ([]event.Event, error) {
	l.mu.Lock()
	hook := l.beforeRange
	l.mu.Unlock()
	if hook != nil {
		hook(q)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []event.Event{}
	for _, e := range l.events[min(max(q.After, l.trimmed), int64(len(l.events))):] {
		if e.Seq > q.UpTo || len(out) == q.Limit {
			break
		}
		if q.Rooms != nil && !slices.Contains(q.Rooms, e.Room) || q.Subject != "" && e.Subject != q.Subject {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

func (l *memLog) TrimmedThrough() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.trimmed
}

func (l *memLog) Snapshot(ctx context.Context, user string) ([]string, int64, error) {
	l.mu.Lock()
	in := map[string]bool{}
	for _, e := range l.events {
		switch {
		case e.Subject != user:
		case e.Type == event.MemberJoined:
			in[e.Room] = true
		case e.Type == event.MemberLeft:
			delete(in, e.Room)
		}
	}
	head := int64(len(l.events))
	hook := l.afterSnapshot
	l.mu.Unlock()
	rooms := []string{}
	for r := range in {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	if user != "" && hook != nil {
		hook(user)
	}
	return rooms, head, nil
}

var (
	_ Log        = (*memLog)(nil)
	_ Membership = (*memLog)(nil)
)

// testTimeout bounds every wait of these tests: it keeps a broken test from
// hanging, and is never what a test measures.
const testTimeout = 10 * time.Second

// newMemHub starts a hub on l at its head, closed when the test ends.
func newMemHub(t *testing.T, l *memLog, opts Options) *Hub {
	t.Helper()
	h, err := NewHub(context.Background(), l, l, opts)
	if err != nil {
		t.Fatalf("NewHub = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return h
}

// reach waits until the hub's dispatcher has routed position seq.
func reach(t *testing.T, h *Hub, seq int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := h.waitFor(ctx, seq); err != nil {
		t.Fatalf("hub did not reach position %d: %v (at %d)", seq, err, h.Stats().Position)
	}
}

// queued returns the frames queued to c, decoded, and empties its queue.
func queued(t *testing.T, c *conn) []Frame {
	t.Helper()
	frames, _ := c.take(nil)
	dec := NewDecoder(bytes.NewReader(bytes.Join(frames, nil)))
	var out []Frame
	for {
		f, err := dec.Next()
		if err != nil {
			return out
		}
		out = append(out, f)
	}
}

// ids lists the ids of frames, for comparisons and failure messages.
func ids(frames []Frame) []string {
	out := make([]string, 0, len(frames))
	for _, f := range frames {
		if f.HasID {
			out = append(out, f.ID)
		}
	}
	return out
}

// idsOf returns the SSE ids of positions of the memLog's epoch.
func idsOf(seqs ...int64) []string {
	out := make([]string, len(seqs))
	for i, s := range seqs {
		out[i] = Position{"mem", s}.String()
	}
	return out
}

// appendMessages adds n messages to room at once: a reader woken by the
// first finds them all.
func (l *memLog) appendMessages(room string, n int) (last int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range n {
		seq := int64(len(l.events)) + 1
		data := fmt.Appendf(nil, `{"room":%q,"n":%d}`, room, seq)
		l.events = append(l.events, event.Event{Seq: seq, Room: room, Type: event.MessageCreated, Data: data})
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return int64(len(l.events))
}

// streamHandler serves h's streams: the user comes from the query, and the
// position from Last-Event-ID, as the api package passes them.
func streamHandler(h *Hub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.Serve(w, r, Subscriber{User: r.URL.Query().Get("user"), LastEventID: r.Header.Get("Last-Event-ID")})
	})
}

// sseStream is one stream read by a real client; its frames arrive on a
// channel, closed at the end of the stream.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	frames chan Frame
	cancel context.CancelFunc
}

// dialStream opens user's stream at url with client, resuming after
// lastID unless it is empty. The test's end closes it.
func dialStream(t *testing.T, client *http.Client, url, user, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?user="+user, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	// A server that never answers fails the test rather than hang it.
	timer := time.AfterFunc(testTimeout, cancel)
	resp, err := client.Do(req)
	timer.Stop()
	if err != nil {
		cancel()
		t.Fatalf("GET %s as %s = %v", url, user, err)
	}
	s := &sseStream{t: t, resp: resp, frames: make(chan Frame, 1024), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		defer resp.Body.Close()
		defer close(s.frames)
		dec := NewDecoder(resp.Body)
		for {
			f, err := dec.Next()
			if err != nil {
				return
			}
			s.frames <- f
		}
	}()
	return s
}

// frame returns the next frame of any kind, or ok false at the end of the
// stream.
func (s *sseStream) frame() (f Frame, ok bool) {
	s.t.Helper()
	select {
	case f, ok = <-s.frames:
		return f, ok
	case <-time.After(testTimeout):
		s.t.Fatalf("no frame within %v", testTimeout)
		return f, false
	}
}

// next returns the next frame with data (one EventSource dispatches), and
// fails the test if the stream ends first.
func (s *sseStream) next() Frame {
	s.t.Helper()
	for {
		f, ok := s.frame()
		if !ok {
			s.t.Fatal("stream ended; want an event")
		}
		if f.HasData {
			return f
		}
	}
}

// expectClosing fails the test unless the next frame is the closing
// comment with reason and a retry hint, and the stream then ends.
func (s *sseStream) expectClosing(reason string) {
	s.t.Helper()
	f, ok := s.frame()
	if !ok || f.HasData || f.Comment != "closing "+reason || f.Retry == 0 {
		s.t.Fatalf("next frame = %+v (ok %v); want a retry hint and the comment %q", f, ok, "closing "+reason)
	}
	if f, ok := s.frame(); ok {
		s.t.Fatalf("after closing: %+v; want the end of the stream", f)
	}
}
