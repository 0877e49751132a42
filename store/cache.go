package store

// maxCachedMembers bounds the writer's membership cache. Past it the cache
// starts over, which costs one query per key to refill.
const maxCachedMembers = 1 << 17

type memberKey struct{ room, user string }

// memberCache remembers the rooms and memberships the writer has read, so
// that the membership check most writes begin with does not ask SQLite each
// time. Only the writer goroutine uses it. A nil *memberCache caches
// nothing: where other processes write too, every check asks the database.
//
// Its entries always hold committed state, or this transaction's own
// writes. Rooms and memberships change only through the writer: a
// membership (Tx.addMember, Tx.removeMember) or a room's settings
// (setRoom) are recorded here as they are written, and their key noted; a
// deleted room is forgotten (forgetRoom), which is always safe. When a request rolls back to its
// savepoint, or a whole transaction fails, the keys it wrote are forgotten;
// every other entry was read while only committed state could differ from
// it, so it stays true.
//
// It also remembers users' display names, which only ensureUser changes,
// so that a post by a known user runs neither ensureUser's upsert nor a
// query for the author's name: two statements of a post's eight. A name
// learned inside a transaction may be that transaction's own write, so it
// is noted like one (a key with no room) and forgotten on rollback.
type memberCache struct {
	rooms   map[string]Room
	members map[memberKey]bool
	names   map[string]string
	written []memberKey // keys written by the open transaction
}

func newMemberCache() *memberCache {
	return &memberCache{rooms: map[string]Room{}, members: map[memberKey]bool{}, names: map[string]string{}}
}

// name returns a user's known display name, if the user is known.
func (c *memberCache) name(user string) (string, bool) {
	if c == nil {
		return "", false
	}
	name, ok := c.names[user]
	return name, ok
}

// setName records a user's display name as the open transaction sees it.
func (c *memberCache) setName(user, name string) {
	if c == nil {
		return
	}
	if len(c.names) >= maxCachedMembers {
		clear(c.names)
	}
	c.names[user] = name
	c.written = append(c.written, memberKey{"", user})
}

// lookup returns a cached room and whether user is a member of it.
func (c *memberCache) lookup(roomID, user string) (room Room, member, ok bool) {
	if c == nil {
		return Room{}, false, false
	}
	room, ok = c.rooms[roomID]
	if !ok {
		return Room{}, false, false
	}
	member, ok = c.members[memberKey{roomID, user}]
	return room, member, ok
}

// read caches what the database holds.
func (c *memberCache) read(room Room, user string, member bool) {
	if c == nil {
		return
	}
	if len(c.members) >= maxCachedMembers {
		clear(c.members)
		clear(c.rooms)
	}
	c.rooms[room.ID] = room
	c.members[memberKey{room.ID, user}] = member
}

// write records a membership change made in the open transaction.
func (c *memberCache) write(roomID, user string, member bool) {
	if c == nil {
		return
	}
	k := memberKey{roomID, user}
	c.members[k] = member
	c.written = append(c.written, k)
}

// setRoom records a change of a room's settings made in the open
// transaction; a rollback forgets the room.
func (c *memberCache) setRoom(room Room) {
	if c == nil {
		return
	}
	if _, ok := c.rooms[room.ID]; !ok {
		return // nothing cached to keep true
	}
	c.rooms[room.ID] = room
	c.written = append(c.written, memberKey{room.ID, ""})
}

// forgetRoom drops a room and its memberships, as its deletion is written.
// A room is deleted rarely, so walking the memberships costs little.
func (c *memberCache) forgetRoom(id string) {
	if c == nil {
		return
	}
	delete(c.rooms, id)
	for k := range c.members {
		if k.room == id {
			delete(c.members, k)
		}
	}
}

// mark is where the current request's writes begin, for rollback.
func (c *memberCache) mark() int { return len(c.written) }

// rollback forgets the keys written since mark, and their rooms: a room
// created by a rolled-back request must not be cached either.
func (c *memberCache) rollback(mark int) {
	for _, k := range c.written[mark:] {
		if k.room == "" {
			delete(c.names, k.user)
			continue
		}
		delete(c.members, k)
		delete(c.rooms, k.room)
	}
	c.written = c.written[:mark]
}

// commit keeps the open transaction's writes.
func (c *memberCache) commit() { c.written = c.written[:0] }
