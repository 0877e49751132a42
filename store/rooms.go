package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldchat/herald/internal/event"
)

// User is anyone who has presented a valid token or been added to a room.
type User struct {
	ID   string `db:"id" json:"id"`
	Name string `db:"name" json:"name,omitempty"`
}

// Kinds of room.
const (
	KindRoom = "room"
	// KindDM is a direct conversation: a private room of exactly two
	// members, one per pair of users, that no one owns.
	KindDM = "dm"
)

// System is the user id of the system: the author of the server API's
// system messages and the owner of the rooms it provisions without an
// owner, and of DMs. No token can name it.
const System = ""

// Room is a conversation. Public rooms can be joined by anyone; private ones
// only by users their owner invites (or, as the server allows, adds).
type Room struct {
	ID      string `db:"id" json:"id"`
	Kind    string `db:"kind" json:"kind"`
	Name    string `db:"name" json:"name"`
	Topic   string `db:"topic" json:"topic"`
	Private bool   `db:"private" json:"private"`
	// Owner is "" (the system) for a DM, for a room the server API
	// provisioned without an owner, and for a room its last member left:
	// then no user has an owner's rights. An owner who leaves hands the
	// room to the member who has been in it longest.
	Owner     string `db:"owner_id" json:"owner,omitempty"`
	CreatedAt Millis `db:"created_at" json:"created_at"`
}

// roomColumns are the columns of Room, of rooms r.
const roomColumns = `r.id, r.kind, r.name, r.topic, r.private, r.owner_id, r.created_at`

// RoomSummary is a room as listed for one of its members.
type RoomSummary struct {
	Room
	// Unread counts other users' messages, not deleted, after the
	// member's read position.
	Unread int64 `json:"unread"`
	// LastRead is the member's read position (0 when nothing was read).
	LastRead int64 `json:"last_read"`
	// LastMessage is the newest message that is not deleted, if any.
	LastMessage *Message `json:"last_message"`
	// LastActivity is when the room last changed for the member: its
	// newest message, or their joining when that came later.
	LastActivity Millis `json:"last_activity_at"`
	// Peer is the other member of a DM.
	Peer *User `json:"peer,omitempty"`
}

// RoomDetails is a room as GET /v1/rooms/{room} shows it.
type RoomDetails struct {
	RoomSummary
	MemberCount int64 `json:"member_count"`
	// Member says whether the caller is a member. Anyone may see a public
	// room's details; the fields about the caller's reading are then 0.
	Member bool `json:"member"`
}

// RoomUpdate is the payload of room:updated: the room's settings as they
// now are.
type RoomUpdate struct {
	Room    string `json:"room"`
	Name    string `json:"name"`
	Topic   string `json:"topic"`
	Private bool   `json:"private"`
	Owner   string `json:"owner,omitempty"`
	By      string `json:"by,omitempty"`
}

// RoomDeletion is the payload of room:deleted.
type RoomDeletion struct {
	Room string `json:"room"`
	By   string `json:"by,omitempty"`
}

// Actor is who asks for a change. A user is held to the room's rules; the
// app's backend, through the server API (Admin), may do what a room's
// owner may, and its changes are announced as by no one (the system).
type Actor struct {
	User  string
	Admin bool
}

// UserActor is a user acting for themselves.
func UserActor(id string) Actor { return Actor{User: id} }

// Admin is the app's backend.
var Admin = Actor{Admin: true}

// by is who a change is announced as by.
func (a Actor) by() string {
	if a.Admin {
		return System
	}
	return a.User
}

// owns reports whether a may do what the room's owner may.
func (a Actor) owns(room Room) bool {
	return a.Admin || (room.Owner != System && room.Owner == a.User)
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
	room := Room{ID: newID("r_"), Kind: KindRoom, Name: name, Private: private, Owner: owner.ID}
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

// Rooms lists the rooms user belongs to, the most recently active first,
// each with its unread count and newest message, so that a conversation
// list takes one call. A DM the user hid by leaving it is left out until
// its next message.
func (s *Store) Rooms(ctx context.Context, user string) ([]RoomSummary, error) {
	return s.summaries(ctx, user, "")
}

// summaryRow is a row of the rooms list's query.
type summaryRow struct {
	Room
	Unread        int64  `db:"unread"`
	LastRead      int64  `db:"last_read"`
	LastMessageID int64  `db:"last_message_id"`
	JoinedAt      Millis `db:"joined_at"`
	DMKey         string `db:"dm_key"`
	PeerID        string `db:"peer_id"`
	PeerName      string `db:"peer_name"`
}

// summaries lists user's rooms, or, with a room id, that room alone,
// hidden or not.
func (s *Store) summaries(ctx context.Context, user, roomID string) ([]RoomSummary, error) {
	query := `
		SELECT ` + roomColumns + `,
		       COALESCE(rd.message_id, 0) AS last_read,
		       (SELECT COUNT(*) FROM messages m
		         WHERE m.room_id = r.id AND m.id > COALESCE(rd.message_id, 0) AND m.author_id <> mb.user_id
		           AND m.deleted_at IS NULL) AS unread,
		       COALESCE((SELECT m.id FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NULL
		                  ORDER BY m.id DESC LIMIT 1), 0) AS last_message_id,
		       mb.joined_at, COALESCE(r.dm_key, '') AS dm_key,
		       COALESCE(p.user_id, '') AS peer_id, COALESCE(pu.name, '') AS peer_name
		  FROM members mb
		  JOIN rooms r ON r.id = mb.room_id
		  LEFT JOIN reads rd ON rd.room_id = mb.room_id AND rd.user_id = mb.user_id
		  LEFT JOIN members p ON r.kind = 'dm' AND p.room_id = r.id AND p.user_id <> mb.user_id
		  LEFT JOIN users pu ON pu.id = p.user_id
		 WHERE mb.user_id = ?`
	args := []any{user}
	if roomID != "" {
		query += ` AND r.id = ?`
		args = append(args, roomID)
	} else {
		query += ` AND mb.hidden = ?`
		args = append(args, false)
	}
	var rows []summaryRow
	if err := s.sel(ctx, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("store: list rooms: %w", err)
	}
	var ids []int64
	for _, r := range rows {
		if r.LastMessageID > 0 {
			ids = append(ids, r.LastMessageID)
		}
	}
	last, err := s.messagesByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]RoomSummary, len(rows))
	lastID := make(map[string]int64, len(rows))
	for i, r := range rows {
		lastID[r.ID] = r.LastMessageID
		out[i] = RoomSummary{Room: r.Room, Unread: r.Unread, LastRead: r.LastRead, LastActivity: r.JoinedAt}
		if m, ok := last[r.LastMessageID]; ok {
			out[i].LastMessage = &m
			out[i].LastActivity = max(m.CreatedAt, r.JoinedAt)
		}
		if r.Kind == KindDM {
			// A peer who has not accepted the DM yet is not a member: only
			// the id the caller asked for is theirs to see, not the name.
			out[i].Peer = &User{ID: dmPeer(r.DMKey, user), Name: r.PeerName}
			if r.PeerID == "" {
				out[i].Peer.Name = ""
			}
		}
	}
	// Newest activity first; within a millisecond, the newer message.
	slices.SortStableFunc(out, func(a, b RoomSummary) int {
		return cmp.Or(cmp.Compare(b.LastActivity, a.LastActivity), cmp.Compare(lastID[b.ID], lastID[a.ID]), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RoomDetails returns a room for user: for a member, with their unread
// count and read position; for anyone, a public room's settings and
// member count. A private room is only shown to its members.
func (s *Store) RoomDetails(ctx context.Context, user, roomID string) (RoomDetails, error) {
	var rows []struct {
		Room
		Member bool  `db:"member"`
		Count  int64 `db:"member_count"`
	}
	err := s.sel(ctx, &rows, `
		SELECT `+roomColumns+`,
		       EXISTS (SELECT 1 FROM members WHERE room_id = r.id AND user_id = ?) AS member,
		       (SELECT COUNT(*) FROM members WHERE room_id = r.id) AS member_count
		  FROM rooms r WHERE r.id = ?`, user, roomID)
	if err != nil {
		return RoomDetails{}, fmt.Errorf("store: room details: %w", err)
	}
	if len(rows) == 0 {
		return RoomDetails{}, ErrRoomNotFound
	}
	row := rows[0]
	if !row.Member {
		if row.Private {
			return RoomDetails{}, ErrNotMember
		}
		return RoomDetails{RoomSummary: RoomSummary{Room: row.Room, LastActivity: row.CreatedAt}, MemberCount: row.Count}, nil
	}
	sums, err := s.summaries(ctx, user, roomID)
	if err != nil {
		return RoomDetails{}, err
	}
	if len(sums) == 0 {
		// The membership ended between the two reads.
		return RoomDetails{}, ErrNotMember
	}
	return RoomDetails{RoomSummary: sums[0], MemberCount: row.Count, Member: true}, nil
}

// RoomChange is an update of a room's settings: each field that is not
// nil is set.
type RoomChange struct {
	Name, Topic *string
	// Owner hands the room to another of its members; the old owner stays
	// a member.
	Owner *string
}

// UpdateRoom changes a room's name, topic or owner, as its owner or the
// app's backend, and announces the room's settings with room:updated.
// changed is false, and nothing is announced, when nothing changed.
func (s *Store) UpdateRoom(ctx context.Context, actor Actor, roomID string, ch RoomChange) (room Room, changed bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		changed = false
		var err error
		// The settings are read under the room's lock: the update writes
		// them all, so one read before a concurrent change committed would
		// undo it (another name, or the owner a leave handed over).
		if room, _, err = t.lockedRoom(roomID, actor.User); err != nil {
			return err
		}
		if room.Kind == KindDM {
			return ErrDMRoom
		}
		if !actor.owns(room) {
			return ErrNotOwner
		}
		next := room
		if ch.Name != nil {
			next.Name = *ch.Name
		}
		if ch.Topic != nil {
			next.Topic = *ch.Topic
		}
		if ch.Owner != nil && *ch.Owner != room.Owner {
			// Membership changes take the room's lock too: the new owner
			// cannot leave between this check and the commit.
			_, member, err := t.roomFor(roomID, *ch.Owner)
			if err != nil {
				return err
			}
			if !member {
				return ErrOwnerNotMember
			}
			next.Owner = *ch.Owner
		}
		if next == room {
			return nil
		}
		_, err = t.exec(`UPDATE rooms SET name = ?, topic = ?, owner_id = ? WHERE id = ?`, next.Name, next.Topic, next.Owner, roomID)
		if err != nil {
			return fmt.Errorf("store: update room: %w", err)
		}
		room, changed = next, true
		t.cache.setRoom(room)
		return t.emit(roomID, event.RoomUpdated, "", RoomUpdate{Room: roomID, Name: room.Name, Topic: room.Topic,
			Private: room.Private, Owner: room.Owner, By: actor.by()})
	})
	return room, changed, err
}

// DeleteRoom closes a room, as its owner or the app's backend. Each member
// gets a room:deleted of their own, the last event of the room: their
// membership ends with it, live and in replay. The room's messages, read
// positions and memberships are purged at once; the log keeps its events
// for retention, so that a member who was away replays what came before
// the deletion. The room's id is never given to another room.
func (s *Store) DeleteRoom(ctx context.Context, actor Actor, roomID string) error {
	return s.write(ctx, func(t *Tx) error {
		// The deletion's lock first: it waits for every change that saw
		// the room, and keeps later ones out until it commits, when they
		// find no room. Its events are then the room's last.
		if err := t.q.lockRoomExclusive(roomID); err != nil {
			return fmt.Errorf("store: lock room: %w", err)
		}
		room, _, err := t.roomFor(roomID, actor.User)
		if err != nil {
			return err
		}
		if room.Kind == KindDM && !actor.Admin {
			return ErrDMRoom
		}
		if !actor.owns(room) {
			return ErrNotOwner
		}
		var members, invited []string
		if err := t.sel(&members, `SELECT user_id FROM members WHERE room_id = ? ORDER BY joined_at, user_id`, roomID); err != nil {
			return fmt.Errorf("store: list members: %w", err)
		}
		if err := t.sel(&invited, `SELECT user_id FROM invitations WHERE room_id = ? AND declined_at IS NULL ORDER BY created_at, user_id`, roomID); err != nil {
			return fmt.Errorf("store: list invitations: %w", err)
		}
		for _, q := range []string{
			`UPDATE users SET room_count = room_count - 1 WHERE id IN (SELECT user_id FROM members WHERE room_id = ?)`,
			`DELETE FROM invitations WHERE room_id = ?`,
			`DELETE FROM reads WHERE room_id = ?`,
			`DELETE FROM messages WHERE room_id = ?`,
			`DELETE FROM members WHERE room_id = ?`,
			`DELETE FROM rooms WHERE id = ?`,
		} {
			if _, err := t.exec(q, roomID); err != nil {
				return fmt.Errorf("store: delete room: %w", err)
			}
		}
		if _, err := t.exec(`INSERT INTO deleted_rooms (id, deleted_at) VALUES (?, ?)`, roomID, t.now); err != nil {
			return fmt.Errorf("store: record deleted room: %w", err)
		}
		t.cache.forgetRoom(roomID)
		for _, m := range members {
			if err := t.emit(roomID, event.RoomDeleted, m, RoomDeletion{Room: roomID, By: actor.by()}); err != nil {
				return err
			}
		}
		for _, u := range invited {
			if err := t.emit("", event.InvitationDeleted, u, InvitationEnd{Room: roomID, Reason: InvitationRoomDeleted}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Join makes u a member of a public room, or of a private room u owns or
// has an open invitation to: joining accepts it. Joining a room twice is
// not an error; joined reports whether u was added.
func (s *Store) Join(ctx context.Context, u User, roomID string) (joined bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		joined = false
		// The room before the user's row, as everywhere: a join racing
		// the owner's add of the same user would otherwise deadlock.
		room, member, err := t.lockedRoom(roomID, u.ID)
		if err != nil || member {
			return err
		}
		if room.Private && room.Owner != u.ID {
			if open, err := t.invited(roomID, u.ID); err != nil || !open {
				return cmp.Or(err, error(ErrPrivateRoom))
			}
		}
		if err := t.ensureUser(u); err != nil {
			return err
		}
		joined, err = t.addMember(roomID, u, "")
		return err
	})
	return joined, err
}

// Leave ends user's membership of a room. Leaving a DM hides it from
// user's list of rooms instead, until its next message: its two members
// stay its members.
func (s *Store) Leave(ctx context.Context, user, roomID string) error {
	return s.write(ctx, func(t *Tx) error {
		room, member, err := t.roomFor(roomID, user)
		if err != nil {
			return err
		}
		if !member {
			return ErrNotMember
		}
		if room.Kind == KindDM {
			if _, err := t.exec(`UPDATE members SET hidden = ? WHERE room_id = ? AND user_id = ?`, true, roomID, user); err != nil {
				return fmt.Errorf("store: hide dm: %w", err)
			}
			return nil
		}
		if removed, err := t.removeMember(roomID, user, "left", ""); err != nil || !removed {
			return cmp.Or[error](err, ErrNotMember)
		}
		return nil
	})
}

// AddMember lets a room's owner, or the app's backend, add u without
// asking u (Invite asks). added reports whether u was not already a member.
func (s *Store) AddMember(ctx context.Context, actor Actor, roomID string, u User) (added bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		added = false
		// Under the room's lock, an owner who left meanwhile is no
		// longer one.
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
		_, member, err := t.roomFor(roomID, u.ID)
		if err != nil || member {
			return err
		}
		if err := t.ensureUser(u); err != nil {
			return err
		}
		added, err = t.addMember(roomID, u, actor.by())
		return err
	})
	return added, err
}

// RemoveMember lets a room's owner remove a member other than themselves,
// and the app's backend remove any member. Of a user who is not a member,
// it withdraws the invitation, open or declined alike: the owner learns
// nothing of what the user did with it.
func (s *Store) RemoveMember(ctx context.Context, actor Actor, roomID, user string) error {
	return s.write(ctx, func(t *Tx) error {
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
		if !actor.Admin && user == actor.User {
			return ErrOwnerRemoval
		}
		_, member, err := t.roomFor(roomID, user)
		if err != nil {
			return err
		}
		if !member {
			found, err := t.endInvitation(roomID, user, InvitationWithdrawn)
			if err != nil || !found {
				return cmp.Or(err, error(ErrMemberNotFound))
			}
			return nil
		}
		if removed, err := t.removeMember(roomID, user, "removed", actor.by()); err != nil || !removed {
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
		SELECT mb.user_id, COALESCE(u.name, '') AS name, mb.joined_at, (r.owner_id = mb.user_id AND r.owner_id <> '') AS owner
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

// roomFor loads a room and whether user is a member of it. Where writers
// run concurrently, the room stays as it is read until the transaction
// ends, but for its settings: no deletion comes in between.
func (t *Tx) roomFor(roomID, user string) (Room, bool, error) {
	return t.readRoom(roomID, user, t.q.keyShare())
}

// lockedRoom takes the room's lock (lockRoom), then reads the room and
// whether user is a member of it: for a change that must take its place
// among the room's posts, or whose checks must still hold when it commits.
// Read under the lock, the room and the membership are the ones the change
// commits against; read before it, a leave that committed while the change
// waited for the lock would go unseen, and the leaver's message would
// follow their leave. The lock conflicts with a deletion's too, and fails
// if the room was deleted since. It is a statement of its own: a locking
// read that waited re-reads the room's row, but its membership subquery
// still sees the database as of the statement's start (the suite's
// LeaveRacesOwnPosts fails in most runs that way).
func (t *Tx) lockedRoom(roomID, user string) (Room, bool, error) {
	if err := t.q.lockRoom(roomID); err != nil {
		return Room{}, false, lockError(err)
	}
	return t.readRoom(roomID, user, "")
}

func (t *Tx) readRoom(roomID, user, lock string) (Room, bool, error) {
	if room, member, ok := t.cache.lookup(roomID, user); ok {
		return room, member, nil
	}
	var row struct {
		Room
		Member bool `db:"member"`
	}
	err := t.get(&row, `
		SELECT `+roomColumns+`,
		       EXISTS (SELECT 1 FROM members WHERE room_id = r.id AND user_id = ?) AS member
		  FROM rooms r WHERE r.id = ?`+lock, user, roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, false, ErrRoomNotFound
	}
	if err != nil {
		return Room{}, false, fmt.Errorf("store: get room: %w", err)
	}
	t.cache.read(row.Room, user, row.Member)
	return row.Room, row.Member, nil
}

// addMember adds u to a room and announces it, within the caps; an
// invitation of u to the room ends with it. added is false, and nothing
// is announced, when u already was a member: where instances write
// concurrently, another may have added u since roomFor looked.
func (t *Tx) addMember(roomID string, u User, by string) (added bool, err error) {
	res, err := t.exec(`INSERT INTO members (room_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, roomID, u.ID, t.now)
	if err != nil {
		return false, fmt.Errorf("store: insert member: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if err := t.countJoin(roomID, u.ID); err != nil {
		return false, err
	}
	t.cache.write(roomID, u.ID, true)
	if err := t.emit(roomID, event.MemberJoined, u.ID, MemberEvent{Room: roomID, User: u.ID, Name: u.Name, By: by}); err != nil {
		return false, err
	}
	_, err = t.endInvitation(roomID, u.ID, InvitationJoined)
	return true, err
}

// countJoin counts a new membership in its room's and its user's counts,
// and refuses it past either cap. Each count is a conditional update, and
// the room's comes first: on PostgreSQL its row lock makes the room's
// membership changes take turns, so that two joins racing for a room's
// last place, or a user's, never both pass (the second one's update waits
// for the first one's commit, then finds the count at the cap).
func (t *Tx) countJoin(roomID, user string) error {
	query, args := `UPDATE rooms SET member_count = member_count + 1 WHERE id = ?`, []any{roomID}
	if t.caps.roomMembers > 0 {
		query, args = query+` AND member_count < ?`, append(args, t.caps.roomMembers)
	}
	if err := t.execOne(query, args, ErrRoomFull); err != nil {
		return err
	}
	query, args = `UPDATE users SET room_count = room_count + 1 WHERE id = ?`, []any{user}
	if t.caps.roomsPerUser > 0 {
		query, args = query+` AND room_count < ?`, append(args, t.caps.roomsPerUser)
	}
	return t.execOne(query, args, ErrTooManyRooms)
}

// execOne runs an update that must change one row, and returns none
// when it changed none.
func (t *Tx) execOne(query string, args []any, none error) error {
	res, err := t.exec(query, args...)
	if err != nil {
		return fmt.Errorf("store: count members: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return cmp.Or(err, none)
	}
	return nil
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
	// The room's count first, for its lock (countJoin).
	if _, err := t.exec(`UPDATE rooms SET member_count = member_count - 1 WHERE id = ?`, roomID); err != nil {
		return false, fmt.Errorf("store: count members: %w", err)
	}
	if _, err := t.exec(`UPDATE users SET room_count = room_count - 1 WHERE id = ?`, user); err != nil {
		return false, fmt.Errorf("store: count rooms: %w", err)
	}
	t.cache.write(roomID, user, false)
	if err := t.emit(roomID, event.MemberLeft, user, MemberEvent{Room: roomID, User: user, Reason: reason, By: by}); err != nil {
		return false, err
	}
	if reason == "left" {
		by = user
	}
	return true, t.passOwnership(roomID, user, by)
}

// passOwnership hands a room whose owner just stopped being a member to
// the member who has been in it longest, or, when none is left, to no one
// (the system: the server API still manages it, and a public room can
// still be joined). It is announced with room:updated, by by. The owner
// is read afresh: on PostgreSQL the room's lock, taken by the count
// update before it, makes it the one committed last.
func (t *Tx) passOwnership(roomID, leaver, by string) error {
	var room Room
	if err := t.get(&room, `SELECT `+roomColumns+` FROM rooms r WHERE r.id = ?`, roomID); err != nil {
		return fmt.Errorf("store: get room: %w", err)
	}
	if room.Owner != leaver || leaver == System {
		return nil
	}
	var next []string
	if err := t.sel(&next, `SELECT user_id FROM members WHERE room_id = ? ORDER BY joined_at, user_id LIMIT 1`, roomID); err != nil {
		return fmt.Errorf("store: find the next owner: %w", err)
	}
	room.Owner = System
	if len(next) > 0 {
		room.Owner = next[0]
	}
	if _, err := t.exec(`UPDATE rooms SET owner_id = ? WHERE id = ?`, room.Owner, roomID); err != nil {
		return fmt.Errorf("store: hand the room over: %w", err)
	}
	t.cache.setRoom(room)
	return t.emit(roomID, event.RoomUpdated, "", RoomUpdate{Room: roomID, Name: room.Name, Topic: room.Topic,
		Private: room.Private, Owner: room.Owner, By: by})
}
