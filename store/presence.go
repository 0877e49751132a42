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

// UserRooms returns the ids of the rooms user belongs to.
func (s *Store) UserRooms(ctx context.Context, user string) ([]string, error) {
	out := []string{}
	if err := s.sel(ctx, &out, `SELECT room_id FROM members WHERE user_id = ?`, user); err != nil {
		return nil, fmt.Errorf("store: rooms of user: %w", err)
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
