package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/heraldchat/herald/internal/event"
)

// Invitations. Being added to a room shows a user's name, presence and
// last-seen time to its members, so a room's owner asks first: an
// invitation goes to the user alone, who accepts it by joining or declines
// it. Until the user joins, the room's members learn nothing about them,
// not even whether they exist; the owner learns only what they typed.

// Invitation is an open invitation, as its invitee sees it; it is also
// the payload of invitation:created.
type Invitation struct {
	Room    string `db:"room_id" json:"room"`
	Kind    string `db:"kind" json:"kind"`
	Name    string `db:"name" json:"name"`
	Private bool   `db:"private" json:"private"`
	// By is who invited, and ByName their display name: they chose to
	// show themselves to the invitee. Empty for the app's backend.
	By        string `db:"invited_by" json:"by,omitempty"`
	ByName    string `db:"by_name" json:"by_name,omitempty"`
	CreatedAt Millis `db:"created_at" json:"created_at"`
}

// InvitationEnd is the payload of invitation:deleted: the invitation is
// no longer open, for Reason.
type InvitationEnd struct {
	Room   string `json:"room"`
	Reason string `json:"reason"`
}

// Why an invitation ends.
const (
	// InvitationJoined: the invitee joined the room, or was added to it.
	InvitationJoined = "joined"
	// InvitationDeclined: the invitee declined it.
	InvitationDeclined = "declined"
	// InvitationWithdrawn: the room's owner (or the app's backend) took
	// it back.
	InvitationWithdrawn = "withdrawn"
	// InvitationRoomDeleted: the room was closed.
	InvitationRoomDeleted = "room_deleted"
)

// Invite asks user to join a room, as its owner or the app's backend;
// the user accepts by joining (Join) or declines (Decline). member
// reports that user is a member already, and nothing changed. Asking
// again while an invitation is open, or after it was declined, changes
// nothing and tells the user nothing: the inviter cannot tell a declined
// invitation, or a user who does not exist yet, from one that waits.
func (s *Store) Invite(ctx context.Context, actor Actor, roomID, user string) (member bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		member = false
		room, _, err := t.lockedRoom(roomID, actor.User)
		if err != nil {
			return err
		}
		if room.Kind == KindDM {
			return ErrDMRoom
		}
		if !actor.owns(room) {
			return ErrNotOwner
		}
		if _, member, err = t.roomFor(roomID, user); err != nil || member {
			return err
		}
		return t.invite(room, user, actor.by())
	})
	return member, err
}

// invite records an invitation of user to room by by, and tells user,
// unless one is recorded already. A room has at most as many open and
// declined invitations as it may have members (ErrTooManyInvites). A
// user with as many open invitations as they may have rooms gets no more
// until they answer some: the invitation is recorded as declined, and
// the user is not told. It then looks to the inviter like any other,
// withdrawn the same way, so that they learn nothing of the user.
func (t *Tx) invite(room Room, user, by string) error {
	var have bool
	if err := t.get(&have, `SELECT EXISTS (SELECT 1 FROM invitations WHERE room_id = ? AND user_id = ?)`, room.ID, user); err != nil {
		return fmt.Errorf("store: find invitation: %w", err)
	}
	if have {
		return nil
	}
	if t.caps.roomMembers > 0 {
		// The room's invitations take turns, so that the count holds.
		if err := t.q.lockRoom(room.ID); err != nil {
			return err
		}
		var n int
		if err := t.get(&n, `SELECT COUNT(*) FROM invitations WHERE room_id = ?`, room.ID); err != nil {
			return fmt.Errorf("store: count invitations: %w", err)
		}
		if n >= t.caps.roomMembers {
			return ErrTooManyInvites
		}
	}
	var declined sql.NullInt64
	if t.caps.roomsPerUser > 0 {
		// The user's invitations take turns, whatever their rooms, so
		// that the count holds. After the room's lock, as every user's
		// lock comes after a room's.
		if err := t.q.lockInvitee(user); err != nil {
			return fmt.Errorf("store: lock invitee: %w", err)
		}
		var n int
		if err := t.get(&n, `SELECT COUNT(*) FROM invitations WHERE user_id = ? AND declined_at IS NULL`, user); err != nil {
			return fmt.Errorf("store: count invitations: %w", err)
		}
		if n >= t.caps.roomsPerUser {
			declined = sql.NullInt64{Int64: int64(t.now), Valid: true}
		}
	}
	res, err := t.exec(`INSERT INTO invitations (room_id, user_id, invited_by, created_at, declined_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		room.ID, user, by, t.now, declined)
	if err != nil {
		return fmt.Errorf("store: insert invitation: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 || declined.Valid {
		return err // another instance's came first, or the user is not told
	}
	inv := Invitation{Room: room.ID, Kind: room.Kind, Name: room.Name, Private: room.Private, By: by, CreatedAt: t.now}
	if by != System {
		if inv.ByName, err = t.userName(by); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: find inviter: %w", err)
		}
	}
	return t.emit("", event.InvitationCreated, user, inv)
}

// invited reports whether user has an open invitation to a room.
func (t *Tx) invited(roomID, user string) (bool, error) {
	var open bool
	err := t.get(&open, `SELECT EXISTS (SELECT 1 FROM invitations WHERE room_id = ? AND user_id = ? AND declined_at IS NULL)`, roomID, user)
	if err != nil {
		return false, fmt.Errorf("store: find invitation: %w", err)
	}
	return open, nil
}

// endInvitation deletes user's invitation to a room, open or declined
// (found), and tells user that an open one ended, for reason.
func (t *Tx) endInvitation(roomID, user, reason string) (found bool, err error) {
	var declined []sql.NullInt64
	if err := t.sel(&declined, `DELETE FROM invitations WHERE room_id = ? AND user_id = ? RETURNING declined_at`, roomID, user); err != nil {
		return false, fmt.Errorf("store: delete invitation: %w", err)
	}
	if len(declined) == 0 {
		return false, nil
	}
	if declined[0].Valid {
		return true, nil // the user was told when they declined it
	}
	return true, t.emit("", event.InvitationDeleted, user, InvitationEnd{Room: roomID, Reason: reason})
}

// Decline declines user's open invitation to a room (ErrNoInvitation when
// there is none). The invitation stays, declined: asking again changes
// nothing, and whoever invited cannot tell it from an open one.
func (s *Store) Decline(ctx context.Context, user, roomID string) error {
	return s.write(ctx, func(t *Tx) error {
		res, err := t.exec(`UPDATE invitations SET declined_at = ? WHERE room_id = ? AND user_id = ? AND declined_at IS NULL`, t.now, roomID, user)
		if err != nil {
			return fmt.Errorf("store: decline invitation: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return cmp.Or(err, error(ErrNoInvitation))
		}
		return t.emit("", event.InvitationDeleted, user, InvitationEnd{Room: roomID, Reason: InvitationDeclined})
	})
}

// Invitations lists user's open invitations, the newest first.
func (s *Store) Invitations(ctx context.Context, user string) ([]Invitation, error) {
	out := []Invitation{}
	err := s.sel(ctx, &out, `
		SELECT i.room_id, r.kind, r.name, r.private, i.invited_by, COALESCE(u.name, '') AS by_name, i.created_at
		  FROM invitations i
		  JOIN rooms r ON r.id = i.room_id
		  LEFT JOIN users u ON u.id = i.invited_by AND i.invited_by <> ''
		 WHERE i.user_id = ? AND i.declined_at IS NULL
		 ORDER BY i.created_at DESC, i.room_id`, user)
	if err != nil {
		return nil, fmt.Errorf("store: list invitations: %w", err)
	}
	return out, nil
}
