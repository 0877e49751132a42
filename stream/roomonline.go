package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/internal/quietlog"
)

// Big rooms.
//
// A presence change is broadcast to the members of the subject's small
// rooms only: those of at most RoomLimit members. Broadcasting to every
// room would make a room of n members cost n² frames as its members come
// online, every one of them told of every other; with the limit, a stream
// that opens costs at most RoomLimit frames per room of its user, whatever
// the rooms' sizes.
//
// A large room gets its online count instead: a room:online event with the
// number of members online (or away, or dnd), sent at most once per
// CountInterval, and only when the count changed. The same event, with
// presence true, tells the members of a room that shrank back to the limit
// that presence changes come again (refetch the members' presence); with
// presence false, that a room grew past it. A stream that opens gets the
// last count of each of its large rooms.
//
// What a room's size is, who is online and which counts were last
// published is the Directory's and the countBoard's: memory for one
// instance, Redis for a cluster. A roomCounter belongs to its tracker's
// goroutine, which marks rooms dirty as their members come and go and
// counts the dirty ones on a ticker.

// RoomOnline is the payload of room:online.
type RoomOnline struct {
	Room string `json:"room"`
	// Online is how many members are online, away or dnd.
	Online int `json:"online"`
	// Presence reports whether the room's members hear each other's
	// presence changes: false while it has more than the limit's members.
	Presence bool `json:"presence"`
}

// countBoard holds the published counts of large rooms and counts who is
// online.
type countBoard interface {
	// claim returns those of rooms this instance may count now: in a
	// cluster, at most one instance counts a room per interval, and the
	// others keep it dirty until they may.
	claim(ctx context.Context, rooms []string) ([]string, error)
	// published returns the counts last published of those of rooms that
	// were large then.
	published(ctx context.Context, rooms []string) (map[string]int, error)
	publish(ctx context.Context, room string, n int) error
	unpublish(ctx context.Context, room string) error
	// online counts the users who are online, away or dnd.
	online(ctx context.Context, users []string) (int, error)
}

// roomCounter decides which rooms' members hear presence changes and
// publishes the counts of the others. It belongs to its tracker's
// goroutine.
type roomCounter struct {
	dir   Directory
	board countBoard
	limit int
	quiet *quietlog.Logger    // for the failures of Redis or the store
	dirty map[string]struct{} // rooms whose count or size may have changed
	// sized holds whether rooms are large, as last sized, until their
	// membership changes: the rooms of a user are sized once, not at every
	// presence change of each member. It holds at most maxSized rooms.
	sized    map[string]bool
	maxSized int
}

// maxSizedRooms bounds the rooms whose sizes a roomCounter remembers.
const maxSizedRooms = 1 << 16

func newRoomCounter(dir Directory, board countBoard, limit int, logger *slog.Logger) *roomCounter {
	return &roomCounter{dir: dir, board: board, limit: limit, quiet: quietlog.New(logger),
		dirty: map[string]struct{}{}, sized: map[string]bool{}, maxSized: maxSizedRooms}
}

// roomFor makes room for the sizes of n more rooms. Past the bound the
// counter forgets every size and asks again as rooms come up (a bounded
// query each): nothing tells it that a room was deleted, and the sizes of
// rooms deleted long ago must not stay in memory for the process's life.
func (rc *roomCounter) roomFor(n int) {
	if len(rc.sized)+n > rc.maxSized {
		clear(rc.sized)
	}
}

// changed forgets the sizes of rooms whose membership changed, and marks
// them to be counted.
func (rc *roomCounter) changed(rooms []string) {
	for _, r := range rooms {
		delete(rc.sized, r)
	}
	rc.mark(rooms)
}

// split divides rooms into those of at most the limit's members and the
// others, sizing in the Directory only the rooms it has not sized since
// their membership last changed.
func (rc *roomCounter) split(ctx context.Context, rooms []string) (small, large []string, err error) {
	rc.roomFor(len(rooms))
	var unknown []string
	for _, r := range rooms {
		if _, ok := rc.sized[r]; !ok {
			unknown = append(unknown, r)
		}
	}
	if len(unknown) > 0 {
		big, err := rc.dir.LargeRooms(ctx, unknown, rc.limit)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range unknown {
			rc.sized[r] = false
		}
		for _, r := range big {
			rc.sized[r] = true
		}
	}
	for _, r := range rooms {
		if rc.sized[r] {
			large = append(large, r)
		} else {
			small = append(small, r)
		}
	}
	return small, large, nil
}

// mark notes rooms whose size or online count may have changed.
func (rc *roomCounter) mark(rooms []string) {
	for _, r := range rooms {
		rc.dirty[r] = struct{}{}
	}
}

// sample counts the dirty rooms it may and returns the room:online events
// to send: for a large room whose count changed, and for a room that
// crossed the limit either way. The work is a bounded query per room, and
// the members of the large ones once per interval. A room that could not
// be counted (another instance's turn, an error) stays dirty.
func (rc *roomCounter) sample(ctx context.Context) []Notice {
	if len(rc.dirty) == 0 {
		return nil
	}
	rooms := make([]string, 0, len(rc.dirty))
	for r := range rc.dirty {
		rooms = append(rooms, r)
	}
	claimed, err := rc.board.claim(ctx, rooms)
	if err != nil {
		rc.quiet.Warn("claim rooms to count", "err", err)
		return nil
	}
	if len(claimed) == 0 {
		return nil
	}
	large, err := rc.dir.LargeRooms(ctx, claimed, rc.limit)
	if err != nil {
		rc.quiet.Warn("size rooms", "err", err)
		return nil
	}
	isLarge := make(map[string]bool, len(large))
	for _, r := range large {
		isLarge[r] = true
	}
	rc.roomFor(len(claimed))
	for _, r := range claimed {
		rc.sized[r] = isLarge[r]
	}
	prev, err := rc.board.published(ctx, claimed)
	if err != nil {
		rc.quiet.Warn("read room counts", "err", err)
		return nil
	}
	var out []Notice
	for _, room := range claimed {
		last, had := prev[room]
		if !isLarge[room] && !had {
			delete(rc.dirty, room) // small, and was: presence:changed covers it
			continue
		}
		n, err := rc.count(ctx, room)
		if err != nil {
			rc.quiet.Warn("count a room's members online", "err", err, "room", room)
			continue
		}
		if isLarge[room] {
			if had && last == n {
				delete(rc.dirty, room)
				continue
			}
			err = rc.board.publish(ctx, room, n)
		} else {
			err = rc.board.unpublish(ctx, room)
		}
		if err != nil {
			rc.quiet.Warn("publish a room's count", "err", err, "room", room)
			continue
		}
		delete(rc.dirty, room)
		out = append(out, roomOnlineNotice(RoomOnline{Room: room, Online: n, Presence: !isLarge[room]}))
	}
	return out
}

func (rc *roomCounter) count(ctx context.Context, room string) (int, error) {
	members, err := rc.dir.RoomMembers(ctx, room)
	if err != nil {
		return 0, err
	}
	return rc.board.online(ctx, members)
}

// initial tells the new streams of users, whose streams just opened, the
// last count of each of their large rooms: a new stream learns which of
// its rooms are large without waiting for a count to change. rooms gives
// a user's rooms, from the hub's index.
func (rc *roomCounter) initial(ctx context.Context, hub *Hub, users []string, rooms func(user string) []string) {
	byUser := make(map[string][]string, len(users))
	var all []string
	for _, u := range users {
		if _, seen := byUser[u]; seen {
			continue
		}
		rs := rooms(u)
		byUser[u] = rs
		all = append(all, rs...)
	}
	var counts map[string]int
	if len(all) > 0 {
		var err error
		if counts, err = rc.board.published(ctx, all); err != nil {
			rc.quiet.Warn("read room counts", "err", err)
		}
	}
	for u, rs := range byUser {
		var notices []Notice
		for _, r := range rs {
			if online, ok := counts[r]; ok {
				notices = append(notices, roomOnlineNotice(RoomOnline{Room: r, Online: online}))
			}
		}
		hub.NotifyNew(u, notices)
	}
}

// roomOnlineNotice is a room:online event for the room's members.
func roomOnlineNotice(ro RoomOnline) Notice {
	data, _ := event.Marshal(ro)
	return Notice{Rooms: []string{ro.Room}, Type: event.RoomOnline, Data: data}
}

// memoryBoard is the countBoard of one instance: the counts it published,
// and its tracker's users. Only the tracker's goroutine uses it.
type memoryBoard struct {
	counts map[string]int
	// online counts the users among users that the tracker knows online.
	onlineFn func(users []string) int
}

func (b *memoryBoard) claim(_ context.Context, rooms []string) ([]string, error) { return rooms, nil }

func (b *memoryBoard) published(_ context.Context, rooms []string) (map[string]int, error) {
	out := map[string]int{}
	for _, r := range rooms {
		if n, ok := b.counts[r]; ok {
			out[r] = n
		}
	}
	return out, nil
}

func (b *memoryBoard) publish(_ context.Context, room string, n int) error {
	b.counts[room] = n
	return nil
}

func (b *memoryBoard) unpublish(_ context.Context, room string) error {
	delete(b.counts, room)
	return nil
}

func (b *memoryBoard) online(_ context.Context, users []string) (int, error) {
	return b.onlineFn(users), nil
}

// defaultRoomLimit and defaultCountInterval are PresenceOptions' defaults.
const (
	defaultRoomLimit     = 100
	defaultCountInterval = 5 * time.Second
)
