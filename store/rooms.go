package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/heraldchat/herald/internal/event"
)

// User is anyone who has presented a valid token or been added to a room.
type User struct {
	ID   string `db:"id" json:"id"`
	Name string `db:"name" json:"name,omitempty"`
}

// Room is a conversation. Public rooms can be joined by anyone; private ones
// only by users their owner adds.
type Room struct {
	ID        string `db:"id" json:"id"`
	Name      string `db:"name" json:"name"`
	Private   bool   `db:"private" json:"private"`
	Owner     string `db:"owner_id" json:"owner"`
	CreatedAt Millis `db:"created_at" json:"created_at"`
}

// RoomSummary is a room as listed for one of its members.
type RoomSummary struct {
	Room
	// Unread counts other users' messages after the member's read position.
	Unread int64 `db:"unread" json:"unread"`
	// LastRead is the member's read position (0 when nothing was read).
	LastRead int64 `db:"last_read" json:"last_read"`
}

// Member is a user's membership of a room.
type Member struct {
	User     string `db:"user_id" json:"user"`
	Name     string `db:"name" json:"name,omitempty"`
	Owner    bool   `db:"owner" json:"owner"`
	JoinedAt Millis `db:"joined_at" json:"joined_at"`
}

// MemberEvent is the payload of member:joined and member:left.
type MemberEvent struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Name   string `json:"name,omitempty"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"` // member:left: "left" or "removed"
}

// CreateRoom creates a room whose owner is also its first member.
func (s *Store) CreateRoom(ctx context.Context, owner User, name string, private bool) (Room, error) {
	room := Room{ID: newID("r_"), Name: name, Private: private, Owner: owner.ID}
	err := s.write(ctx, func(t *Tx) error {
		room.CreatedAt = t.now
		if err := t.ensureUser(owner); err != nil {
			return err
		}
		_, err := t.exec(`INSERT INTO rooms (id, name, private, owner_id, created_at) VALUES (?, ?, ?, ?, ?)`,
			room.ID, room.Name, room.Private, room.Owner, room.CreatedAt)
		if err != nil {
			return fmt.Errorf("store: insert room: %w", err)
		}
		_, err = t.addMember(room.ID, owner, "")
		return err
	})
	return room, err
}

// Rooms lists the rooms user belongs to, oldest membership first, with
// unread counts.
func (s *Store) Rooms(ctx context.Context, user string) ([]RoomSummary, error) {
	rooms := []RoomSummary{}
	err := s.sel(ctx, &rooms, `
		SELECT r.id, r.name, r.private, r.owner_id, r.created_at,
		       COALESCE(rd.message_id, 0) AS last_read,
		       (SELECT COUNT(*) FROM messages m
		         WHERE m.room_id = r.id AND m.id > COALESCE(rd.message_id, 0) AND m.author_id <> mb.user_id) AS unread
		  FROM members mb
		  JOIN rooms r ON r.id = mb.room_id
		  LEFT JOIN reads rd ON rd.room_id = mb.room_id AND rd.user_id = mb.user_id
		 WHERE mb.user_id = ?
		 ORDER BY mb.joined_at, r.id`, user)
	if err != nil {
		return nil, fmt.Errorf("store: list rooms: %w", err)
	}
	return rooms, nil
}

// Join makes u a member of a public room, or of a private room u owns.
// Joining a room twice is not an error; joined reports whether u was added.
func (s *Store) Join(ctx context.Context, u User, roomID string) (joined bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		joined = false
		room, member, err := t.roomFor(roomID, u.ID)
		if err != nil || member {
			return err
		}
		if room.Private && room.Owner != u.ID {
			return ErrPrivateRoom
		}
		if err := t.ensureUser(u); err != nil {
			return err
		}
		joined, err = t.addMember(roomID, u, "")
		return err
	})
	return joined, err
}

// Leave ends user's membership of a room.
func (s *Store) Leave(ctx context.Context, user, roomID string) error {
	return s.write(ctx, func(t *Tx) error {
		_, member, err := t.roomFor(roomID, user)
		if err != nil {
			return err
		}
		if !member {
			return ErrNotMember
		}
		if removed, err := t.removeMember(roomID, user, "left", ""); err != nil || !removed {
			return cmp.Or[error](err, ErrNotMember)
		}
		return nil
	})
}

// AddMember lets a room's owner add u. added reports whether u was not
// already a member.
func (s *Store) AddMember(ctx context.Context, actor string, roomID string, u User) (added bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		added = false
		room, _, err := t.roomFor(roomID, actor)
		if err != nil {
			return err
		}
		if room.Owner != actor {
			return ErrNotOwner
		}
		_, member, err := t.roomFor(roomID, u.ID)
		if err != nil || member {
			return err
		}
		if err := t.ensureUser(u); err != nil {
			return err
		}
		added, err = t.addMember(roomID, u, actor)
		return err
	})
	return added, err
}

// RemoveMember lets a room's owner remove a member other than themselves.
func (s *Store) RemoveMember(ctx context.Context, actor, roomID, user string) error {
	return s.write(ctx, func(t *Tx) error {
		room, _, err := t.roomFor(roomID, actor)
		if err != nil {
			return err
		}
		if room.Owner != actor {
			return ErrNotOwner
		}
		if user == actor {
			return ErrOwnerRemoval
		}
		_, member, err := t.roomFor(roomID, user)
		if err != nil {
			return err
		}
		if !member {
			return ErrMemberNotFound
		}
		if removed, err := t.removeMember(roomID, user, "removed", actor); err != nil || !removed {
			return cmp.Or[error](err, ErrMemberNotFound)
		}
		return nil
	})
}

// Members lists a room's members for one of them.
func (s *Store) Members(ctx context.Context, user, roomID string) ([]Member, error) {
	if err := s.CheckMember(ctx, user, roomID); err != nil {
		return nil, err
	}
	members := []Member{}
	err := s.sel(ctx, &members, `
		SELECT mb.user_id, COALESCE(u.name, '') AS name, mb.joined_at, (r.owner_id = mb.user_id) AS owner
		  FROM members mb
		  JOIN rooms r ON r.id = mb.room_id
		  LEFT JOIN users u ON u.id = mb.user_id
		 WHERE mb.room_id = ?
		 ORDER BY mb.joined_at, mb.user_id`, roomID)
	if err != nil {
		return nil, fmt.Errorf("store: list members: %w", err)
	}
	return members, nil
}

// SharesRoom reports whether a and b are both members of at least one room.
func (s *Store) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var ok bool
	err := s.get(ctx, &ok, `SELECT EXISTS (
		SELECT 1 FROM members x JOIN members y ON x.room_id = y.room_id WHERE x.user_id = ? AND y.user_id = ?)`, a, b)
	if err != nil {
		return false, fmt.Errorf("store: shared rooms: %w", err)
	}
	return ok, nil
}

// CheckMember returns ErrRoomNotFound or ErrNotMember unless user is a member.
func (s *Store) CheckMember(ctx context.Context, user, roomID string) error {
	var member []bool
	err := s.sel(ctx, &member, `
		SELECT EXISTS (SELECT 1 FROM members WHERE room_id = r.id AND user_id = ?) FROM rooms r WHERE r.id = ?`, user, roomID)
	if err != nil {
		return fmt.Errorf("store: check membership: %w", err)
	}
	if len(member) == 0 {
		return ErrRoomNotFound
	}
	if !member[0] {
		return ErrNotMember
	}
	return nil
}

// roomFor loads a room and whether user is a member of it.
func (t *Tx) roomFor(roomID, user string) (Room, bool, error) {
	if room, member, ok := t.cache.lookup(roomID, user); ok {
		return room, member, nil
	}
	var row struct {
		Room
		Member bool `db:"member"`
	}
	err := t.get(&row, `
		SELECT id, name, private, owner_id, created_at,
		       EXISTS (SELECT 1 FROM members WHERE room_id = rooms.id AND user_id = ?) AS member
		  FROM rooms WHERE id = ?`, user, roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, false, ErrRoomNotFound
	}
	if err != nil {
		return Room{}, false, fmt.Errorf("store: get room: %w", err)
	}
	t.cache.read(row.Room, user, row.Member)
	return row.Room, row.Member, nil
}

// addMember adds u to a room and announces it. added is false, and
// nothing is announced, when u already was a member: where instances write
// concurrently, another may have added u since roomFor looked.
func (t *Tx) addMember(roomID string, u User, by string) (added bool, err error) {
	res, err := t.exec(`INSERT INTO members (room_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, roomID, u.ID, t.now)
	if err != nil {
		return false, fmt.Errorf("store: insert member: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	t.cache.write(roomID, u.ID, true)
	return true, t.emit(roomID, event.MemberJoined, u.ID, MemberEvent{Room: roomID, User: u.ID, Name: u.Name, By: by})
}

// removeMember ends a membership and announces it; removed is false, and
// nothing is announced, when there was none (another instance's removal
// may have come first).
func (t *Tx) removeMember(roomID, user, reason, by string) (removed bool, err error) {
	res, err := t.exec(`DELETE FROM members WHERE room_id = ? AND user_id = ?`, roomID, user)
	if err != nil {
		return false, fmt.Errorf("store: delete member: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	t.cache.write(roomID, user, false)
	return true, t.emit(roomID, event.MemberLeft, user, MemberEvent{Room: roomID, User: user, Reason: reason, By: by})
}
