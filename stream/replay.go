package stream

import (
	"context"
	"errors"

	"github.com/heraldchat/herald/internal/event"
)

// replayPage is how many events one read of the durable log returns.
const replayPage = 2048

// errReplayTooLong: a replay reached Options.MaxReplay events; the stream
// sends resync for the rest.
var errReplayTooLong = errors.New("stream: replay longer than allowed")

// replay writes the events in (from, to] that user should have seen: those
// of the rooms they belonged to at the time of each event, and those for
// them alone (custom events to the user, their invitations), in log
// order. roomsAtTo is the membership at to; membership at from is found by
// walking the user's membership events back from it. Control events (a
// disconnect) are never replayed: the stream that replays was opened
// after them.
func (h *Hub) replay(ctx context.Context, w *writer, user string, roomsAtTo map[string]bool, from, to int64) error {
	at := make(map[string]bool, len(roomsAtTo))
	for r := range roomsAtTo {
		at[r] = true
	}
	src := h.source(from, to)
	about, err := src.subjectEvents(ctx, user, from, to)
	if err != nil {
		return err
	}
	var mevs, own []*entry
	for _, e := range about {
		switch {
		case event.Membership(e.Type):
			mevs = append(mevs, e)
		case event.ForUser(e.Event):
			own = append(own, e)
		}
	}
	candidates := make(map[string]bool, len(at))
	for r := range at {
		candidates[r] = true
	}
	for _, e := range mevs {
		candidates[e.Room] = true
	}
	undo(at, mevs)

	buf := make([]byte, 0, 64<<10)
	sent := 0
	defer func() { h.replayed.Add(int64(min(sent, h.opts.MaxReplay))) }()
	write := func(e *entry) error {
		if sent++; sent > h.opts.MaxReplay {
			return errReplayTooLong
		}
		if e.frame == nil {
			buf = AppendFrame(buf, Position{h.epoch, e.Seq}.String(), e.Type, e.Data)
		} else {
			buf = append(buf, e.frame...)
		}
		if len(buf) >= 32<<10 {
			if err := w.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		return nil
	}
	// The user's own events go out among the rooms' events, by position.
	ownBefore := func(seq int64) error {
		for len(own) > 0 && own[0].Seq < seq {
			if err := write(own[0]); err != nil {
				return err
			}
			own = own[1:]
		}
		return nil
	}
	err = src.roomEvents(ctx, candidates, from, to, func(e *entry) error {
		if err := ownBefore(e.Seq); err != nil {
			return err
		}
		mine := e.Subject == user
		switch {
		case mine && e.Type == event.MemberJoined:
			at[e.Room] = true
		case !at[e.Room]:
			return nil
		case e.Type == event.RoomDeleted && !mine:
			return nil // another member's
		}
		if mine && (e.Type == event.MemberLeft || e.Type == event.RoomDeleted) {
			delete(at, e.Room)
		}
		return write(e)
	})
	if err == nil {
		err = ownBefore(to + 1)
	}
	if len(buf) > 0 {
		if werr := w.write(buf); werr != nil {
			return werr
		}
	}
	return err
}

// undo walks membership events backwards, turning the membership after
// them into the membership before them.
func undo(at map[string]bool, mevs []*entry) {
	for i := len(mevs) - 1; i >= 0; i-- {
		if mevs[i].Type == event.MemberJoined {
			delete(at, mevs[i].Room)
		} else {
			at[mevs[i].Room] = true
		}
	}
}

// replaySource is where a replay reads: the in-memory tail when it covers
// the range, else the durable log. Neither's cost grows with the number
// of rooms beyond the events of the range: a user may be in tens of
// thousands.
type replaySource interface {
	subjectEvents(ctx context.Context, user string, after, upTo int64) ([]*entry, error)
	// roomEvents calls fn with the events of rooms in (after, upTo], in
	// log order.
	roomEvents(ctx context.Context, rooms map[string]bool, after, upTo int64, fn func(*entry) error) error
}

func (h *Hub) source(from, to int64) replaySource {
	if h.tail.covers(from, to) {
		return tailSource{h.tail}
	}
	return logSource{h.log}
}

type tailSource struct{ t *tail }

func (s tailSource) subjectEvents(_ context.Context, user string, after, upTo int64) ([]*entry, error) {
	return s.t.subjectEvents(user, after, upTo)
}

func (s tailSource) roomEvents(_ context.Context, rooms map[string]bool, after, upTo int64, fn func(*entry) error) error {
	evs, err := s.t.roomEvents(rooms, after, upTo)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

type logSource struct{ log Log }

// errTrimmedDuringReplay reports that retention deleted events the replay
// still needed; the stream ends and the client resumes (and gets resync).
var errTrimmedDuringReplay = errors.New("stream: log pruned during replay")

func (s logSource) subjectEvents(ctx context.Context, user string, after, upTo int64) ([]*entry, error) {
	var out []*entry
	for {
		evs, err := s.log.Range(ctx, event.Query{After: after, UpTo: upTo, Subject: user, Limit: replayPage})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			out = append(out, &entry{Event: e})
		}
		if len(evs) < replayPage {
			return out, nil
		}
		after = evs[len(evs)-1].Seq
	}
}

// maxNamedRooms is how many rooms a replay names to the durable log, which
// then reads each room's events by its index. A user in more rooms than
// that gets the whole range, read in pages and kept by room here: one
// statement per page, whatever the number of rooms, where naming them all
// would take a statement per few hundred rooms per page (a statement may
// name only so many) and a scan of the list per event from Redis.
const maxNamedRooms = 256

func (s logSource) roomEvents(ctx context.Context, rooms map[string]bool, after, upTo int64, fn func(*entry) error) error {
	var named []string
	if len(rooms) <= maxNamedRooms {
		named = make([]string, 0, len(rooms))
		for r := range rooms {
			named = append(named, r)
		}
	}
	start := after
	for {
		evs, err := s.log.Range(ctx, event.Query{After: after, UpTo: upTo, Rooms: named, Limit: replayPage})
		if err != nil {
			return err
		}
		if start < s.log.TrimmedThrough() {
			return errTrimmedDuringReplay
		}
		for _, e := range evs {
			if !rooms[e.Room] {
				continue
			}
			if err := fn(&entry{Event: e}); err != nil {
				return err
			}
		}
		if len(evs) < replayPage {
			return nil
		}
		after = evs[len(evs)-1].Seq
	}
}
