package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jmoiron/sqlx"
)

// Receipt is a member's read position in a room.
type Receipt struct {
	User      string `db:"user_id" json:"user"`
	MessageID int64  `db:"message_id" json:"message_id"`
	UpdatedAt Millis `db:"updated_at" json:"updated_at"`
}

// ReceiptEvent is the payload of receipt:updated.
type ReceiptEvent struct {
	Room      string `json:"room"`
	User      string `json:"user"`
	MessageID int64  `json:"message_id"`
}

// MarkRead moves user's read position in a room forward to messageID, which
// must be a message of that room. An older position is accepted and
// ignored: updated reports whether the position moved (and was announced).
func (s *Store) MarkRead(ctx context.Context, user, roomID string, messageID int64) (updated bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		updated = false
		_, member, err := t.roomFor(roomID, user)
		if err != nil {
			return err
		}
		if member {
			// Held, not only read: a receipt racing its user's leave on
			// another instance lands before the member:left or is refused.
			// The membership's own row, not the room's, so that receipts
			// do not take turns with the room's posts.
			if member, err = t.q.lockMember(roomID, user); err != nil {
				return fmt.Errorf("store: lock membership: %w", err)
			}
		}
		if !member {
			return ErrNotMember
		}
		var exists bool
		if err := t.get(&exists, `SELECT EXISTS (SELECT 1 FROM messages WHERE id = ? AND room_id = ?)`, messageID, roomID); err != nil {
			return fmt.Errorf("store: find message: %w", err)
		}
		if !exists {
			return ErrMessageNotFound
		}
		res, err := t.exec(`INSERT INTO reads (room_id, user_id, message_id, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (room_id, user_id) DO UPDATE SET message_id = excluded.message_id, updated_at = excluded.updated_at
			WHERE excluded.message_id > reads.message_id`, roomID, user, messageID, t.now)
		if err != nil {
			return fmt.Errorf("store: update read position: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		updated = true
		return t.emit(roomID, event.ReceiptUpdated, "", ReceiptEvent{Room: roomID, User: user, MessageID: messageID})
	})
	return updated, err
}

// Receipts returns every member's read position in a room, for a member.
func (s *Store) Receipts(ctx context.Context, user, roomID string) ([]Receipt, error) {
	if err := s.CheckMember(ctx, user, roomID); err != nil {
		return nil, err
	}
	out := []Receipt{}
	err := s.sel(ctx, &out, `
		SELECT mb.user_id, COALESCE(rd.message_id, 0) AS message_id, COALESCE(rd.updated_at, 0) AS updated_at
		  FROM members mb LEFT JOIN reads rd ON rd.room_id = mb.room_id AND rd.user_id = mb.user_id
		 WHERE mb.room_id = ?
		 ORDER BY mb.joined_at, mb.user_id`, roomID)
	if err != nil {
		return nil, fmt.Errorf("store: receipts: %w", err)
	}
	return out, nil
}

// PresenceRooms returns the rooms user belongs to, split by size: small
// ones have at most limit members, large ones more. Presence changes are
// broadcast to the members of small rooms only, and a user's presence
// changes as often as their streams open, so the answer must not cost the
// size of a room: each room is sized by looking for its member number
// limit+1 in the primary key (room_id, user_id), which reads at most
// limit+1 entries of the index however large the room is.
func (s *Store) PresenceRooms(ctx context.Context, user string, limit int) (small, large []string, err error) {
	var rows []struct {
		Room  string `db:"room_id"`
		Large bool   `db:"large"`
	}
	err = s.sel(ctx, &rows, `
		SELECT m.room_id,
		       (SELECT x.user_id FROM members x WHERE x.room_id = m.room_id LIMIT 1 OFFSET ?) IS NOT NULL AS large
		  FROM members m WHERE m.user_id = ?`, limit, user)
	if err != nil {
		return nil, nil, fmt.Errorf("store: presence rooms of user: %w", err)
	}
	for _, r := range rows {
		if r.Large {
			large = append(large, r.Room)
		} else {
			small = append(small, r.Room)
		}
	}
	return small, large, nil
}

// LargeRooms returns those of rooms that have more than limit members,
// reading at most limit+1 entries of the index for each. A room that does
// not exist (any more) has no members: it is not large. Each room is one
// prepared probe: an IN list of many rooms is a new statement to prepare
// every time, which cost SQLite more than the probes.
func (s *Store) LargeRooms(ctx context.Context, rooms []string, limit int) ([]string, error) {
	out := []string{}
	for _, r := range rooms {
		var beyond []string
		if err := s.sel(ctx, &beyond, `SELECT user_id FROM members WHERE room_id = ? LIMIT 1 OFFSET ?`, r, limit); err != nil {
			return nil, fmt.Errorf("store: size of room: %w", err)
		}
		if len(beyond) > 0 {
			out = append(out, r)
		}
	}
	return out, nil
}

// RoomMembers returns the ids of a room's members, for counting those who
// are online; it reads the whole room, so its callers bound how often.
func (s *Store) RoomMembers(ctx context.Context, room string) ([]string, error) {
	out := []string{}
	if err := s.sel(ctx, &out, `SELECT user_id FROM members WHERE room_id = ?`, room); err != nil {
		return nil, fmt.Errorf("store: members of room: %w", err)
	}
	return out, nil
}

// SaveLastSeen records when user was last online, to the millisecond.
func (s *Store) SaveLastSeen(ctx context.Context, user string, at time.Time) error {
	return s.write(ctx, func(t *Tx) error {
		_, err := t.exec(`UPDATE users SET last_seen = ? WHERE id = ?`, Millis(at.UnixMilli()), user)
		if err != nil {
			return fmt.Errorf("store: save last seen: %w", err)
		}
		return nil
	})
}

// LastSeen returns the recorded last-seen times of users (absent: never).
func (s *Store) LastSeen(ctx context.Context, users []string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	if len(users) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In(`SELECT id, last_seen FROM users WHERE id IN (?) AND last_seen IS NOT NULL`, users)
	if err != nil {
		return nil, fmt.Errorf("store: build last seen query: %w", err)
	}
	rows, err := s.r.QueryxContext(ctx, s.r.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("store: last seen: %w", unavailable(err))
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var at sql.NullInt64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("store: scan last seen: %w", err)
		}
		out[id] = Millis(at.Int64).Time()
	}
	return out, rows.Err()
}
