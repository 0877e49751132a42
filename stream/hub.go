package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// Log is the ordered log of every replayable event: what the hub follows
// live, and where it replays from what its memory no longer holds. In
// embedded mode it is the store; in a cluster, the Redis Stream in front of
// PostgreSQL.
type Log interface {
	// Epoch identifies the log; positions of another epoch are meaningless.
	Epoch() string
	// Read returns up to max events after position after, in order. It
	// waits for the first one until ctx ends or a short bounded time passes,
	// and may then return none. It returns event.ErrTrimmed when it no
	// longer holds the events after `after` for reading live; Range still
	// has them, back to TrimmedThrough.
	Read(ctx context.Context, after int64, max int) ([]event.Event, error)
	// Range returns up to q.Limit events in (q.After, q.UpTo], in order,
	// restricted to q.Rooms when it is not nil and to member events about
	// q.Subject when that is set.
	Range(ctx context.Context, q event.Query) ([]event.Event, error)
	// TrimmedThrough is the newest position retention deleted: a replay
	// from before it cannot be complete.
	TrimmedThrough() int64
}

// Membership places a new stream: it tells which rooms a user belongs to,
// exactly as of a position of the log.
type Membership interface {
	// Snapshot returns the rooms user belongs to and the position that
	// membership is exact at; with an empty user, just the log's head.
	Snapshot(ctx context.Context, user string) (rooms []string, head int64, err error)
}

// Options configure a Hub. Zero values take the documented defaults.
type Options struct {
	// QueueSize bounds each connection's queue of frames (default 1024). A
	// connection whose queue is full is dropped; it resumes by replay.
	QueueSize int
	// Heartbeat is the interval of ": ping" comments (default 15s).
	Heartbeat time.Duration
	// Retry is the reconnection delay sent to clients (default 2s).
	Retry time.Duration
	// WriteTimeout bounds each write to a client (default 10s).
	WriteTimeout time.Duration
	// TailSize is how many recent events stay in memory for replay (default
	// 100,000), and TailBytes how many bytes they may take (default 64 MiB).
	TailSize, TailBytes int
	// QueueBytes bounds each connection's queue in bytes too (default
	// 4 MiB): a few large messages fill it as many small ones would.
	QueueBytes int
	// MaxReplay bounds the events one stream replays as it opens (default
	// 10,000): past it, the stream sends resync and goes live, and the
	// client refetches over REST what it shows.
	MaxReplay int
	// MaxStreams caps open streams on this instance (0: no cap).
	MaxStreams int
	// MaxStreamsPerUser caps one user's open streams (0: no cap).
	MaxStreamsPerUser int
	// Logger receives the hub's errors. Default: discard.
	Logger *slog.Logger
}

// Hub routes the log's events to local SSE connections. It owns one
// goroutine, the dispatcher, which Close stops.
type Hub struct {
	log     Log
	members Membership
	opts    Options
	epoch   string
	tail    *tail

	// mu guards the fields below it: the routing index and the position.
	mu       sync.Mutex
	pos      int64                    // newest position dispatched
	advanced chan struct{}            // closed and replaced each time pos moves
	rooms    map[string]*roomConns    // room → local connections of its members
	users    map[string]map[*conn]int // user → their local connections
	streams  int
	closed   bool
	stamp    uint64 // counts Notify calls, to reach each connection once

	// revMu guards revoked, each user's cut-off of their tokens (Unix ms).
	// Every authenticated request reads it, so it has a lock of its own
	// rather than mu, which the dispatcher holds while it routes; who
	// holds both takes mu first.
	revMu   sync.RWMutex
	revoked map[string]int64

	closing  chan struct{} // closed by Close, for streams not yet registered
	cancel   context.CancelFunc
	done     chan struct{}  // closed when the dispatcher exits
	conns    sync.WaitGroup // the goroutines of hijacked streams
	hangups  *hangups       // notices their clients leave
	sessions *SessionFeed   // streams opening and closing, for presence
	once     sync.Once

	wake []*conn // the dispatcher's list of writers to wake; only it uses it

	delivered atomic.Int64
	dropped   atomic.Int64
	rejected  atomic.Int64
	resyncs   atomic.Int64
	replayed  atomic.Int64
}

type roomConns struct{ conns []*conn }

// NewHub starts a hub at the log's current head; events before it are only
// reachable by replay.
func NewHub(ctx context.Context, log Log, members Membership, opts Options) (*Hub, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 1024
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = 2 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.TailSize <= 0 {
		opts.TailSize = 100_000
	}
	if opts.TailBytes <= 0 {
		opts.TailBytes = 64 << 20
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 4 << 20
	}
	if opts.MaxReplay <= 0 {
		opts.MaxReplay = 10_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	_, head, err := members.Snapshot(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("stream: read log head: %w", err)
	}
	hangups, err := newHangups()
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		log: log, members: members, opts: opts, epoch: log.Epoch(),
		tail:     newTail(opts.TailSize, opts.TailBytes, head),
		pos:      head,
		advanced: make(chan struct{}),
		rooms:    map[string]*roomConns{},
		users:    map[string]map[*conn]int{},
		revoked:  map[string]int64{},
		closing:  make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
		hangups:  hangups,
		sessions: newSessionFeed(),
	}
	go h.run(runCtx)
	return h, nil
}

// Close tells every stream to end (clients reconnect, elsewhere or later)
// and stops the dispatcher. It returns when the dispatcher and the streams
// the hub owns have exited, or ctx ends. Streams still inside an HTTP
// handler (HTTP/2) end by themselves once told; http.Server.Shutdown waits
// for those. Close is idempotent.
func (h *Hub) Close(ctx context.Context) error {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		// Registered streams end with a retry hint; admitLocked refuses
		// new ones from now on.
		for _, cs := range h.users {
			for c := range cs {
				c.notify(noteClosing)
			}
		}
		h.mu.Unlock()
		close(h.closing)
		h.cancel()
	})
	streams := make(chan struct{})
	go func() {
		h.conns.Wait()
		h.hangups.close()
		close(streams)
	}()
	for _, ch := range []chan struct{}{h.done, streams} {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Stats are the hub's counters.
type Stats struct {
	Streams   int
	Position  int64
	Delivered int64 // frames queued to connections
	Dropped   int64 // connections dropped for falling behind: a full queue, or a write that timed out
	Rejected  int64 // streams refused by a cap or shutdown
	Resyncs   int64 // streams told to resync: their position could not be honoured, or their replay was too long
	Replayed  int64 // events sent by replays
}

// Stats returns the hub's current counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Streams: h.streams, Position: h.pos, Delivered: h.delivered.Load(), Dropped: h.dropped.Load(),
		Rejected: h.rejected.Load(), Resyncs: h.resyncs.Load(), Replayed: h.replayed.Load()}
}

// Sessions is the feed of this hub's streams opening and closing.
func (h *Hub) Sessions() *SessionFeed { return h.sessions }

// Epoch returns the epoch of the log the hub follows.
func (h *Hub) Epoch() string { return h.epoch }

// run is the dispatcher: it reads the log in order and routes each event.
func (h *Hub) run(ctx context.Context) {
	defer close(h.done)
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		h.mu.Lock()
		pos := h.pos
		h.mu.Unlock()
		evs, err := h.log.Read(ctx, pos, 512)
		if errors.Is(err, event.ErrTrimmed) {
			// We fell behind what the log serves live: catch up by range.
			evs, err = h.log.Range(ctx, event.Query{After: pos, UpTo: 1<<63 - 1, Limit: 4096})
			if err == nil && len(evs) == 0 {
				// Nothing new. While Redis is unreachable every read ends
				// here, after the log's own wait: nothing is wrong, and a
				// growing back-off would only delay the next event.
				select {
				case <-time.After(emptyCatchUpWait):
				case <-ctx.Done():
					return
				}
				continue
			}
			if err == nil && evs[0].Seq != pos+1 {
				// Retention deleted events this hub never dispatched (it is
				// a retention period behind). Its streams would miss them:
				// they reconnect instead, and get resync.
				h.opts.Logger.Error("the log was trimmed past this instance's position: streams must resync",
					"position", pos, "next", evs[0].Seq)
				h.dropAll()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.opts.Logger.Error("read event log", "err", err, "position", pos)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		h.dispatch(evs)
	}
}

// emptyCatchUpWait is how long the hub waits before it reads again when the
// log said it was behind what it serves live, yet its range had nothing
// after the hub's position.
const emptyCatchUpWait = 10 * time.Millisecond

// dropAll drops every stream; each resumes by reconnecting.
func (h *Hub) dropAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cs := range h.users {
		for c := range cs {
			h.dropLocked(c)
			h.dropped.Add(1)
		}
	}
}

// dispatch encodes each event once, adds it to the tail and routes it.
func (h *Hub) dispatch(evs []event.Event) {
	if len(evs) == 0 {
		return
	}
	batch := make([]*entry, len(evs))
	for i, e := range evs {
		batch[i] = &entry{Event: e, frame: AppendFrame(make([]byte, 0, len(e.Data)+len(e.Type)+48), Position{h.epoch, e.Seq}.String(), e.Type, e.Data)}
	}
	h.tail.append(batch)
	h.mu.Lock()
	for _, e := range batch {
		if e.Seq <= h.pos {
			continue // already dispatched (a catch-up overlapped)
		}
		h.routeLocked(e, &h.wake)
		h.pos = e.Seq
	}
	close(h.advanced)
	h.advanced = make(chan struct{})
	h.mu.Unlock()
	h.wake = signal(h.wake)
}

// routeLocked applies a membership change to the index and queues the frame
// to the room's local connections. A joining user sees their own join; a
// leaving user sees their own leave and nothing of the room after it. A
// room:deleted is each member's own, like a leave. An event without a room
// is for one user's streams: a custom event or an invitation is queued to
// them, and a disconnect closes them.
func (h *Hub) routeLocked(e *entry, wake *[]*conn) {
	if e.Room == "" {
		if e.Type == event.UserDisconnected {
			h.disconnectedLocked(e)
			return
		}
		for c := range h.users[e.Subject] {
			h.sendLocked(c, e.frame, wake)
		}
		return
	}
	if event.Membership(e.Type) {
		// The room's size changed: presence weighs whether it is still
		// small enough for every member to hear every other one.
		h.sessions.roomChanged(e.Room)
	}
	switch e.Type {
	case event.MemberJoined:
		for c := range h.users[e.Subject] {
			h.addRoomLocked(c, e.Room)
		}
	case event.RoomDeleted:
		for c := range h.users[e.Subject] {
			if _, in := c.rooms[e.Room]; in {
				h.sendLocked(c, e.frame, wake)
				h.removeRoomLocked(c, e.Room)
			}
		}
		return
	}
	if rc := h.rooms[e.Room]; rc != nil {
		h.sendRoomLocked(rc, e.frame, wake)
	}
	if e.Type == event.MemberLeft {
		for c := range h.users[e.Subject] {
			h.removeRoomLocked(c, e.Room)
		}
	}
}

// disconnectedLocked applies a user:disconnected of the log: the user's
// streams here close, after what was queued before it, and a cut-off
// refuses their older tokens from now on.
//
// A disconnect travels in the log rather than on the notice feed (Redis
// pub/sub), because it must reach every instance: pub/sub delivers at
// most once, so an instance that was reconnecting to Redis, or a Redis
// that was down, would leave a banned user's streams open there. Every
// instance reads every event of the log, from PostgreSQL when Redis fails
// it, and at the same position among the other events, so each closes the
// same streams after the same events.
func (h *Hub) disconnectedLocked(e *entry) {
	var d event.DisconnectData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		h.opts.Logger.Error("undecodable disconnect", "err", err, "position", e.Seq)
	}
	h.revokeLocked(e.Subject, d.RevokeBefore)
	for c := range h.users[e.Subject] {
		h.closeLocked(c, noteDisconnected)
	}
}

// revokeLocked raises user's cut-off to before (Unix ms); it never lowers.
// It is called with mu held, so that the dispatcher's cut-offs are ordered
// with register's check.
func (h *Hub) revokeLocked(user string, before int64) { h.revoke(user, before) }

func (h *Hub) revoke(user string, before int64) {
	h.revMu.Lock()
	if before > h.revoked[user] {
		h.revoked[user] = before
	}
	h.revMu.Unlock()
}

// Revoke records that user's tokens issued before the cut-off are refused.
// The log's disconnects set it on every instance as they are dispatched;
// a server loads the cut-offs the store holds when it starts, and applies
// its own at once. A later cut-off replaces an earlier one, never the
// other way.
func (h *Hub) Revoke(user string, before time.Time) { h.revoke(user, before.UnixMilli()) }

// Revoked reports whether a token of user issued at issued (Unix seconds,
// 0 when the token did not say) is refused by the user's cut-off. Tokens
// say when they were issued in whole seconds, so the cut-off counts in
// whole seconds too: a token of the cut-off's own second is accepted.
func (h *Hub) Revoked(user string, issued int64) bool {
	h.revMu.RLock()
	before := h.revoked[user]
	h.revMu.RUnlock()
	return before > 0 && issued < before/1000
}

// sendLocked queues a frame without blocking; a full queue drops the
// connection, which then resumes by replay. A writer whose queue was empty
// is added to wake: callers wake writers only once everything is queued
// and the lock is released, so that a writer finding its queue takes the
// whole batch in one write.
func (h *Hub) sendLocked(c *conn, frame []byte, wake *[]*conn) {
	ok, first := c.enqueue(frame)
	if !ok {
		h.dropLocked(c)
		h.dropped.Add(1)
		return
	}
	h.delivered.Add(1)
	if first {
		*wake = append(*wake, c)
	}
}

// sendRoomLocked queues a frame to every stream of a room. It walks the
// list from its end: a stream that sendLocked drops on the way (its queue
// was full) leaves the list by having the last one moved into its place,
// which the walk has already passed, so every other stream is reached once.
func (h *Hub) sendRoomLocked(rc *roomConns, frame []byte, wake *[]*conn) {
	for i := len(rc.conns) - 1; i >= 0; i-- {
		h.sendLocked(rc.conns[i], frame, wake)
	}
}

// signal wakes the writers of wake and returns the list emptied, for reuse.
func signal(wake []*conn) []*conn {
	for i, c := range wake {
		c.signal()
		wake[i] = nil
	}
	return wake[:0]
}

// Notice is an ephemeral event (no id, never replayed) for the members of
// some rooms.
type Notice struct {
	Rooms []string `json:"rooms"`
	// Except, when set, is a user who does not get it: a typist is not
	// told of their own typing.
	Except string `json:"except,omitempty"`
	Type   string `json:"type"`
	Data   []byte `json:"data"`
	// Of and Version order a cluster's presence notices about one user:
	// instances announce each change in their own time, so a receiver
	// drops a notice of a Version below one it delivered (see RedisFeed).
	Of      string `json:"of,omitempty"`
	Version int64  `json:"version,omitempty"`
}

// Notifier delivers ephemeral notices to the streams of every instance:
// the Hub itself in embedded mode, a RedisFeed in a cluster.
type Notifier interface {
	Notify(notices []Notice)
}

var _ Notifier = (*Hub)(nil)

// Notify delivers ephemeral events, in order, each once to every local
// connection that belongs to at least one of its rooms. As everywhere,
// writers wake once all are queued, so a burst of presence changes costs
// each stream one write, not one per change.
func (h *Hub) Notify(notices []Notice) {
	frames := make([][]byte, len(notices))
	for i, n := range notices {
		frames[i] = AppendFrame(nil, "", n.Type, n.Data)
	}
	var wake []*conn
	h.mu.Lock()
	for i, n := range notices {
		h.stamp++
		for _, r := range n.Rooms {
			rc := h.rooms[r]
			if rc == nil {
				continue
			}
			// From the end, as in sendRoomLocked: a drop moves the last
			// stream into the dropped one's place.
			for j := len(rc.conns) - 1; j >= 0; j-- {
				if c := rc.conns[j]; c.stamp != h.stamp && c.user != n.Except {
					c.stamp = h.stamp
					h.sendLocked(c, frames[i], &wake)
				}
			}
		}
	}
	h.mu.Unlock()
	signal(wake)
}

// NotifyAll delivers one ephemeral event to every stream here.
func (h *Hub) NotifyAll(typ string, data []byte) {
	frame := AppendFrame(nil, "", typ, data)
	var wake []*conn
	h.mu.Lock()
	for _, cs := range h.users {
		for c := range cs {
			h.sendLocked(c, frame, &wake)
		}
	}
	h.mu.Unlock()
	signal(wake)
}

// NotifyNew delivers notices, in order, to those of user's local streams
// that opened since the last call for user, and to no other, whatever
// their rooms: what a new stream must learn as it opens, the user's other
// streams know already. A call with no notices only marks the user's
// streams as told.
func (h *Hub) NotifyNew(user string, notices []Notice) {
	frames := make([][]byte, len(notices))
	for i, n := range notices {
		frames[i] = AppendFrame(nil, "", n.Type, n.Data)
	}
	var wake []*conn
	h.mu.Lock()
	for c := range h.users[user] {
		if !c.fresh {
			continue
		}
		c.fresh = false
		for _, f := range frames {
			h.sendLocked(c, f, &wake)
		}
	}
	h.mu.Unlock()
	signal(wake)
}

// RoomsOf returns the rooms of a user who has a stream here, as the index
// has them at the hub's position; ok is false when the user has none. All
// of a user's streams share one membership, so any of them answers.
func (h *Hub) RoomsOf(user string) (rooms []string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.users[user] {
		rooms = make([]string, 0, len(c.rooms))
		for r := range c.rooms {
			rooms = append(rooms, r)
		}
		return rooms, true
	}
	return nil, false
}

// takeStreamCounts returns how many streams each user has open here, and
// takes the session feed's pending entries as of the same moment (the hub
// adds to the feed with its lock held). A reader that applies the entries
// and then records the counts counts every stream once: the entries it
// takes later all happened after the counts.
func (h *Hub) takeStreamCounts() ([]Session, map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.users))
	for u, cs := range h.users {
		out[u] = len(cs)
	}
	return h.sessions.Take(), out
}

func (h *Hub) addRoomLocked(c *conn, room string) {
	if _, ok := c.rooms[room]; ok {
		return
	}
	rc := h.rooms[room]
	if rc == nil {
		rc = &roomConns{}
		h.rooms[room] = rc
	}
	c.rooms[room] = len(rc.conns)
	rc.conns = append(rc.conns, c)
}

func (h *Hub) removeRoomLocked(c *conn, room string) {
	i, ok := c.rooms[room]
	if !ok {
		return
	}
	delete(c.rooms, room)
	rc := h.rooms[room]
	last := len(rc.conns) - 1
	if i != last {
		moved := rc.conns[last]
		rc.conns[i] = moved
		moved.rooms[room] = i
	}
	rc.conns[last] = nil
	rc.conns = rc.conns[:last]
	if last == 0 {
		delete(h.rooms, room)
	}
}

// dropLocked removes c from the index and tells its writer to stop.
func (h *Hub) dropLocked(c *conn) { h.closeLocked(c, noteDropped) }

// closeLocked removes c from the index and gives its writer the note that
// ends it.
func (h *Hub) closeLocked(c *conn, n note) {
	if c.removed {
		return
	}
	c.removed = true
	for room := range c.rooms {
		h.removeRoomLocked(c, room)
	}
	if cs := h.users[c.user]; cs != nil {
		delete(cs, c)
		if len(cs) == 0 {
			delete(h.users, c.user)
		}
	}
	h.streams--
	c.notify(n)
	h.sessions.add(Session{User: c.user})
}

// admitLocked applies the stream caps.
func (h *Hub) admitLocked(user string) error {
	switch {
	case h.closed:
		return errShutdown
	case h.opts.MaxStreams > 0 && h.streams >= h.opts.MaxStreams:
		return errOverloaded
	case h.opts.MaxStreamsPerUser > 0 && len(h.users[user]) >= h.opts.MaxStreamsPerUser:
		return errTooManyStreams
	}
	return nil
}

// waitFor blocks until the dispatcher has reached position seq.
func (h *Hub) waitFor(ctx context.Context, seq int64) error {
	for {
		h.mu.Lock()
		pos, ch := h.pos, h.advanced
		h.mu.Unlock()
		if pos >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-h.closing:
			return errShutdown
		}
	}
}

// register places c in the index with its membership as of the hub's
// current position, and returns both: from then on the dispatcher queues
// c's events. rooms is the membership as of head, which the hub has reached.
func (h *Hub) register(c *conn, rooms []string, head int64) (int64, map[string]bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.admitLocked(c.user); err != nil {
		return 0, nil, err
	}
	// A disconnect dispatched since the subscriber was authenticated: its
	// token may be one the cut-off refuses.
	if h.Revoked(c.user, c.issued) {
		return 0, nil, errDisconnected
	}
	// Bring the membership from head forward to pos with the member events
	// the dispatcher has routed since.
	set := make(map[string]bool, len(rooms))
	for _, r := range rooms {
		set[r] = true
	}
	if h.pos > head {
		evs, err := h.tail.subjectEvents(c.user, head, h.pos)
		if err != nil {
			return 0, nil, errBehind
		}
		for _, e := range evs {
			if event.Membership(e.Type) {
				set[e.Room] = e.Type == event.MemberJoined
			}
		}
	}
	for r, in := range set {
		if in {
			h.addRoomLocked(c, r)
		} else {
			delete(set, r)
		}
	}
	if h.users[c.user] == nil {
		h.users[c.user] = map[*conn]int{}
	}
	h.users[c.user][c] = 0
	h.streams++
	h.sessions.add(Session{User: c.user, Opened: true})
	return h.pos, set, nil
}

// unregister removes c when its handler ends.
func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	h.dropLocked(c)
	h.mu.Unlock()
}

// Closed reports whether Close was called.
func (h *Hub) Closed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}
