package stream

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// Presence statuses.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusDND     = "dnd"
	StatusOffline = "offline"
)

// ErrOffline is returned when an offline user tries to set a status.
var ErrOffline = errors.New("stream: user has no open stream")

// Directory answers which rooms a user's presence concerns and remembers
// when users were last seen. The store implements it.
type Directory interface {
	// UserRooms returns the rooms user belongs to: everyone in them shares
	// a room with user.
	UserRooms(ctx context.Context, user string) ([]string, error)
	SaveLastSeen(ctx context.Context, user string, at time.Time) error
	LastSeen(ctx context.Context, users []string) (map[string]time.Time, error)
}

// PresenceInfo is one user's presence.
type PresenceInfo struct {
	User     string     `json:"user"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen"` // nil while online or when never seen
}

// PresenceOptions configure a Presence tracker.
type PresenceOptions struct {
	// Grace is how long a user stays online after their last stream closes,
	// so that a reload or a quick reconnect does not flicker (default 5s).
	Grace time.Duration
	// OnLastClose, when set, is called when a user's last stream closes
	// (before the grace period), from the tracker's goroutine: typing stops
	// at once.
	OnLastClose func(user string)
	// Batch is how long the announcer gathers changes before sending them
	// together (default 200ms): when many users connect at once, each stream
	// then receives a burst of changes in one write rather than one each.
	Batch  time.Duration
	Logger *slog.Logger
}

// Presence tracks which users have open streams on this instance, from
// the hub's session feed, and announces each change once to every user who
// shares a room. It owns one goroutine, which reads the feed and announces
// in order; Close stops it.
type Presence struct {
	hub  *Hub
	feed *SessionFeed
	dir  Directory
	opts PresenceOptions

	mu     sync.Mutex // guards users and queue, and is held while applying the feed
	users  map[string]*presenceState
	queue  []announcement
	signal chan struct{} // capacity 1: wakes the announcer
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type presenceState struct {
	conns    int
	status   string // online, away or dnd while conns > 0 or in grace
	gen      int    // bumps on every connect, invalidating pending grace timers
	timer    *time.Timer
	lastSeen time.Time
}

type announcement struct {
	user      string
	info      PresenceInfo
	lastClose bool // the user's last stream closed: stop their typing
}

// NewPresence starts a tracker of hub's streams.
func NewPresence(hub *Hub, dir Directory, opts PresenceOptions) *Presence {
	if opts.Grace <= 0 {
		opts.Grace = 5 * time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 200 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Presence{hub: hub, feed: hub.Sessions(), dir: dir, opts: opts, users: map[string]*presenceState{},
		signal: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// Close stops the announcer and pending grace timers. Idempotent.
func (p *Presence) Close() {
	p.once.Do(func() {
		p.mu.Lock()
		for _, st := range p.users {
			if st.timer != nil {
				st.timer.Stop()
			}
		}
		p.mu.Unlock()
		close(p.stop)
	})
	<-p.done
}

// syncLocked applies the sessions the hub reported since the last call.
// Lookups call it first, so that a stream that has opened is always seen.
func (p *Presence) syncLocked() {
	for _, s := range p.feed.Take() {
		if s.Opened {
			p.openedLocked(s.User)
		} else {
			p.closedLocked(s.User)
		}
	}
}

// openedLocked records a stream opening.
func (p *Presence) openedLocked(user string) {
	st := p.users[user]
	if st == nil {
		st = &presenceState{}
		p.users[user] = st
	}
	st.conns++
	st.gen++
	if st.conns > 1 {
		return
	}
	if st.timer != nil {
		// Back within the grace period: still online, nothing to announce.
		st.timer.Stop()
		st.timer = nil
		return
	}
	st.status = StatusOnline
	p.enqueueLocked(announcement{user: user, info: PresenceInfo{User: user, Status: StatusOnline}})
}

// closedLocked records a stream closing; the last one starts the grace
// period.
func (p *Presence) closedLocked(user string) {
	st := p.users[user]
	if st == nil || st.conns == 0 {
		return
	}
	st.conns--
	if st.conns > 0 {
		return
	}
	// Milliseconds in UTC, as the store keeps it: the event and REST agree.
	st.lastSeen = time.Now().UTC().Truncate(time.Millisecond)
	gen := st.gen
	st.timer = time.AfterFunc(p.opts.Grace, func() { p.expire(user, gen) })
	p.enqueueLocked(announcement{user: user, lastClose: true})
}

// expire ends the grace period: if the user did not come back, they are
// offline.
func (p *Presence) expire(user string, gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.users[user]
	if st == nil || st.gen != gen || st.conns > 0 {
		return
	}
	delete(p.users, user)
	seen := st.lastSeen
	p.enqueueLocked(announcement{user: user, info: PresenceInfo{User: user, Status: StatusOffline, LastSeen: &seen}})
}

// SetStatus sets an online user's explicit status (online, away, dnd).
func (p *Presence) SetStatus(_ context.Context, user, status string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncLocked()
	st := p.users[user]
	if st == nil || st.conns == 0 {
		return ErrOffline
	}
	if st.status == status {
		return nil
	}
	st.status = status
	p.enqueueLocked(announcement{user: user, info: PresenceInfo{User: user, Status: status}})
	return nil
}

// Lookup returns the presence of users.
func (p *Presence) Lookup(ctx context.Context, users []string) ([]PresenceInfo, error) {
	out := make([]PresenceInfo, len(users))
	var offline []string
	p.mu.Lock()
	p.syncLocked()
	for i, u := range users {
		out[i] = PresenceInfo{User: u, Status: StatusOffline}
		if st := p.users[u]; st != nil {
			out[i].Status = st.status
		} else {
			offline = append(offline, u)
		}
	}
	p.mu.Unlock()
	return fillLastSeen(ctx, p.dir, out, offline)
}

// fillLastSeen gives the offline users among out their last-seen times.
func fillLastSeen(ctx context.Context, dir Directory, out []PresenceInfo, offline []string) ([]PresenceInfo, error) {
	if len(offline) == 0 {
		return out, nil
	}
	seen, err := dir.LastSeen(ctx, offline)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if t, ok := seen[out[i].User]; ok && out[i].Status == StatusOffline {
			out[i].LastSeen = &t
		}
	}
	return out, nil
}

func (p *Presence) enqueueLocked(a announcement) {
	p.queue = append(p.queue, a)
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// run applies the session feed as it comes and announces changes in the
// order they happened, gathering those of each Batch window into one
// delivery.
func (p *Presence) run() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apply := func() {
		p.mu.Lock()
		p.syncLocked()
		p.mu.Unlock()
	}
	batch := time.NewTimer(0)
	<-batch.C
	for {
		select {
		case <-p.stop:
			return
		case <-p.feed.Ready():
			apply()
			continue
		case <-p.signal:
		}
		batch.Reset(p.opts.Batch)
	gather:
		for {
			select {
			case <-p.stop:
				return
			case <-p.feed.Ready():
				apply()
			case <-batch.C:
				break gather
			}
		}
		p.mu.Lock()
		queue := p.queue
		p.queue = nil
		p.mu.Unlock()
		var notices []Notice
		for _, a := range queue {
			if n, ok := p.notice(ctx, a); ok {
				notices = append(notices, n)
			}
		}
		if len(notices) > 0 {
			p.hub.Notify(notices)
		}
	}
}

// notice performs an announcement's side effects and returns the event to
// send, if any.
func (p *Presence) notice(ctx context.Context, a announcement) (Notice, bool) {
	if a.lastClose {
		if p.opts.OnLastClose != nil {
			p.opts.OnLastClose(a.user)
		}
		return Notice{}, false
	}
	return presenceNotice(ctx, p.hub, p.dir, a.info, p.opts.Logger)
}

// presenceNotice records an offline user's last-seen time and returns the
// event of a presence change, for everyone who shares a room with the user:
// none when they share none. The rooms come from index, the hub, when the
// user has a stream there and index is not nil; else from the store.
func presenceNotice(ctx context.Context, index *Hub, dir Directory, info PresenceInfo, logger *slog.Logger) (Notice, bool) {
	if info.Status == StatusOffline && info.LastSeen != nil {
		if err := dir.SaveLastSeen(ctx, info.User, *info.LastSeen); err != nil {
			logger.Error("save last seen", "err", err, "user", info.User)
		}
	}
	// The members of the user's rooms are the users who share one with
	// them; the hub's room index finds their local streams, each once. A
	// user with a stream here has their rooms in that index too, at the
	// same position as the audience; only others need the store.
	var (
		rooms []string
		ok    bool
	)
	if index != nil {
		rooms, ok = index.RoomsOf(info.User)
	}
	if !ok {
		var err error
		if rooms, err = dir.UserRooms(ctx, info.User); err != nil {
			logger.Error("presence rooms", "err", err, "user", info.User)
			return Notice{}, false
		}
	}
	if len(rooms) == 0 {
		return Notice{}, false
	}
	data, _ := event.Marshal(info)
	return Notice{Rooms: rooms, Type: event.PresenceChanged, Data: data}, true
}
