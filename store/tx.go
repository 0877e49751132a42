package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/heraldchat/herald/internal/event"
)

// ErrClosed is returned for writes submitted after Close.
var ErrClosed = errors.New("store: closed")

// Tx is one write request's view of its transaction. If the request fails,
// its changes are rolled back, and so are its events: an event is logged if
// and only if its change commits.
type Tx struct {
	q querier
	// cache remembers rooms and memberships across transactions. It is nil
	// when another process may change them too.
	cache  *memberCache
	now    Millis
	events []event.Event
	// caps are the store's MaxRoomsPerUser and MaxRoomMembers (0: none).
	caps caps
}

type caps struct{ roomsPerUser, roomMembers int }

// querier runs the statements of a write transaction. Queries are written
// with ? placeholders; each database binds them its own way.
type querier interface {
	exec(query string, args ...any) (sql.Result, error)
	get(dest any, query string, args ...any) error
	sel(dest any, query string, args ...any) error
	// insert runs an INSERT into a table keyed by an integer id and returns
	// the new row's id.
	insert(query string, args ...any) (int64, error)
	// logEvent writes e to the log within the transaction and returns its
	// position, or 0 when positions are given after commit.
	logEvent(e event.Event) (int64, error)
	// lockRoom makes the transaction the only writer of the room's messages
	// until it ends, so that their ids commit in order. It returns
	// ErrRoomNotFound when the room was deleted since the transaction read
	// it.
	lockRoom(id string) error
	// keyShare is the locking clause that roomFor's read of a room ends
	// with: where writers run concurrently, it holds the room's row until
	// the transaction ends, so that the room is not deleted under a change
	// that saw it, and a change that comes after a deletion finds no room.
	keyShare() string
	// lockRoomExclusive waits for every transaction that holds the room
	// (keyShare, lockRoom, or a row that refers to it) to end, and keeps
	// any other from taking it until this one ends: a deletion's lock.
	lockRoomExclusive(id string) error
	// lockDM makes the transaction the only one to open the DM of a pair
	// (its dmKey) until it ends, where writers run concurrently.
	lockDM(key string) error
	// lockInvitee makes the transaction the only one to invite user until
	// it ends, where writers run concurrently.
	lockInvitee(user string) error
	// lockMember holds user's membership of a room until the transaction
	// ends, where writers run concurrently: a leave or a removal, which
	// deletes it, then waits, and one that came first is seen. It reports
	// whether user is a member.
	lockMember(room, user string) (bool, error)
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) { return t.q.exec(query, args...) }
func (t *Tx) get(dest any, query string, args ...any) error      { return t.q.get(dest, query, args...) }
func (t *Tx) sel(dest any, query string, args ...any) error      { return t.q.sel(dest, query, args...) }
func (t *Tx) insert(query string, args ...any) (int64, error)    { return t.q.insert(query, args...) }

// write runs fn in a write transaction and returns once that transaction
// committed (nil) or fn's changes were rolled back (its error). When ctx
// carries a server request's id, the transaction records it first, and
// changes nothing if it was recorded before (WithRequest).
func (s *Store) write(ctx context.Context, fn func(*Tx) error) error {
	r := requestOf(ctx)
	err := s.db.write(ctx, func(t *Tx) error {
		t.caps = caps{roomsPerUser: s.opts.MaxRoomsPerUser, roomMembers: s.opts.MaxRoomMembers}
		if r != nil {
			if err := t.claim(r); err != nil {
				return err
			}
		}
		return fn(t)
	})
	switch {
	case err == nil:
		s.unwritable.Store(false)
	case errors.Is(err, ErrUnavailable):
		s.unwritable.Store(true)
	}
	return err
}

// emit appends an event to the log inside the current transaction.
func (t *Tx) emit(room, typ, subject string, payload any) error {
	data, err := event.Marshal(payload)
	if err != nil {
		return fmt.Errorf("store: encode %s event: %w", typ, err)
	}
	e := event.Event{Room: room, Type: typ, Subject: subject, Data: data, CreatedAt: int64(t.now)}
	if e.Seq, err = t.q.logEvent(e); err != nil {
		return fmt.Errorf("store: append %s event: %w", typ, err)
	}
	t.events = append(t.events, e)
	return nil
}

// ensureUser records a user the first time it is seen and keeps its display
// name current (an empty name never erases a known one).
func (t *Tx) ensureUser(u User) error {
	if name, ok := t.cache.name(u.ID); ok && (u.Name == "" || u.Name == name) {
		return nil // known, with this name
	}
	_, err := t.exec(`INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE excluded.name <> '' AND users.name <> excluded.name`,
		u.ID, u.Name, t.now)
	if err != nil {
		return fmt.Errorf("store: ensure user: %w", err)
	}
	if u.Name != "" {
		t.cache.setName(u.ID, u.Name)
	}
	return nil
}

// userName returns a known user's display name.
func (t *Tx) userName(user string) (string, error) {
	if name, ok := t.cache.name(user); ok {
		return name, nil
	}
	var name string
	if err := t.get(&name, `SELECT name FROM users WHERE id = ?`, user); err != nil {
		return "", err
	}
	t.cache.setName(user, name)
	return name, nil
}
