package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// dmKey names a pair of users, whichever of them asks: user ids have no
// spaces.
func dmKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + " " + b
}

// dmPeer is the other user of a DM's key than me.
func dmPeer(key, me string) string {
	a, b, _ := strings.Cut(key, " ")
	if a == me {
		return b
	}
	return a
}

// OpenDM returns the direct conversation between me and other, creating
// it on first use (created): a private room of the two of them, owned by
// no one. There is one per pair, also when both ask at once from several
// instances: the pair's requests take turns (lockDM), so the later one
// finds the earlier one's, and the pair's key is unique besides. Opening a
// DM that me had hidden shows it again.
//
// With invite, other is invited rather than added (Invite): until they
// accept, by joining the DM or opening it themselves, me sees nothing of
// them, and learns nothing, not even whether they exist. Without it,
// other must be someone Herald knows (ErrUserNotFound) and is a member at
// once.
func (s *Store) OpenDM(ctx context.Context, me User, other string, invite bool) (room Room, created bool, err error) {
	if other == me.ID {
		return Room{}, false, ErrDMWithSelf
	}
	if other == System {
		return Room{}, false, ErrUserNotFound
	}
	key := dmKey(me.ID, other)
	err = s.write(ctx, func(t *Tx) error {
		room, created = Room{}, false
		if err := t.q.lockDM(key); err != nil {
			return fmt.Errorf("store: lock dm: %w", err)
		}
		err := t.get(&room, `SELECT `+roomColumns+` FROM rooms r WHERE r.dm_key = ?`+t.q.keyShare(), key)
		if err == nil {
			return t.reopenDM(room, me, other, invite)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: find dm: %w", err)
		}
		peer := User{ID: other}
		if !invite {
			// Only someone Herald knows: who has presented a token or been
			// added to a room.
			if peer.Name, err = t.userName(other); errors.Is(err, sql.ErrNoRows) {
				return ErrUserNotFound
			} else if err != nil {
				return fmt.Errorf("store: find user: %w", err)
			}
		}
		if err := t.ensureUser(me); err != nil {
			return err
		}
		room = Room{ID: newID("r_"), Kind: KindDM, Private: true, Owner: System, CreatedAt: t.now}
		_, err = t.exec(`INSERT INTO rooms (id, kind, name, topic, private, owner_id, created_at, dm_key) VALUES (?, ?, '', '', ?, ?, ?, ?)`,
			room.ID, room.Kind, room.Private, room.Owner, room.CreatedAt, key)
		if err != nil {
			return fmt.Errorf("store: insert dm: %w", err)
		}
		if _, err := t.addMember(room.ID, me, ""); err != nil {
			return err
		}
		created = true
		if invite {
			return t.invite(room, other, me.ID)
		}
		_, err = t.addMember(room.ID, peer, me.ID)
		return err
	})
	return room, created, err
}

// reopenDM opens an existing DM for me: shown again if me had hidden it,
// joined if me was invited to it (opening it accepts, even after
// declining), and, with invite, other invited if they are neither a
// member nor invited.
func (t *Tx) reopenDM(room Room, me User, other string, invite bool) error {
	// The room before me's row, as in a join: accepting by a join and by
	// opening the DM at once would otherwise deadlock.
	_, member, err := t.lockedRoom(room.ID, me.ID)
	if err != nil {
		return err
	}
	if member {
		_, err := t.exec(`UPDATE members SET hidden = ? WHERE room_id = ? AND user_id = ? AND hidden = ?`, false, room.ID, me.ID, true)
		if err != nil {
			return fmt.Errorf("store: show dm: %w", err)
		}
	} else {
		if err := t.ensureUser(me); err != nil {
			return err
		}
		if _, err := t.addMember(room.ID, me, ""); err != nil {
			return err
		}
	}
	if !invite {
		return nil
	}
	if _, member, err := t.roomFor(room.ID, other); err != nil || member {
		return err
	}
	return t.invite(room, other, me.ID)
}
