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

// Directory answers which rooms a user's presence concerns, how large
// rooms are, and remembers when users were last seen. The store implements
// it.
type Directory interface {
	// PresenceRooms returns the rooms user belongs to, split into those of
	// at most limit members and the others, at a cost that does not grow
	// with the rooms' sizes.
	PresenceRooms(ctx context.Context, user string, limit int) (small, large []string, err error)
	// LargeRooms returns those of rooms that have more than limit members,
	// at a cost that does not grow with their sizes.
	LargeRooms(ctx context.Context, rooms []string, limit int) ([]string, error)
	// RoomMembers returns a room's members.
	RoomMembers(ctx context.Context, room string) ([]string, error)
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
	Batch time.Duration
	// RoomLimit is the size of the largest room whose members hear each
	// other's presence changes (default 100); larger rooms get their
	// online count instead (see RoomOnline).
	RoomLimit int
	// CountInterval is the least time between two counts of a large room
	// (default 5s).
	CountInterval time.Duration
	Logger        *slog.Logger
}

// Presence tracks which users have open streams on this instance, from
// the hub's session feed, and announces each change once to every user who
// shares a small room (see RoomOnline for the large ones). It owns one
// goroutine, which reads the feed, announces in order and counts large
// rooms; Close stops it.
type Presence struct {
	hub    *Hub
	feed   *SessionFeed
	dir    Directory
	opts   PresenceOptions
	counts *roomCounter // the goroutine's

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
	// transition marks a change between offline and online, which changes
	// the counts of the user's large rooms; a status does not.
	transition bool
	// opened marks a stream of user opening: it gets the counts of the
	// user's large rooms.
	opened bool
	// version orders a cluster's changes of one user (see stampLua).
	version int64
}

// setPresenceDefaults fills in the defaults of the options both trackers
// share.
func setPresenceDefaults(grace, batch, count *time.Duration, limit *int, logger **slog.Logger) {
	if *grace <= 0 {
		*grace = 5 * time.Second
	}
	if *batch <= 0 {
		*batch = 200 * time.Millisecond
	}
	if *count <= 0 {
		*count = defaultCountInterval
	}
	if *limit <= 0 {
		*limit = defaultRoomLimit
	}
	if *logger == nil {
		*logger = slog.New(slog.DiscardHandler)
	}
}

// NewPresence starts a tracker of hub's streams.
func NewPresence(hub *Hub, dir Directory, opts PresenceOptions) *Presence {
	setPresenceDefaults(&opts.Grace, &opts.Batch, &opts.CountInterval, &opts.RoomLimit, &opts.Logger)
	p := &Presence{hub: hub, feed: hub.Sessions(), dir: dir, opts: opts, users: map[string]*presenceState{},
		signal: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	p.counts = newRoomCounter(dir, &memoryBoard{counts: map[string]int{}, onlineFn: p.countOnline}, opts.RoomLimit, opts.Logger)
	go p.run()
	return p
}

// countOnline counts the users among users who are online, away or dnd
// (in grace included, as Lookup has them).
func (p *Presence) countOnline(users []string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncLocked()
	n := 0
	for _, u := range users {
		if p.users[u] != nil {
			n++
		}
	}
	return n
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
	if st.conns == 1 && st.timer != nil {
		// Back within the grace period: still online, nothing to announce.
		st.timer.Stop()
		st.timer = nil
	} else if st.conns == 1 {
		st.status = StatusOnline
		p.enqueueLocked(announcement{user: user, info: PresenceInfo{User: user, Status: StatusOnline}, transition: true})
	}
	p.enqueueLocked(announcement{user: user, opened: true})
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
	p.enqueueLocked(announcement{user: user, info: PresenceInfo{User: user, Status: StatusOffline, LastSeen: &seen}, transition: true})
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

// run applies the session feed as it comes, announces changes in the
// order they happened, gathering those of each Batch window into one
// delivery, and counts the large rooms every CountInterval.
func (p *Presence) run() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apply := func() {
		p.mu.Lock()
		p.syncLocked()
		p.mu.Unlock()
		p.counts.changed(p.feed.TakeRooms())
	}
	count := time.NewTicker(p.opts.CountInterval)
	defer count.Stop()
	batch := time.NewTimer(0)
	<-batch.C
	for {
		select {
		case <-p.stop:
			return
		case <-p.feed.Ready():
			apply()
			continue
		case <-count.C:
			p.sample(ctx)
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
			case <-count.C:
				p.sample(ctx)
			case <-batch.C:
				break gather
			}
		}
		p.mu.Lock()
		queue := p.queue
		p.queue = nil
		p.mu.Unlock()
		var notices []Notice
		var opened []string
		for _, a := range queue {
			if a.opened {
				opened = append(opened, a.user)
				continue
			}
			if n, ok := p.notice(ctx, a); ok {
				notices = append(notices, n)
			}
		}
		if len(notices) > 0 {
			p.hub.Notify(notices)
		}
		p.counts.initial(ctx, p.hub, opened, p.roomsOf)
	}
}

// sample counts the large rooms that changed and sends their counts.
func (p *Presence) sample(ctx context.Context) {
	p.counts.changed(p.feed.TakeRooms())
	if notices := p.counts.sample(ctx); len(notices) > 0 {
		p.hub.Notify(notices)
	}
}

// roomsOf returns the rooms of a user with a stream here, from the hub's
// index.
func (p *Presence) roomsOf(user string) []string {
	rooms, _ := p.hub.RoomsOf(user)
	return rooms
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
	n, large, ok := presenceNotice(ctx, p.dir, a.info, p.presenceRooms, p.opts.Logger)
	if a.transition {
		p.counts.mark(large)
	}
	return n, ok
}

// presenceRooms returns user's rooms split by size. Those of a user with
// a stream here come from the hub's index, at the same position as the
// streams that hear the change, sized once until their membership
// changes; only the others' need the store.
func (p *Presence) presenceRooms(ctx context.Context, user string) (small, large []string, err error) {
	if rooms, ok := p.hub.RoomsOf(user); ok {
		return p.counts.split(ctx, rooms)
	}
	return p.dir.PresenceRooms(ctx, user, p.opts.RoomLimit)
}

// presenceNotice records an offline user's last-seen time and returns the
// event of a presence change, for everyone who shares a small room with
// the user (none when they share none), and the user's large rooms, whose
// counts it may change. rooms gives the user's rooms, sized at a cost
// that does not grow with the rooms: a large room's audience is never
// walked for one user's change.
func presenceNotice(ctx context.Context, dir Directory, info PresenceInfo, rooms func(ctx context.Context, user string) (small, large []string, err error), logger *slog.Logger) (n Notice, large []string, ok bool) {
	if info.Status == StatusOffline && info.LastSeen != nil {
		if err := dir.SaveLastSeen(ctx, info.User, *info.LastSeen); err != nil {
			logger.Error("save last seen", "err", err, "user", info.User)
		}
	}
	small, large, err := rooms(ctx, info.User)
	if err != nil {
		logger.Error("presence rooms", "err", err, "user", info.User)
		return Notice{}, nil, false
	}
	if len(small) == 0 {
		return Notice{}, large, false
	}
	data, _ := event.Marshal(info)
	return Notice{Rooms: small, Type: event.PresenceChanged, Data: data}, large, true
}
