package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jmoiron/sqlx"
)

// Message is a stored chat message. Its id orders a room's history. A
// deleted message is a tombstone: no text, and DeletedAt set.
type Message struct {
	ID   int64  `db:"id" json:"id"`
	Room string `db:"room_id" json:"room"`
	// Author is the user who posted it; System for a system message.
	Author string `db:"author_id" json:"user,omitempty"`
	Name   string `db:"name" json:"name,omitempty"`
	// System marks a message the app's backend posted as itself.
	System    bool    `db:"system" json:"system,omitempty"`
	Text      string  `db:"text" json:"text,omitempty"`
	ClientID  *string `db:"client_id" json:"client_id,omitempty"`
	CreatedAt Millis  `db:"created_at" json:"created_at"`
	EditedAt  Millis  `db:"edited_at" json:"edited_at,omitempty"`
	DeletedAt Millis  `db:"deleted_at" json:"deleted_at,omitempty"`
}

// messageColumns read a Message from messages m joined with users u.
const messageColumns = `m.id, m.room_id, m.author_id, COALESCE(u.name, '') AS name, (m.author_id = '') AS system,
	m.text, m.client_id, m.created_at, COALESCE(m.edited_at, 0) AS edited_at, COALESCE(m.deleted_at, 0) AS deleted_at`

// messageFrom is the FROM clause of messageColumns.
const messageFrom = ` FROM messages m LEFT JOIN users u ON u.id = m.author_id`

// PostMessage stores a message from a member and announces it. When author
// already posted clientID in this room, it returns that message with
// created false and announces nothing, so a client may retry safely. The
// System may post in any room (the server API's system messages). A new
// message shows a DM again to a member who hid it.
func (s *Store) PostMessage(ctx context.Context, author User, roomID, text, clientID string) (msg Message, created bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		msg, created = Message{}, false
		// Ids order a room's history, so they must commit in order: where
		// writers run concurrently, the room's posts take turns, from the
		// room's lock to the commit. A retry's lookup comes after it, so
		// that two racing retries of one post find each other. The room
		// comes before the author's row, as in a deletion (the room, then
		// its members' rows): in the other order the two deadlock.
		room, member, err := t.lockedRoom(roomID, author.ID)
		if err != nil {
			return err
		}
		if !member && author.ID != System {
			return ErrNotMember
		}
		if err := t.ensureUser(author); err != nil {
			return err
		}
		name := author.Name
		if name == "" {
			// ensureUser kept the known name: answer and announce the message
			// as history and retries will show it.
			if name, err = t.userName(author.ID); err != nil {
				return fmt.Errorf("store: get author name: %w", err)
			}
		}
		if clientID != "" {
			err := t.get(&msg, `SELECT `+messageColumns+messageFrom+`
				 WHERE m.room_id = ? AND m.author_id = ? AND m.client_id = ?`, roomID, author.ID, clientID)
			if err == nil {
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("store: find message by client id: %w", err)
			}
		}
		msg = Message{Room: roomID, Author: author.ID, Name: name, System: author.ID == System, Text: text, CreatedAt: t.now}
		if clientID != "" {
			msg.ClientID = &clientID
		}
		msg.ID, err = t.insert(`INSERT INTO messages (room_id, author_id, text, client_id, created_at) VALUES (?, ?, ?, ?, ?)`,
			msg.Room, msg.Author, msg.Text, msg.ClientID, msg.CreatedAt)
		if err != nil {
			return fmt.Errorf("store: insert message: %w", err)
		}
		created = true
		if room.Kind == KindDM {
			if _, err := t.exec(`UPDATE members SET hidden = ? WHERE room_id = ? AND hidden = ?`, false, roomID, true); err != nil {
				return fmt.Errorf("store: show dm: %w", err)
			}
		}
		return t.emit(roomID, event.MessageCreated, "", msg)
	})
	return msg, created, err
}

// EditMessage replaces a message's text and announces it with
// message:updated. A user may edit only their own messages, in a room they
// are a member of, and within window of posting them (0: no limit); the
// app's backend may edit any. To a user who is not a member of the room,
// the message does not exist. changed is false, and nothing is announced,
// when the text is the same.
func (s *Store) EditMessage(ctx context.Context, actor Actor, roomID string, id int64, text string, window time.Duration) (msg Message, changed bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		msg, changed = Message{}, false
		var err error
		if _, msg, err = t.messageFor(actor, roomID, id); err != nil {
			return err
		}
		if msg.DeletedAt != 0 {
			return ErrMessageDeleted
		}
		if !actor.Admin {
			if msg.Author != actor.User {
				return ErrNotAuthor
			}
			if window > 0 && t.now.Time().Sub(msg.CreatedAt.Time()) > window {
				return ErrEditWindow
			}
		}
		if msg.Text == text {
			return nil
		}
		if _, err := t.exec(`UPDATE messages SET text = ?, edited_at = ? WHERE id = ?`, text, t.now, id); err != nil {
			return fmt.Errorf("store: edit message: %w", err)
		}
		msg.Text, msg.EditedAt, changed = text, t.now, true
		return t.emit(roomID, event.MessageUpdated, "", msg)
	})
	return msg, changed, err
}

// DeleteMessage turns a message into a tombstone (no text, DeletedAt set)
// and announces it with message:deleted. Its author or the room's owner
// may delete it, if a member of the room; the app's backend may delete
// any. To a user who is not a member of the room, the message does not
// exist. Deleting a tombstone returns it, with changed false, and
// announces nothing.
func (s *Store) DeleteMessage(ctx context.Context, actor Actor, roomID string, id int64) (msg Message, changed bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		msg, changed = Message{}, false
		room, m, err := t.messageFor(actor, roomID, id)
		if err != nil {
			return err
		}
		msg = m
		if msg.DeletedAt != 0 {
			return nil
		}
		if !actor.Admin && msg.Author != actor.User && !actor.owns(room) {
			return ErrNotAuthorOwner
		}
		if _, err := t.exec(`UPDATE messages SET text = '', edited_at = NULL, deleted_at = ? WHERE id = ?`, t.now, id); err != nil {
			return fmt.Errorf("store: delete message: %w", err)
		}
		msg.Text, msg.EditedAt, msg.DeletedAt, changed = "", 0, t.now, true
		return t.emit(roomID, event.MessageDeleted, "", msg)
	})
	return msg, changed, err
}

// messageFor loads a message of a room for a change by actor, with the
// room's posts held until the transaction ends, so that the change's event
// takes its place among them. A user who is not a member is told the
// message does not exist, whether the room does or not; the app's backend
// is told which.
func (t *Tx) messageFor(actor Actor, roomID string, id int64) (Room, Message, error) {
	room, member, err := t.lockedRoom(roomID, actor.User)
	switch {
	case errors.Is(err, ErrRoomNotFound) && !actor.Admin:
		return Room{}, Message{}, ErrMessageNotFound
	case err != nil:
		return Room{}, Message{}, err
	case !member && !actor.Admin:
		return Room{}, Message{}, ErrMessageNotFound
	}
	var msg Message
	err = t.get(&msg, `SELECT `+messageColumns+messageFrom+` WHERE m.id = ? AND m.room_id = ?`, id, roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, Message{}, ErrMessageNotFound
	}
	if err != nil {
		return Room{}, Message{}, fmt.Errorf("store: get message: %w", err)
	}
	return room, msg, nil
}

// lockError is a failure of lockRoom: the room gone, or an error of the
// database.
func lockError(err error) error {
	if errors.Is(err, ErrRoomNotFound) {
		return err
	}
	return fmt.Errorf("store: lock room: %w", err)
}

// messagesByID loads messages by id.
func (s *Store) messagesByID(ctx context.Context, ids []int64) (map[int64]Message, error) {
	out := make(map[int64]Message, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	query, args, err := sqlx.In(`SELECT `+messageColumns+messageFrom+` WHERE m.id IN (?)`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: build message query: %w", err)
	}
	var msgs []Message
	if err := s.r.SelectContext(ctx, &msgs, s.r.Rebind(query), args...); err != nil {
		return nil, fmt.Errorf("store: load messages: %w", unavailable(err))
	}
	for _, m := range msgs {
		out[m.ID] = m
	}
	return out, nil
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
// Edited messages have their current text; deleted ones are tombstones.
func (s *Store) Messages(ctx context.Context, user, roomID string, q HistoryQuery) ([]Message, bool, error) {
	if err := s.CheckMember(ctx, user, roomID); err != nil {
		return nil, false, err
	}
	query := `SELECT ` + messageColumns + messageFrom + ` WHERE m.room_id = ?`
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
