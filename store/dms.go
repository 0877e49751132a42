package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// dmKey names a pair of users, whichever of them asks: user ids have no
// spaces.
func dmKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + " " + b
}

// OpenDM returns the direct conversation between me and other, creating
// it on first use (created): a private room of the two of them, owned by
// no one. There is one per pair, also when both ask at once from several
// instances: the pair's key is unique, and the request that loses the race
// runs again and finds the winner's. Opening a DM that me had hidden shows
// it again.
func (s *Store) OpenDM(ctx context.Context, me User, other string) (room Room, created bool, err error) {
	if other == me.ID {
		return Room{}, false, ErrDMWithSelf
	}
	key := dmKey(me.ID, other)
	err = s.write(ctx, func(t *Tx) error {
		room, created = Room{}, false
		err := t.get(&room, `SELECT `+roomColumns+` FROM rooms r WHERE r.dm_key = ?`+t.q.keyShare(), key)
		if err == nil {
			_, err := t.exec(`UPDATE members SET hidden = ? WHERE room_id = ? AND user_id = ? AND hidden = ?`, false, room.ID, me.ID, true)
			if err != nil {
				return fmt.Errorf("store: show dm: %w", err)
			}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: find dm: %w", err)
		}
		// Only someone Herald knows: who has presented a token or been
		// added to a room.
		peer := User{ID: other}
		if err := t.get(&peer.Name, `SELECT name FROM users WHERE id = ? AND id <> ''`, other); errors.Is(err, sql.ErrNoRows) {
			return ErrUserNotFound
		} else if err != nil {
			return fmt.Errorf("store: find user: %w", err)
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
		if _, err := t.addMember(room.ID, peer, me.ID); err != nil {
			return err
		}
		created = true
		return nil
	})
	return room, created, err
}
