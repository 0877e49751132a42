package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// What the app's backend does through the server API. Every action goes
// through the log like a user's: ordered with everything else, durable,
// replayable, routed by the same rules.

// Provision describes a room the app's backend provisions.
type Provision struct {
	// ID, when set, is the room's id, chosen by the app so that it can
	// provision the same room again without creating another.
	ID    string
	Name  string
	Topic string
	// Private rooms are entered only by the members the app adds.
	Private bool
	// Owner, when set, is a user who owns the room and is its member;
	// without one, the room is the system's, and only the server API
	// manages it.
	Owner *User
	// Members are added if they are not members yet.
	Members []User
}

// ProvisionRoom creates a room for the app's backend (created), or, when
// a room with p.ID exists with the same settings, returns it: either way
// p's members are then members, each new one announced. A room with p.ID
// and other settings is ErrRoomConflict, and the id of a deleted room
// ErrRoomDeleted.
func (s *Store) ProvisionRoom(ctx context.Context, p Provision) (room Room, created bool, err error) {
	owner := System
	if p.Owner != nil {
		owner = p.Owner.ID
	}
	want := Room{ID: p.ID, Kind: KindRoom, Name: p.Name, Topic: p.Topic, Private: p.Private, Owner: owner}
	err = s.write(ctx, func(t *Tx) error {
		room, created = Room{}, false
		if p.ID != "" {
			// The room before any member's row, as in a join: adding a
			// member racing that user's own join would otherwise deadlock.
			have, _, err := t.lockedRoom(p.ID, System)
			switch {
			case err == nil:
				settings := have
				settings.CreatedAt = 0
				if settings != want {
					return ErrRoomConflict
				}
				room = have
			case errors.Is(err, ErrRoomNotFound):
				// Looked for after the room: a deletion that held the room
				// while its lock was waited for has committed, its record
				// with it. Looked for before, the record would be missed,
				// and the deleted id made a room again.
				var gone bool
				if err := t.get(&gone, `SELECT EXISTS (SELECT 1 FROM deleted_rooms WHERE id = ?)`, p.ID); err != nil {
					return fmt.Errorf("store: find deleted room: %w", err)
				}
				if gone {
					return ErrRoomDeleted
				}
			default:
				return err
			}
		}
		if room.ID == "" {
			// Where instances race to create it, the one that loses runs
			// again and finds it.
			room = want
			room.ID = cmp.Or(p.ID, newID("r_"))
			room.CreatedAt = t.now
			if p.Owner != nil {
				if err := t.ensureUser(*p.Owner); err != nil {
					return err
				}
			}
			_, err := t.exec(`INSERT INTO rooms (id, kind, name, topic, private, owner_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				room.ID, room.Kind, room.Name, room.Topic, room.Private, room.Owner, room.CreatedAt)
			if err != nil {
				return fmt.Errorf("store: insert room: %w", err)
			}
			created = true
			if p.Owner != nil {
				if _, err := t.addMember(room.ID, *p.Owner, System); err != nil {
					return err
				}
			}
		}
		for _, u := range p.Members {
			if _, member, err := t.roomFor(room.ID, u.ID); err != nil || member {
				if err != nil {
					return err
				}
				continue
			}
			if err := t.ensureUser(u); err != nil {
				return err
			}
			if _, err := t.addMember(room.ID, u, System); err != nil {
				return err
			}
		}
		return nil
	})
	return room, created, err
}

// CustomEvent is the payload of a custom event.
type CustomEvent struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	Room  string          `json:"room,omitempty"`
}

// Publish logs an app-defined event: for the members of room, or, with
// room empty, for every stream of user. Like every logged event, it is
// delivered by membership at its position and replayed to whoever missed
// it; one for a user reaches only that user.
func (s *Store) Publish(ctx context.Context, room, user, name string, data json.RawMessage) error {
	if data == nil {
		data = json.RawMessage("null")
	}
	return s.write(ctx, func(t *Tx) error {
		if room == "" {
			return t.emit("", event.Custom, user, CustomEvent{Event: name, Data: data})
		}
		if _, _, err := t.roomFor(room, System); err != nil {
			return err
		}
		return t.emit(room, event.Custom, "", CustomEvent{Event: name, Data: data, Room: room})
	})
}

// Disconnect closes every stream of user on every instance: a control
// event in the log, which each instance's hub applies as it reads it.
// With a cut-off (not zero), the user's tokens issued before it are
// refused from then on; a cut-off never moves back.
func (s *Store) Disconnect(ctx context.Context, user string, revokeBefore time.Time) error {
	var cut int64
	if !revokeBefore.IsZero() {
		cut = revokeBefore.UnixMilli()
	}
	return s.write(ctx, func(t *Tx) error {
		if err := t.ensureUser(User{ID: user}); err != nil {
			return err
		}
		if cut != 0 {
			_, err := t.exec(`UPDATE users SET revoked_before = ? WHERE id = ? AND (revoked_before IS NULL OR revoked_before < ?)`, cut, user, cut)
			if err != nil {
				return fmt.Errorf("store: revoke tokens: %w", err)
			}
		}
		return t.emit("", event.UserDisconnected, user, event.DisconnectData{User: user, RevokeBefore: cut})
	})
}

// Revocations returns every user's token cut-off, for an instance that
// starts.
func (s *Store) Revocations(ctx context.Context) (map[string]time.Time, error) {
	var rows []struct {
		ID     string `db:"id"`
		Before int64  `db:"revoked_before"`
	}
	if err := s.sel(ctx, &rows, `SELECT id, revoked_before FROM users WHERE revoked_before IS NOT NULL`); err != nil {
		return nil, fmt.Errorf("store: revocations: %w", err)
	}
	out := make(map[string]time.Time, len(rows))
	for _, r := range rows {
		out[r.ID] = time.UnixMilli(r.Before)
	}
	return out, nil
}

// RevokedBefore returns user's token cut-off (zero for none), as
// committed: a stream that opens reads it, so that a disconnect made on
// any instance holds at once.
func (s *Store) RevokedBefore(ctx context.Context, user string) (time.Time, error) {
	var before []sql.NullInt64
	if err := s.sel(ctx, &before, `SELECT revoked_before FROM users WHERE id = ?`, user); err != nil {
		return time.Time{}, fmt.Errorf("store: revocation: %w", err)
	}
	if len(before) == 0 || !before[0].Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(before[0].Int64), nil
}

// Server requests. A request of the server API may carry an id; the first
// write made with it (WithRequest) records the id in the same transaction
// as its change, so that the change and its record commit together or
// not at all. A second request with the id finds it and changes nothing
// (ErrRequestSeen); the API answers it with the first one's answer, which
// it records after the first one commits (SaveAnswer).

// Request is a server API request's id and a digest of what it asked.
type Request struct {
	ID          string
	Fingerprint string
}

type requestKey struct{}

// WithRequest makes the first write under ctx record r. Only one write
// may carry it: a second would find the record.
func WithRequest(ctx context.Context, r Request) context.Context {
	return context.WithValue(ctx, requestKey{}, &r)
}

// ErrRequestSeen is returned, and nothing changed, when a write carries a
// request id already recorded.
var ErrRequestSeen = &Error{ErrConflict, "request_seen", "a request with this id was made before"}

// requestOf returns the request id that ctx carries, if any.
func requestOf(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

// claim records the request r in t, or fails with ErrRequestSeen.
func (t *Tx) claim(r *Request) error {
	res, err := t.exec(`INSERT INTO server_requests (id, fingerprint, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.Fingerprint, t.now)
	if err != nil {
		return fmt.Errorf("store: record request: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return cmp.Or[error](err, ErrRequestSeen)
	}
	return nil
}

// Answer is the recorded answer of a server request.
type Answer struct {
	Fingerprint string `db:"fingerprint"`
	// Status is 0 while the answer is not recorded: the request is in
	// flight, or its instance stopped between its commit and recording it.
	Status int    `db:"status"`
	Body   []byte `db:"body"`
}

// SaveAnswer records the answer of the request id, whose change committed.
func (s *Store) SaveAnswer(ctx context.Context, id string, status int, body []byte) error {
	ctx = context.WithValue(ctx, requestKey{}, (*Request)(nil))
	return s.write(ctx, func(t *Tx) error {
		if _, err := t.exec(`UPDATE server_requests SET status = ?, body = ? WHERE id = ?`, status, body, id); err != nil {
			return fmt.Errorf("store: record answer: %w", err)
		}
		return nil
	})
}

// FindAnswer returns what is recorded of the request id.
func (s *Store) FindAnswer(ctx context.Context, id string) (Answer, error) {
	var a []Answer
	if err := s.sel(ctx, &a, `SELECT fingerprint, status, COALESCE(body, ?) AS body FROM server_requests WHERE id = ?`, []byte{}, id); err != nil {
		return Answer{}, fmt.Errorf("store: find request: %w", err)
	}
	if len(a) == 0 {
		return Answer{}, ErrNotFound
	}
	return a[0], nil
}
