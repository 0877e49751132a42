package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/heraldchat/herald/internal/event"
)

// Message is a stored chat message. Its id orders a room's history.
type Message struct {
	ID        int64   `db:"id" json:"id"`
	Room      string  `db:"room_id" json:"room"`
	Author    string  `db:"author_id" json:"user"`
	Name      string  `db:"name" json:"name,omitempty"`
	Text      string  `db:"text" json:"text"`
	ClientID  *string `db:"client_id" json:"client_id,omitempty"`
	CreatedAt Millis  `db:"created_at" json:"created_at"`
}

// PostMessage stores a message from a member and announces it. When author
// already posted clientID in this room, it returns that message with
// created false and announces nothing, so a client may retry safely.
func (s *Store) PostMessage(ctx context.Context, author User, roomID, text, clientID string) (msg Message, created bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		msg, created = Message{}, false
		_, member, err := t.roomFor(roomID, author.ID)
		if err != nil {
			return err
		}
		if !member {
			return ErrNotMember
		}
		if err := t.ensureUser(author); err != nil {
			return err
		}
		name := author.Name
		if name == "" {
			// ensureUser kept the known name: answer and announce the message
			// as history and retries will show it.
			if err := t.get(&name, `SELECT name FROM users WHERE id = ?`, author.ID); err != nil {
				return fmt.Errorf("store: get author name: %w", err)
			}
		}
		// Ids order a room's history, so they must commit in order: where
		// writers run concurrently, the room's posts take turns, from here
		// to the commit. A retry's lookup comes after, so that two racing
		// retries of one post find each other.
		if err := t.q.lockRoom(roomID); err != nil {
			return fmt.Errorf("store: lock room: %w", err)
		}
		if clientID != "" {
			err := t.get(&msg, `
				SELECT m.id, m.room_id, m.author_id, COALESCE(u.name, '') AS name, m.text, m.client_id, m.created_at
				  FROM messages m LEFT JOIN users u ON u.id = m.author_id
				 WHERE m.room_id = ? AND m.author_id = ? AND m.client_id = ?`, roomID, author.ID, clientID)
			if err == nil {
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("store: find message by client id: %w", err)
			}
		}
		msg = Message{Room: roomID, Author: author.ID, Name: name, Text: text, CreatedAt: t.now}
		if clientID != "" {
			msg.ClientID = &clientID
		}
		msg.ID, err = t.insert(`INSERT INTO messages (room_id, author_id, text, client_id, created_at) VALUES (?, ?, ?, ?, ?)`,
			msg.Room, msg.Author, msg.Text, msg.ClientID, msg.CreatedAt)
		if err != nil {
			return fmt.Errorf("store: insert message: %w", err)
		}
		created = true
		return t.emit(roomID, event.MessageCreated, "", msg)
	})
	return msg, created, err
}

// HistoryQuery selects a page of a room's messages by id. Both bounds are
// exclusive; zero means unbounded. Without After, the page is the newest
// Limit messages before Before; with After, the oldest Limit after it.
type HistoryQuery struct {
	Before, After int64
	Limit         int
}

// Messages returns a page of history, oldest first, for a member of the room,
// and whether more messages lie beyond the page in the direction of paging.
func (s *Store) Messages(ctx context.Context, user, roomID string, q HistoryQuery) ([]Message, bool, error) {
	if err := s.CheckMember(ctx, user, roomID); err != nil {
		return nil, false, err
	}
	query := `SELECT m.id, m.room_id, m.author_id, COALESCE(u.name, '') AS name, m.text, m.client_id, m.created_at
	            FROM messages m LEFT JOIN users u ON u.id = m.author_id
	           WHERE m.room_id = ?`
	args := []any{roomID}
	if q.Before > 0 {
		query += ` AND m.id < ?`
		args = append(args, q.Before)
	}
	if q.After > 0 {
		query += ` AND m.id > ?`
		args = append(args, q.After)
	}
	forward := q.After > 0
	if forward {
		query += ` ORDER BY m.id ASC LIMIT ?`
	} else {
		query += ` ORDER BY m.id DESC LIMIT ?`
	}
	args = append(args, q.Limit+1)
	msgs := []Message{}
	if err := s.r.SelectContext(ctx, &msgs, s.r.Rebind(query), args...); err != nil {
		return nil, false, fmt.Errorf("store: history: %w", unavailable(err))
	}
	more := len(msgs) > q.Limit
	if more {
		msgs = msgs[:q.Limit]
	}
	if !forward {
		for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	return msgs, more, nil
}
