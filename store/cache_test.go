package store

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
)

// The writer's membership cache must never outlive a change that was rolled
// back: each test makes the writer cache a membership inside a write that
// then fails, and checks that the next write sees the database's answer.

// openWithRoom opens a store with opts (on a new file unless opts.Path is
// set, and synchronous NORMAL), closed when the test ends, with a room of
// alice's.
func openWithRoom(t *testing.T, opts Options) (*Store, Room) {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "herald.db")
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "NORMAL"
	}
	st, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	room, err := st.CreateRoom(context.Background(), User{ID: "alice"}, "r", false)
	if err != nil {
		t.Fatal(err)
	}
	return st, room
}

var errAbort = errors.New("abort")

// mustNotPost checks that bob is not a member, both for the writer (which
// consults the cache) and for the reader pool (which reads the file).
func mustNotPost(t *testing.T, st *Store, room Room) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := st.PostMessage(ctx, User{ID: "bob"}, room.ID, "hi", ""); !errors.Is(err, ErrNotMember) {
		t.Fatalf("post by bob: got %v, want ErrNotMember", err)
	}
	if err := st.CheckMember(ctx, "bob", room.ID); !errors.Is(err, ErrNotMember) {
		t.Fatalf("CheckMember(bob): got %v, want ErrNotMember", err)
	}
}

// joinBob adds bob to room inside a write.
func joinBob(tx *Tx, room Room) error {
	if err := tx.ensureUser(User{ID: "bob"}); err != nil {
		return err
	}
	_, err := tx.addMember(room.ID, User{ID: "bob"}, "")
	return err
}

func TestCacheForgetsRolledBackJoin(t *testing.T) {
	st, room := openWithRoom(t, Options{})
	ctx := context.Background()
	// bob's non-membership is cached first, then a failed request joins him
	// and checks the membership it wrote.
	mustNotPost(t, st, room)
	err := st.write(ctx, func(tx *Tx) error {
		if err := joinBob(tx, room); err != nil {
			return err
		}
		if _, member, err := tx.roomFor(room.ID, "bob"); err != nil || !member {
			t.Errorf("inside the request: member %v, err %v; want true, nil", member, err)
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("write: %v", err)
	}
	mustNotPost(t, st, room)
}

// A user first seen in a request that rolls back does not exist: the next
// request must create it again rather than trust the name it learned.
func TestCacheForgetsRolledBackUser(t *testing.T) {
	st, room := openWithRoom(t, Options{})
	ctx := context.Background()
	for _, carol := range []User{{ID: "carol", Name: "Carol"}, {ID: "dave"}} {
		err := st.write(ctx, func(tx *Tx) error {
			if err := tx.ensureUser(carol); err != nil {
				return err
			}
			if name, err := tx.userName(carol.ID); err != nil || name != carol.Name {
				t.Errorf("inside the request: name %q, err %v; want %q", name, err, carol.Name)
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("write: %v", err)
		}
		// Joining needs the user's row (a foreign key).
		if err := st.write(ctx, func(tx *Tx) error {
			if err := tx.ensureUser(carol); err != nil {
				return err
			}
			_, err := tx.addMember(room.ID, carol, "")
			return err
		}); err != nil {
			t.Errorf("%s joins after the rolled-back request: %v", carol.ID, err)
		}
	}
}

// A known user's name follows the tokens that name it, and a token without
// a name keeps the known one.
func TestCacheFollowsUserNames(t *testing.T) {
	st, room := openWithRoom(t, Options{})
	ctx := context.Background()
	for _, tc := range []struct{ token, want string }{
		{"Alice", "Alice"}, {"", "Alice"}, {"Alice B.", "Alice B."}, {"", "Alice B."}, {"Alice", "Alice"},
	} {
		msg, _, err := st.PostMessage(ctx, User{ID: "alice", Name: tc.token}, room.ID, "hi", "")
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := st.get(ctx, &stored, `SELECT name FROM users WHERE id = 'alice'`); err != nil {
			t.Fatal(err)
		}
		if msg.Name != tc.want || stored != tc.want {
			t.Errorf("post with name %q: message by %q, stored %q; want %q", tc.token, msg.Name, stored, tc.want)
		}
	}
}

func TestCacheForgetsRolledBackLeave(t *testing.T) {
	st, room := openWithRoom(t, Options{})
	ctx := context.Background()
	// The post caches alice's membership; the failed request then ends it.
	if _, _, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, "hello", ""); err != nil {
		t.Fatal(err)
	}
	err := st.write(ctx, func(tx *Tx) error {
		if _, err := tx.removeMember(room.ID, "alice", "left", ""); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("write: %v", err)
	}
	if _, _, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, "still here", ""); err != nil {
		t.Fatalf("post by alice after a rolled-back leave: %v", err)
	}
}

// A transaction whose COMMIT fails rolls back every request in it, even
// those that succeeded; the cache must forget their writes too. A deferred
// foreign key that is still broken at COMMIT makes SQLite refuse it.
func TestCacheForgetsFailedCommit(t *testing.T) {
	st, room := openWithRoom(t, Options{})
	ctx := context.Background()
	mustNotPost(t, st, room)
	err := st.write(ctx, func(tx *Tx) error {
		if err := joinBob(tx, room); err != nil {
			return err
		}
		if _, err := tx.exec(`PRAGMA defer_foreign_keys = ON`); err != nil {
			return err
		}
		_, err := tx.exec(`INSERT INTO members (room_id, user_id, joined_at) VALUES (?, 'nobody', 0)`, room.ID)
		return err
	})
	if err == nil {
		t.Fatal("write with a broken foreign key committed")
	}
	mustNotPost(t, st, room)
	// The writer is usable afterwards.
	if _, err := st.Join(ctx, User{ID: "bob"}, room.ID); err != nil {
		t.Fatalf("join after a failed commit: %v", err)
	}
	if _, _, err := st.PostMessage(ctx, User{ID: "bob"}, room.ID, "hi", ""); err != nil {
		t.Fatalf("post after joining: %v", err)
	}
}

// TestCacheStartsOverWhenFull: the cache keeps every entry up to its
// bound, and past it starts over rather than grow: memberships (with their
// rooms) and names alike.
func TestCacheStartsOverWhenFull(t *testing.T) {
	c := newMemberCache()
	room := Room{ID: "r"}
	user := func(i int) string { return "u" + strconv.Itoa(i) }
	for i := range maxCachedMembers {
		c.read(room, user(i), false)
		c.setName(user(i), "n")
	}
	c.commit()
	if _, _, ok := c.lookup("r", user(0)); !ok {
		t.Fatal("the first membership is forgotten before the cache is full")
	}
	if _, ok := c.name(user(0)); !ok {
		t.Fatal("the first name is forgotten before the cache is full")
	}
	for i := maxCachedMembers; i < maxCachedMembers+10; i++ {
		c.read(room, user(i), false)
		c.setName(user(i), "n")
		if n := len(c.members); n > maxCachedMembers {
			t.Fatalf("cache holds %d memberships, more than %d", n, maxCachedMembers)
		}
		if n := len(c.names); n > maxCachedMembers {
			t.Fatalf("cache holds %d names, more than %d", n, maxCachedMembers)
		}
	}
	c.commit()
	last := user(maxCachedMembers + 9)
	if _, _, ok := c.lookup("r", last); !ok {
		t.Fatal("the membership read last is not cached")
	}
	if _, ok := c.name(last); !ok {
		t.Fatal("the name set last is not cached")
	}
}

// TestCacheForgetsDeletedRoomOnly: deleting a room forgets its room and
// memberships, and keeps every other room's.
func TestCacheForgetsDeletedRoomOnly(t *testing.T) {
	c := newMemberCache()
	c.read(Room{ID: "gone"}, "alice", true)
	c.read(Room{ID: "kept"}, "alice", true)
	c.forgetRoom("gone")
	if _, _, ok := c.lookup("gone", "alice"); ok {
		t.Error("a deleted room's membership is still cached")
	}
	if _, member, ok := c.lookup("kept", "alice"); !ok || !member {
		t.Errorf("another room's membership = %v, cached %v after a deletion; want true, cached", member, ok)
	}
	if n := len(c.members); n != 1 {
		t.Errorf("cache holds %d memberships after a deletion; want 1", n)
	}
}
