package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/store"
)

// Database is a database under test: it opens stores on its data, and
// makes what they committed readable in the log.
type Database interface {
	// Open opens a store on the database, on the same data each time, with
	// opts' other settings; the store is closed when the test ends.
	Open(t testing.TB, opts store.Options) *store.Store
	// Sync makes every change committed so far readable in the log: on
	// PostgreSQL, a sequencer's pass.
	Sync(t testing.TB, st *store.Store)
	// Shared reports whether several stores write the database at once,
	// as a cluster's instances do. A SQLite file has one store, whose
	// writer remembers rooms that another store on the file could delete
	// behind its back.
	Shared() bool
}

// NewDatabase returns a new, empty database for one test.
type NewDatabase func(t *testing.T) Database

// SQLiteDatabase is a database file in the test's temporary folder.
func SQLiteDatabase(t *testing.T) Database { return sqliteDB{filepath.Join(t.TempDir(), "herald.db")} }

type sqliteDB struct{ path string }

func (d sqliteDB) Open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	opts.Path = d.path
	opts.Synchronous = "NORMAL"
	return open(t, opts)
}

// Sync has nothing to do: SQLite's writer gives positions as it commits.
func (sqliteDB) Sync(testing.TB, *store.Store) {}

func (sqliteDB) Shared() bool { return false }

// openTwo opens two stores on db where it is shared, as two instances
// would; on a SQLite file, one store twice.
func openTwo(t *testing.T, db Database, opts store.Options) (a, b *store.Store) {
	a = db.Open(t, opts)
	if !db.Shared() {
		return a, a
	}
	return a, db.Open(t, opts)
}

// aliceAndBobIn creates a public room of alice's, named name, that bob
// has joined.
func aliceAndBobIn(t *testing.T, st *store.Store, name string) store.Room {
	t.Helper()
	ctx := context.Background()
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, name, false))
	must[bool](t, "Join")(st.Join(ctx, bob, room.ID))
	return room
}

// PostgresDatabase is a new database on the package's shared PostgreSQL server.
func PostgresDatabase(t *testing.T) Database { return postgresDB{DatabaseURL(t)} }

type postgresDB struct{ url string }

func (d postgresDB) Open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	opts.URL = d.url
	return open(t, opts)
}

func (postgresDB) Shared() bool { return true }

func (postgresDB) Sync(t testing.TB, st *store.Store) {
	t.Helper()
	Sequence(t, st)
}

func open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("store.Open = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Sequence runs the sequencer of a PostgreSQL store until the outbox is
// empty: every change committed so far gets its position.
func Sequence(t testing.TB, st *store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var failed error
	done := false
	st.Lead(ctx, 10*time.Millisecond, func(ctx context.Context, l *store.Leader) error {
		for {
			evs, err := l.Sequence(ctx, 1000)
			if err != nil {
				failed = err
				return err
			}
			if len(evs) == 0 {
				done = true
				cancel()
				return nil
			}
		}
	})
	if !done {
		t.Fatalf("sequence the outbox: %v", failed)
	}
}

var (
	alice = store.User{ID: "alice", Name: "Alice"}
	bob   = store.User{ID: "bob", Name: "Bob"}
)

// TestStore is the contract of the store that every database passes: the
// repositories' rules and errors, the log that their changes write, and
// what holds when writers race.
func TestStore(t *testing.T, newDB NewDatabase) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, Database)
	}{
		{"RoomsAndMembership", testRoomsAndMembership},
		{"LogMatchesChanges", testLogMatchesChanges},
		{"IdempotentPost", testIdempotentPost},
		{"ConcurrentRetries", testConcurrentRetries},
		{"ConcurrentJoins", testConcurrentJoins},
		{"SnapshotAndRange", testSnapshotAndRange},
		{"History", testHistory},
		{"Receipts", testReceipts},
		{"LastSeen", testLastSeen},
		{"RoomSizes", testRoomSizes},
		{"SpentTickets", testSpentTickets},
		{"ReopenKeepsEpochAndLog", testReopen},
		{"RangeOverManyRooms", testRangeOverManyRooms},
		{"Trim", testTrim},
		{"Retention", testRetention},
		{"EditAndDelete", testEditAndDelete},
		{"DirectMessages", testDirectMessages},
		{"ConcurrentDMs", testConcurrentDMs},
		{"RoomManagement", testRoomManagement},
		{"DeletionRacesWriters", testDeletionRacesWriters},
		{"LeaveRacesOwnPosts", testLeaveRacesOwnPosts},
		{"LeaveRacesOwnReceipts", testLeaveRacesOwnReceipts},
		{"RoomList", testRoomList},
		{"Provision", testProvision},
		{"ConcurrentProvision", testConcurrentProvision},
		{"ProvisionRacesDeletion", testProvisionRacesDeletion},
		{"ProvisionRacesJoin", testProvisionRacesJoin},
		{"PublishAndDisconnect", testPublishAndDisconnect},
		{"Requests", testRequests},
		{"Invitations", testInvitations},
		{"DMInvitations", testDMInvitations},
		{"DMAcceptRace", testDMAcceptRace},
		{"Caps", testCaps},
		{"ConcurrentCaps", testConcurrentCaps},
		{"ConcurrentInvitationCap", testConcurrentInvitationCap},
		{"OwnerLeaves", testOwnerLeaves},
		{"OwnerLeavesRace", testOwnerLeavesRace},
		{"RoomChangesRaceOwnerLeaving", testRoomChangesRaceOwnerLeaving},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, newDB(t)) })
	}
}

func must[T any](t testing.TB, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s = %v", what, err)
		}
		return v
	}
}

func testRoomsAndMembership(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	pub := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "public", false))
	priv := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "private", true))
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"join public", func() error { _, err := st.Join(ctx, bob, pub.ID); return err }, nil},
		{"join private uninvited", func() error { _, err := st.Join(ctx, bob, priv.ID); return err }, store.ErrPrivateRoom},
		{"join unknown", func() error { _, err := st.Join(ctx, bob, "r_nope"); return err }, store.ErrRoomNotFound},
		{"add by non-owner", func() error { _, err := st.AddMember(ctx, store.UserActor("bob"), priv.ID, bob); return err }, store.ErrNotOwner},
		{"add by owner", func() error { _, err := st.AddMember(ctx, store.UserActor("alice"), priv.ID, bob); return err }, nil},
		{"post as member", func() error { _, _, err := st.PostMessage(ctx, bob, priv.ID, "hi", ""); return err }, nil},
		{"remove owner", func() error { return st.RemoveMember(ctx, store.UserActor("alice"), priv.ID, "alice") }, store.ErrOwnerRemoval},
		{"remove member", func() error { return st.RemoveMember(ctx, store.UserActor("alice"), priv.ID, "bob") }, nil},
		{"post after removal", func() error { _, _, err := st.PostMessage(ctx, bob, priv.ID, "hi", ""); return err }, store.ErrNotMember},
		{"remove again", func() error { return st.RemoveMember(ctx, store.UserActor("alice"), priv.ID, "bob") }, store.ErrMemberNotFound},
		{"leave", func() error { return st.Leave(ctx, "bob", pub.ID) }, nil},
		{"leave again", func() error { return st.Leave(ctx, "bob", pub.ID) }, store.ErrNotMember},
		{"members of a room one left", func() error { _, err := st.Members(ctx, "bob", pub.ID); return err }, store.ErrNotMember},
	}
	for _, tt := range tests {
		if err := tt.do(); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.want)
		}
	}
	members := must[[]store.Member](t, "Members")(st.Members(ctx, "alice", pub.ID))
	if len(members) != 1 || members[0].User != "alice" || !members[0].Owner || members[0].Name != "Alice" {
		t.Errorf("Members(public) = %+v; want alice alone, the owner", members)
	}
	rooms := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "alice"))
	private := map[string]bool{}
	for _, r := range rooms {
		private[r.ID] = r.Private
	}
	if len(rooms) != 2 || private[pub.ID] || !private[priv.ID] {
		t.Errorf("Rooms(alice) = %+v; want public and private", rooms)
	}
	if !errors.Is(store.ErrNotMember, store.ErrForbidden) || !errors.Is(store.ErrRoomNotFound, store.ErrNotFound) {
		t.Errorf("client errors must unwrap to their kinds")
	}
}

// Every committed change is in the log once, in order, with dense
// positions; a request that failed while others committed beside it
// logged nothing.
func testLogMatchesChanges(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			target, want := room.ID, error(nil)
			if i%4 == 0 {
				target, want = "r_missing", store.ErrRoomNotFound
			}
			if _, _, err := st.PostMessage(ctx, alice, target, fmt.Sprint("m", i), ""); !errors.Is(err, want) {
				t.Errorf("PostMessage(%s) = %v; want %v", target, err, want)
			}
		})
	}
	wg.Wait()
	db.Sync(t, st)
	head := must[int64](t, "Head")(st.Head(ctx))
	evs := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: 0, UpTo: head, Limit: 1000}))
	if len(evs) != 1+48 || int64(len(evs)) != head {
		t.Fatalf("log holds %d events up to %d; want 49 (one join, 48 messages), positions 1 to 49", len(evs), head)
	}
	texts := map[string]bool{}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("position %d at index %d; want dense positions from 1", e.Seq, i)
		}
		if e.Type == event.MessageCreated {
			texts[string(e.Data)] = true
		}
	}
	if len(texts) != 48 {
		t.Errorf("%d distinct messages in the log; want 48", len(texts))
	}
}

func testIdempotentPost(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	must[bool](t, "Join")(st.Join(ctx, bob, room.ID))
	first, created, err := st.PostMessage(ctx, alice, room.ID, "hello", "c-1")
	if err != nil || !created {
		t.Fatalf("first post = %v, %v; want created", created, err)
	}
	again, created, err := st.PostMessage(ctx, alice, room.ID, "different text", "c-1")
	if err != nil || created || again.ID != first.ID || again.Text != "hello" {
		t.Fatalf("retry = %+v, created %v, %v; want the original, not created", again, created, err)
	}
	other, created, err := st.PostMessage(ctx, bob, room.ID, "hello", "c-1")
	if err != nil || !created || other.ID == first.ID {
		t.Fatalf("another author's c-1 = %+v, %v, %v; want a new message", other, created, err)
	}
}

// race makes 8 calls at once, alternately on a and b (two instances of
// one database), and returns how many reported that they created what
// they name, and the distinct results. A call that fails fails the test.
func race[K comparable](t *testing.T, a, b *store.Store, name string, call func(i int, st *store.Store) (K, bool, error)) (created int, got map[K]bool) {
	t.Helper()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	got = map[K]bool{}
	for i := range 8 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			k, c, err := call(i, st)
			if err != nil {
				t.Errorf("%s = %v", name, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			got[k] = true
			if c {
				created++
			}
		})
	}
	wg.Wait()
	return created, got
}

// Retries of one post racing each other (two instances, say) create it
// once and announce it once.
func testConcurrentRetries(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, alice, "r", false))
	start := head(t, db, a)
	created, ids := race(t, a, b, "PostMessage", func(_ int, st *store.Store) (int64, bool, error) {
		msg, c, err := st.PostMessage(ctx, alice, room.ID, "once", "retry-1")
		return msg.ID, c, err
	})
	if created != 1 || len(ids) != 1 {
		t.Fatalf("8 racing retries: %d created, ids %v; want 1 created, one id", created, ids)
	}
	db.Sync(t, a)
	evs := must[[]event.Event](t, "Range")(a.Range(ctx, event.Query{After: start, UpTo: 1 << 62, Limit: 100}))
	if len(evs) != 1 {
		t.Fatalf("racing retries announced %d events; want 1", len(evs))
	}
}

// Joins of one user racing each other and the owner's adds of them add
// them once, with one event.
func testConcurrentJoins(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, alice, "r", false))
	start := head(t, db, a)
	joined, _ := race(t, a, b, "Join or AddMember", func(i int, st *store.Store) (struct{}, bool, error) {
		if i/2%2 == 1 {
			added, err := st.AddMember(ctx, store.UserActor("alice"), room.ID, bob)
			return struct{}{}, added, err
		}
		j, err := st.Join(ctx, bob, room.ID)
		return struct{}{}, j, err
	})
	db.Sync(t, a)
	evs := must[[]event.Event](t, "Range")(a.Range(ctx, event.Query{After: start, UpTo: 1 << 62, Limit: 100}))
	if joined != 1 || len(evs) != 1 || evs[0].Type != event.MemberJoined {
		t.Fatalf("8 racing joins and adds: %d reported joined, log %d events; want 1 and one member:joined", joined, len(evs))
	}
	// Both take the room's lock before the user's row: neither deadlocks
	// with the other, which PostgreSQL breaks only after a second.
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("8 racing joins and adds ran %d transactions again after conflicts; want none", n)
	}
}

// A snapshot is exact as of its position, and Range filters by room and
// by the user a member event is about.
func testSnapshotAndRange(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	a := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "a", false))
	b := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "b", false))
	must[bool](t, "Join")(st.Join(ctx, bob, a.ID))
	db.Sync(t, st)
	rooms0, head0, err := st.Snapshot(ctx, "bob")
	if err != nil || len(rooms0) != 1 || rooms0[0] != a.ID || head0 != 3 {
		t.Fatalf("Snapshot(bob) = %v, %d, %v; want room a at 3", rooms0, head0, err)
	}
	both, headA, err := st.Snapshot(ctx, alice.ID)
	want := []string{a.ID, b.ID}
	slices.Sort(both)
	slices.Sort(want)
	if err != nil || !slices.Equal(both, want) || headA != head0 {
		t.Fatalf("Snapshot(alice) = %v, %d, %v; want %v at %d", both, headA, err, want, head0)
	}
	for _, room := range []string{a.ID, b.ID} {
		if _, _, err := st.PostMessage(ctx, alice, room, "hi", ""); err != nil {
			t.Fatalf("PostMessage(%s) = %v", room, err)
		}
	}
	if err := st.Leave(ctx, "bob", a.ID); err != nil {
		t.Fatalf("Leave(bob, a) = %v", err)
	}
	db.Sync(t, st)
	rooms, head, err := st.Snapshot(ctx, "bob")
	if err != nil || len(rooms) != 0 || head != head0+3 {
		t.Fatalf("Snapshot(bob) = %v, %d, %v; want no rooms at %d", rooms, head, err, head0+3)
	}
	if _, h, err := st.Snapshot(ctx, ""); err != nil || h != head {
		t.Fatalf("Snapshot(\"\") = %d, %v; want the head %d", h, err, head)
	}
	mine := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: head0, UpTo: head, Subject: "bob", Limit: 10}))
	if len(mine) != 1 || mine[0].Type != event.MemberLeft {
		t.Fatalf("bob's member events = %+v; want one member:left", mine)
	}
	inA := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: head0, UpTo: head, Rooms: []string{a.ID}, Limit: 10}))
	if len(inA) != 2 {
		t.Fatalf("events of room a = %d; want 2", len(inA))
	}
	none := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: 0, UpTo: head, Rooms: []string{}, Limit: 10}))
	if len(none) != 0 {
		t.Fatalf("events of no rooms = %d; want 0", len(none))
	}
}

func testHistory(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	var ids []int64
	for i := range 7 {
		msg, _, err := st.PostMessage(ctx, alice, room.ID, fmt.Sprint("m", i), "")
		if err != nil {
			t.Fatalf("PostMessage = %v", err)
		}
		ids = append(ids, msg.ID)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("message ids %v; want them in the order posted", ids)
	}
	texts := func(msgs []store.Message) []string {
		var out []string
		for _, m := range msgs {
			out = append(out, m.Text)
		}
		return out
	}
	tests := []struct {
		q    store.HistoryQuery
		want []string
		more bool
	}{
		{store.HistoryQuery{Limit: 3}, []string{"m4", "m5", "m6"}, true},
		{store.HistoryQuery{Before: ids[4], Limit: 3}, []string{"m1", "m2", "m3"}, true},
		{store.HistoryQuery{Before: ids[1], Limit: 3}, []string{"m0"}, false},
		{store.HistoryQuery{After: ids[4], Limit: 3}, []string{"m5", "m6"}, false},
		{store.HistoryQuery{After: ids[0], Limit: 2}, []string{"m1", "m2"}, true},
		// Exactly a page left, either way: nothing more.
		{store.HistoryQuery{Before: ids[3], Limit: 3}, []string{"m0", "m1", "m2"}, false},
		{store.HistoryQuery{After: ids[3], Limit: 3}, []string{"m4", "m5", "m6"}, false},
		{store.HistoryQuery{Limit: 7}, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6"}, false},
	}
	for _, tt := range tests {
		msgs, more, err := st.Messages(ctx, "alice", room.ID, tt.q)
		if err != nil || !slices.Equal(texts(msgs), tt.want) || more != tt.more {
			t.Errorf("Messages(%+v) = %v, more %v, %v; want %v, more %v", tt.q, texts(msgs), more, err, tt.want, tt.more)
		}
	}
	if _, _, err := st.Messages(ctx, "bob", room.ID, store.HistoryQuery{Limit: 3}); !errors.Is(err, store.ErrNotMember) {
		t.Errorf("Messages by a non-member = %v; want ErrNotMember", err)
	}
}

// A read position only moves forward; unread counts others' messages
// after it.
func testReceipts(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	must[bool](t, "Join")(st.Join(ctx, bob, room.ID))
	var ids []int64
	for i := range 3 {
		msg, _, err := st.PostMessage(ctx, alice, room.ID, fmt.Sprint("m", i), "")
		if err != nil {
			t.Fatalf("PostMessage = %v", err)
		}
		ids = append(ids, msg.ID)
	}
	unread := func(want int64) {
		t.Helper()
		rooms := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "bob"))
		if len(rooms) != 1 || rooms[0].Unread != want {
			t.Fatalf("Rooms(bob) = %+v; want unread %d", rooms, want)
		}
	}
	unread(3)
	for _, tt := range []struct {
		id      int64
		updated bool
		err     error
	}{
		{ids[1], true, nil},
		{ids[0], false, nil}, // backwards: accepted, ignored
		{ids[1], false, nil},
		{ids[2] + 100, false, store.ErrMessageNotFound},
	} {
		updated, err := st.MarkRead(ctx, "bob", room.ID, tt.id)
		if updated != tt.updated || !errors.Is(err, tt.err) {
			t.Errorf("MarkRead(%d) = %v, %v; want %v, %v", tt.id, updated, err, tt.updated, tt.err)
		}
	}
	unread(1)
	receipts := must[[]store.Receipt](t, "Receipts")(st.Receipts(ctx, "alice", room.ID))
	if len(receipts) != 2 || receipts[1].User != "bob" || receipts[1].MessageID != ids[1] {
		t.Errorf("Receipts = %+v; want bob at %d", receipts, ids[1])
	}
}

func testLastSeen(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	at := time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	if err := st.SaveLastSeen(ctx, "alice", at); err != nil {
		t.Fatalf("SaveLastSeen = %v", err)
	}
	seen := must[map[string]time.Time](t, "LastSeen")(st.LastSeen(ctx, []string{"alice", "nobody"}))
	if len(seen) != 1 || !seen["alice"].Equal(at) {
		t.Errorf("LastSeen = %v; want alice at %v, nobody absent", seen, at)
	}
}

// testRoomSizes sizes rooms around a limit of 2 members, as presence
// does: at the limit a room is small, one member more makes it large, and
// one leaving makes it small again.
func testRoomSizes(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	carol := store.User{ID: "carol"}
	one := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "one", false))
	two := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "two", false))
	three := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "three", false))
	must[bool](t, "Join")(st.Join(ctx, bob, two.ID))
	must[bool](t, "Join")(st.Join(ctx, bob, three.ID))
	must[bool](t, "Join")(st.Join(ctx, carol, three.ID))

	sizes := func(step, user string, wantSmall, wantLarge []string) {
		t.Helper()
		small, large, err := st.PresenceRooms(ctx, user, 2)
		slices.Sort(small)
		slices.Sort(large)
		slices.Sort(wantSmall)
		slices.Sort(wantLarge)
		if err != nil || !slices.Equal(small, wantSmall) || !slices.Equal(large, wantLarge) {
			t.Errorf("%s: PresenceRooms(%s, 2) = %v, %v, %v; want small %v, large %v", step, user, small, large, err, wantSmall, wantLarge)
		}
	}
	large := func(step string, want []string) {
		t.Helper()
		all := []string{one.ID, two.ID, three.ID, "r_nope"}
		got := must[[]string](t, "LargeRooms")(st.LargeRooms(ctx, all, 2))
		if !slices.Equal(got, want) {
			t.Errorf("%s: LargeRooms(%v, 2) = %v; want %v", step, all, got, want)
		}
	}
	sizes("1, 2 and 3 members", alice.ID, []string{one.ID, two.ID}, []string{three.ID})
	sizes("1, 2 and 3 members", bob.ID, []string{two.ID}, []string{three.ID})
	sizes("1, 2 and 3 members", carol.ID, nil, []string{three.ID})
	sizes("no rooms", "nobody", nil, nil)
	large("1, 2 and 3 members", []string{three.ID})
	if err := st.Leave(ctx, carol.ID, three.ID); err != nil {
		t.Fatalf("Leave = %v", err)
	}
	sizes("back to 2 members", alice.ID, []string{one.ID, two.ID, three.ID}, nil)
	large("back to 2 members", []string{})
	members := must[[]string](t, "RoomMembers")(st.RoomMembers(ctx, three.ID))
	slices.Sort(members)
	if want := []string{alice.ID, bob.ID}; !slices.Equal(members, want) {
		t.Errorf("RoomMembers(three) = %v; want %v", members, want)
	}
}

func testReopen(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	db.Sync(t, st)
	epoch := st.Epoch()
	head := must[int64](t, "Head")(st.Head(ctx))
	if err := st.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if _, err := st.CreateRoom(ctx, alice, "late", false); !errors.Is(err, store.ErrClosed) {
		t.Errorf("write after Close = %v; want ErrClosed", err)
	}
	again := db.Open(t, store.Options{})
	if h := must[int64](t, "Head")(again.Head(ctx)); again.Epoch() != epoch || h != head || head == 0 {
		t.Errorf("after reopening: epoch %s, head %d; want %s, %d", again.Epoch(), h, epoch, head)
	}
}

func testTrim(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	for range 4 {
		must[store.Message](t, "PostMessage")(func() (store.Message, error) {
			m, _, err := st.PostMessage(ctx, alice, room.ID, "m", "")
			return m, err
		}())
	}
	db.Sync(t, st)
	if err := st.Trim(ctx, 3); err != nil {
		t.Fatalf("Trim = %v", err)
	}
	if err := st.Trim(ctx, 1); err != nil { // never moves back
		t.Fatalf("Trim = %v", err)
	}
	evs := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: 0, UpTo: 5, Limit: 100}))
	if len(evs) != 2 || evs[0].Seq != 4 || st.TrimmedThrough() != 3 {
		t.Fatalf("after trimming through 3: %d events from %v, TrimmedThrough %d; want 4 and 5, 3", len(evs), evs, st.TrimmedThrough())
	}
	// Another store on the same database learns the mark as it reads.
	other := db.Open(t, store.Options{})
	must[[]event.Event](t, "Range")(other.Range(ctx, event.Query{After: 0, UpTo: 5, Limit: 100}))
	if other.TrimmedThrough() != 3 {
		t.Errorf("another store's TrimmedThrough = %d; want 3", other.TrimmedThrough())
	}
	// History is not the log: messages stay.
	if msgs, _, err := st.Messages(ctx, "alice", room.ID, store.HistoryQuery{Limit: 10}); err != nil || len(msgs) != 4 {
		t.Errorf("history after the trim = %d, %v; want 4 messages", len(msgs), err)
	}
}

// Retention trims by age, on its own.
func testRetention(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{Retention: 20 * time.Millisecond})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	if _, _, err := st.PostMessage(ctx, alice, room.ID, "old", ""); err != nil {
		t.Fatalf("PostMessage = %v", err)
	}
	db.Sync(t, st)
	head := must[int64](t, "Head")(st.Head(ctx))
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: 0, UpTo: head, Limit: 10}))
		if st.TrimmedThrough() >= head && len(evs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s TrimmedThrough = %d, %d events left; want %d, none", st.TrimmedThrough(), len(evs), head)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h := must[int64](t, "Head")(st.Head(ctx)); h != head {
		t.Errorf("Head after pruning = %d; want %d (positions are never reused)", h, head)
	}
}

// A ticket is spent once, also after the store reopens, and forgotten once
// expired.
func testSpentTickets(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	later := time.Now().Add(time.Minute)
	if fresh, err := st.SpendTicket(ctx, "n1", later); err != nil || !fresh {
		t.Fatalf("SpendTicket(n1) = %v, %v; want fresh", fresh, err)
	}
	st.Close()
	st = db.Open(t, store.Options{})
	if fresh, err := st.SpendTicket(ctx, "n1", later); err != nil || fresh {
		t.Fatalf("SpendTicket(n1) again, after reopening = %v, %v; want spent", fresh, err)
	}
	if fresh, err := st.SpendTicket(ctx, "n2", later); err != nil || !fresh {
		t.Fatalf("SpendTicket(n2) = %v, %v; want fresh", fresh, err)
	}
}

// A user in more rooms than one statement may name still gets the events
// of all of them, in order.
func testRangeOverManyRooms(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	var rooms []string
	for i := range 1200 {
		room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, fmt.Sprint("r", i), false))
		rooms = append(rooms, room.ID)
	}
	db.Sync(t, st)
	head := must[int64](t, "Head")(st.Head(ctx))
	evs := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: 0, UpTo: head, Rooms: rooms, Limit: 2000}))
	if len(evs) != 1200 || evs[0].Seq != 1 || evs[1199].Seq != 1200 {
		t.Fatalf("Range over 1200 rooms = %d events; want 1200, positions 1 to 1200", len(evs))
	}
	evs = must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: 100, UpTo: head, Rooms: rooms, Limit: 50}))
	if len(evs) != 50 || evs[0].Seq != 101 || evs[49].Seq != 150 {
		t.Fatalf("Range(100, head] limit 50 over 1200 rooms = %d events from %d; want 101 to 150", len(evs), evs[0].Seq)
	}
}

// logSince returns the log's events after position after, once the
// database made them readable.
func logSince(t *testing.T, db Database, st *store.Store, after int64) []event.Event {
	t.Helper()
	db.Sync(t, st)
	head := must[int64](t, "Head")(st.Head(context.Background()))
	return must[[]event.Event](t, "Range")(st.Range(context.Background(), event.Query{After: after, UpTo: head, Limit: 10_000}))
}

// head returns the log's head once the database made every change
// committed so far readable.
func head(t *testing.T, db Database, st *store.Store) int64 {
	t.Helper()
	db.Sync(t, st)
	return must[int64](t, "Head")(st.Head(context.Background()))
}

// types lists "type subject" of each event, for comparisons.
func types(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = strings.TrimSpace(e.Type + " " + e.Subject)
	}
	return out
}

// An author edits and deletes their message; the room's owner deletes any;
// others may not; a tombstone replaces the text in history; to a
// non-member the message does not exist; the app's backend may do it all.
// Each change is one event, and a change that changes nothing is none.
func testEditAndDelete(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	must[bool](t, "Join")(st.Join(ctx, bob, room.ID))
	other := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, bob, "other", false))
	post := func(u store.User, text string) store.Message {
		t.Helper()
		m, _, err := st.PostMessage(ctx, u, room.ID, text, "")
		if err != nil {
			t.Fatalf("PostMessage = %v", err)
		}
		return m
	}
	mine, hers, third := post(bob, "helo"), post(alice, "hi"), post(bob, "third")
	start := head(t, db, st)

	edit := func(a store.Actor, roomID string, id int64, text string) (store.Message, bool, error) {
		return st.EditMessage(ctx, a, roomID, id, text, 0)
	}
	del := func(a store.Actor, roomID string, id int64) (store.Message, bool, error) {
		return st.DeleteMessage(ctx, a, roomID, id)
	}
	bobA, aliceA, carolA := store.UserActor("bob"), store.UserActor("alice"), store.UserActor("carol")
	tests := []struct {
		name    string
		do      func() (store.Message, bool, error)
		changed bool
		err     error
	}{
		{"author edits", func() (store.Message, bool, error) { return edit(bobA, room.ID, mine.ID, "hello") }, true, nil},
		{"same text again", func() (store.Message, bool, error) { return edit(bobA, room.ID, mine.ID, "hello") }, false, nil},
		{"someone else's", func() (store.Message, bool, error) { return edit(bobA, room.ID, hers.ID, "x") }, false, store.ErrNotAuthor},
		{"owner edits another's", func() (store.Message, bool, error) { return edit(aliceA, room.ID, mine.ID, "x") }, false, store.ErrNotAuthor},
		{"non-member", func() (store.Message, bool, error) { return edit(carolA, room.ID, mine.ID, "x") }, false, store.ErrMessageNotFound},
		{"non-member deletes", func() (store.Message, bool, error) { return del(carolA, room.ID, mine.ID) }, false, store.ErrMessageNotFound},
		{"unknown room", func() (store.Message, bool, error) { return edit(bobA, "r_nope", mine.ID, "x") }, false, store.ErrMessageNotFound},
		{"message of another room", func() (store.Message, bool, error) { return edit(bobA, other.ID, mine.ID, "x") }, false, store.ErrMessageNotFound},
		{"unknown message", func() (store.Message, bool, error) { return edit(bobA, room.ID, third.ID+100, "x") }, false, store.ErrMessageNotFound},
		{"member deletes another's", func() (store.Message, bool, error) { return del(bobA, room.ID, hers.ID) }, false, store.ErrNotAuthorOwner},
		{"author deletes", func() (store.Message, bool, error) { return del(bobA, room.ID, mine.ID) }, true, nil},
		{"delete again", func() (store.Message, bool, error) { return del(bobA, room.ID, mine.ID) }, false, nil},
		{"edit a tombstone", func() (store.Message, bool, error) { return edit(bobA, room.ID, mine.ID, "back") }, false, store.ErrMessageDeleted},
		{"owner deletes a member's", func() (store.Message, bool, error) { return del(aliceA, room.ID, third.ID) }, true, nil},
		{"backend edits anyone's", func() (store.Message, bool, error) { return edit(store.Admin, room.ID, hers.ID, "hi!") }, true, nil},
		{"backend, unknown room", func() (store.Message, bool, error) { return edit(store.Admin, "r_nope", hers.ID, "x") }, false, store.ErrRoomNotFound},
	}
	for _, tt := range tests {
		_, changed, err := tt.do()
		if changed != tt.changed || !errors.Is(err, tt.err) {
			t.Errorf("%s: changed %v, %v; want %v, %v", tt.name, changed, err, tt.changed, tt.err)
		}
	}
	got := types(logSince(t, db, st, start))
	want := []string{event.MessageUpdated, event.MessageDeleted, event.MessageDeleted, event.MessageUpdated}
	if !slices.Equal(got, want) {
		t.Errorf("log after the edits = %q; want %q", got, want)
	}

	msgs, _, err := st.Messages(ctx, "alice", room.ID, store.HistoryQuery{Limit: 10})
	if err != nil || len(msgs) != 3 {
		t.Fatalf("history = %d messages, %v; want 3", len(msgs), err)
	}
	if m := msgs[0]; m.ID != mine.ID || m.Text != "" || m.DeletedAt == 0 || m.EditedAt != 0 || m.Author != "bob" {
		t.Errorf("history's deleted message = %+v; want a tombstone of bob's, no text, deleted_at set", m)
	}
	if m := msgs[1]; m.Text != "hi!" || m.EditedAt == 0 || m.DeletedAt != 0 {
		t.Errorf("history's edited message = %+v; want the new text and edited_at", m)
	}

	// The edit window holds for authors, not for the backend. It has
	// passed once a later message is stamped after it.
	const window = 5 * time.Millisecond
	old := post(bob, "old")
	for m := old; m.CreatedAt.Time().Sub(old.CreatedAt.Time()) <= window; {
		m = post(alice, "tick")
	}
	if _, _, err := st.EditMessage(ctx, bobA, room.ID, old.ID, "new", window); !errors.Is(err, store.ErrEditWindow) {
		t.Errorf("edit past the window = %v; want ErrEditWindow", err)
	}
	if _, _, err := st.EditMessage(ctx, bobA, room.ID, old.ID, "new", time.Hour); err != nil {
		t.Errorf("edit within the window = %v", err)
	}
	if _, _, err := st.EditMessage(ctx, store.Admin, room.ID, old.ID, "newer", window); err != nil {
		t.Errorf("backend's edit past the window = %v; want nil", err)
	}
}

// A DM is one private room per pair, whoever opens it; it is listed with
// its peer; nobody can be added to it; leaving hides it until its next
// message; a DM needs another user Herald knows.
func testDirectMessages(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, bob, "bob was here", false)) // bob exists
	start := head(t, db, st)
	dm, created, err := st.OpenDM(ctx, alice, "bob", false)
	if err != nil || !created || dm.Kind != store.KindDM || !dm.Private || dm.Owner != store.System {
		t.Fatalf("OpenDM(alice, bob) = %+v, %v, %v; want a new private dm owned by no one", dm, created, err)
	}
	again, created, err := st.OpenDM(ctx, bob, "alice", false)
	if err != nil || created || again.ID != dm.ID {
		t.Fatalf("OpenDM(bob, alice) = %+v, %v, %v; want %s, not created", again, created, err, dm.ID)
	}
	if got := types(logSince(t, db, st, start)); !slices.Equal(got, []string{"member:joined alice", "member:joined bob"}) {
		t.Errorf("log of the dm = %q; want both joins", got)
	}
	for _, tt := range []struct {
		name string
		do   func() error
		want error
	}{
		{"with oneself", func() error { _, _, err := st.OpenDM(ctx, alice, "alice", false); return err }, store.ErrDMWithSelf},
		{"with a stranger", func() error { _, _, err := st.OpenDM(ctx, alice, "nobody", false); return err }, store.ErrUserNotFound},
		{"with the system", func() error { _, _, err := st.OpenDM(ctx, alice, "", false); return err }, store.ErrUserNotFound},
		{"add a member", func() error { _, err := st.AddMember(ctx, store.UserActor("alice"), dm.ID, carol); return err }, store.ErrDMRoom},
		{"backend adds a member", func() error { _, err := st.AddMember(ctx, store.Admin, dm.ID, carol); return err }, store.ErrDMRoom},
		{"remove a member", func() error { return st.RemoveMember(ctx, store.UserActor("alice"), dm.ID, "bob") }, store.ErrDMRoom},
		{"rename", func() error {
			_, _, err := st.UpdateRoom(ctx, store.UserActor("alice"), dm.ID, store.RoomChange{Name: ptr("x")})
			return err
		}, store.ErrDMRoom},
		{"delete", func() error { return st.DeleteRoom(ctx, store.UserActor("alice"), dm.ID) }, store.ErrDMRoom},
		{"join from outside", func() error { _, err := st.Join(ctx, carol, dm.ID); return err }, store.ErrPrivateRoom},
	} {
		if err := tt.do(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.want)
		}
	}
	listed := func(u string) *store.RoomSummary {
		t.Helper()
		for _, r := range must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, u)) {
			if r.ID == dm.ID {
				return &r
			}
		}
		return nil
	}
	if r := listed("alice"); r == nil || r.Peer == nil || r.Peer.ID != "bob" || r.Peer.Name != "Bob" {
		t.Fatalf("alice's listing of the dm = %+v; want it, with bob as its peer", r)
	}
	if err := st.Leave(ctx, "alice", dm.ID); err != nil {
		t.Fatalf("Leave(dm) = %v", err)
	}
	if r := listed("alice"); r != nil {
		t.Errorf("alice's list after leaving the dm has it: %+v", r)
	}
	if err := st.CheckMember(ctx, "alice", dm.ID); err != nil {
		t.Errorf("alice after leaving the dm: CheckMember = %v; want still a member", err)
	}
	if _, _, err := st.PostMessage(ctx, bob, dm.ID, "still there?", ""); err != nil {
		t.Fatalf("PostMessage(dm) = %v", err)
	}
	if r := listed("alice"); r == nil || r.LastMessage == nil || r.LastMessage.Text != "still there?" || r.Unread != 1 {
		t.Errorf("alice's listing after bob's message = %+v; want the dm back, with it", r)
	}
	if err := st.Leave(ctx, "alice", dm.ID); err != nil {
		t.Fatalf("Leave(dm) = %v", err)
	}
	if _, _, err := st.OpenDM(ctx, alice, "bob", false); err != nil || listed("alice") == nil {
		t.Errorf("opening a hidden dm again: %v, listed %v; want it shown", err, listed("alice") != nil)
	}
}

func ptr[T any](v T) *T { return &v }

var carol = store.User{ID: "carol", Name: "Carol"}

// Both sides of a pair open their DM at once, on two stores: one room.
func testConcurrentDMs(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	for _, u := range []store.User{alice, bob} {
		must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, u, "hello", false))
	}
	start := head(t, db, a)
	// Alice on one instance, Bob on the other.
	created, ids := race(t, a, b, "OpenDM", func(i int, st *store.Store) (string, bool, error) {
		me, other := []store.User{alice, bob}[i%2], []string{"bob", "alice"}[i%2]
		room, c, err := st.OpenDM(ctx, me, other, false)
		return room.ID, c, err
	})
	if len(ids) != 1 || created != 1 {
		t.Fatalf("8 racing OpenDMs from both sides: rooms %v, %d created; want one room, created once", ids, created)
	}
	// The pair's opens take turns: none deadlocks with another (which
	// PostgreSQL breaks only after a second) or loses the key's race.
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("8 racing OpenDMs ran %d transactions again after conflicts; want none", n)
	}
	if got := types(logSince(t, db, a, start)); len(got) != 2 {
		t.Errorf("log of the racing OpenDMs = %q; want two joins", got)
	}
}

// The owner renames, sets the topic, hands the room over and deletes it;
// others may not. A deletion ends every membership with a room:deleted
// each, purges the room, and keeps its id from being used again.
func testRoomManagement(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	must[bool](t, "Join")(st.Join(ctx, bob, room.ID))
	msg, _, err := st.PostMessage(ctx, bob, room.ID, "hi", "")
	if err != nil {
		t.Fatalf("PostMessage = %v", err)
	}
	if _, err := st.MarkRead(ctx, "alice", room.ID, msg.ID); err != nil {
		t.Fatalf("MarkRead = %v", err)
	}
	start := head(t, db, st)
	aliceA, bobA := store.UserActor("alice"), store.UserActor("bob")

	if _, _, err := st.UpdateRoom(ctx, bobA, room.ID, store.RoomChange{Name: ptr("mine")}); !errors.Is(err, store.ErrNotOwner) {
		t.Errorf("rename by a member = %v; want ErrNotOwner", err)
	}
	got, changed, err := st.UpdateRoom(ctx, aliceA, room.ID, store.RoomChange{Name: ptr("general"), Topic: ptr("all things")})
	if err != nil || !changed || got.Name != "general" || got.Topic != "all things" {
		t.Fatalf("UpdateRoom = %+v, %v, %v; want renamed with a topic", got, changed, err)
	}
	if _, changed, err := st.UpdateRoom(ctx, aliceA, room.ID, store.RoomChange{Name: ptr("general")}); err != nil || changed {
		t.Errorf("the same name again: changed %v, %v; want unchanged", changed, err)
	}
	if _, _, err := st.UpdateRoom(ctx, aliceA, room.ID, store.RoomChange{Owner: ptr("carol")}); !errors.Is(err, store.ErrOwnerNotMember) {
		t.Errorf("handing over to a non-member = %v; want ErrOwnerNotMember", err)
	}
	if got, _, err := st.UpdateRoom(ctx, aliceA, room.ID, store.RoomChange{Owner: ptr("bob")}); err != nil || got.Owner != "bob" {
		t.Fatalf("handing over to bob = %+v, %v", got, err)
	}
	if _, _, err := st.UpdateRoom(ctx, aliceA, room.ID, store.RoomChange{Topic: ptr("")}); !errors.Is(err, store.ErrNotOwner) {
		t.Errorf("the old owner's update = %v; want ErrNotOwner", err)
	}
	details := must[store.RoomDetails](t, "RoomDetails")(st.RoomDetails(ctx, "alice", room.ID))
	if details.Name != "general" || details.Owner != "bob" || details.MemberCount != 2 || !details.Member ||
		details.LastRead != msg.ID || details.LastMessage == nil || details.LastMessage.ID != msg.ID {
		t.Errorf("RoomDetails(alice) = %+v; want general, owned by bob, 2 members, read up to %d", details, msg.ID)
	}
	if d, err := st.RoomDetails(ctx, "carol", room.ID); err != nil || d.Member || d.MemberCount != 2 || d.LastMessage != nil {
		t.Errorf("RoomDetails(carol) of a public room = %+v, %v; want its settings only", d, err)
	}

	if err := st.DeleteRoom(ctx, aliceA, room.ID); !errors.Is(err, store.ErrNotOwner) {
		t.Errorf("deletion by a member = %v; want ErrNotOwner", err)
	}
	if err := st.DeleteRoom(ctx, bobA, room.ID); err != nil {
		t.Fatalf("DeleteRoom = %v", err)
	}
	evs := logSince(t, db, st, start)
	want := []string{event.RoomUpdated, event.RoomUpdated, "room:deleted alice", "room:deleted bob"}
	if got := types(evs); !slices.Equal(got, want) {
		t.Errorf("log of the room's management = %q; want %q", got, want)
	}
	for _, tt := range []struct {
		name string
		do   func() error
		want error
	}{
		{"post", func() error { _, _, err := st.PostMessage(ctx, bob, room.ID, "hi", ""); return err }, store.ErrRoomNotFound},
		{"join", func() error { _, err := st.Join(ctx, carol, room.ID); return err }, store.ErrRoomNotFound},
		{"details", func() error { _, err := st.RoomDetails(ctx, "bob", room.ID); return err }, store.ErrRoomNotFound},
		{"delete again", func() error { return st.DeleteRoom(ctx, bobA, room.ID) }, store.ErrRoomNotFound},
		{"provision its id", func() error {
			_, _, err := st.ProvisionRoom(ctx, store.Provision{ID: room.ID, Name: "again"})
			return err
		}, store.ErrRoomDeleted},
	} {
		if err := tt.do(); !errors.Is(err, tt.want) {
			t.Errorf("%s after the deletion: %v; want %v", tt.name, err, tt.want)
		}
	}
	if rooms, _, err := st.Snapshot(ctx, "bob"); err != nil || len(rooms) != 0 {
		t.Errorf("Snapshot(bob) after the deletion = %v, %v; want no rooms", rooms, err)
	}
	if rooms := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "alice")); len(rooms) != 0 {
		t.Errorf("Rooms(alice) after the deletion = %+v; want none", rooms)
	}
}

// Writers race a room's deletion, on two stores where the database has
// several: each either commits before it, its event ahead of the room's
// room:deleted events, or finds no room. Nothing of the room follows its
// deletion in the log.
func testDeletionRacesWriters(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	room := aliceAndBobIn(t, a, "r")
	start := head(t, db, a)
	var wg sync.WaitGroup
	for i := range 16 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			var err error
			switch i % 4 {
			case 0:
				_, _, err = st.PostMessage(ctx, bob, room.ID, fmt.Sprint("m", i), "")
			case 1:
				_, err = st.Join(ctx, store.User{ID: fmt.Sprint("u", i)}, room.ID)
			case 2:
				err = st.Publish(ctx, room.ID, "", "ping", nil)
			case 3:
				_, _, err = st.UpdateRoom(ctx, store.UserActor("alice"), room.ID, store.RoomChange{Topic: ptr(fmt.Sprint("t", i))})
			}
			if err != nil && !errors.Is(err, store.ErrRoomNotFound) && !errors.Is(err, store.ErrNotMember) {
				t.Errorf("writer %d racing the deletion = %v; want nil or room not found", i, err)
			}
		})
	}
	wg.Go(func() {
		if err := b.DeleteRoom(ctx, store.UserActor("alice"), room.ID); err != nil {
			t.Errorf("DeleteRoom = %v", err)
		}
	})
	wg.Wait()
	// The deletion and the writers take the room before any user's row,
	// so none deadlocks with another (which PostgreSQL breaks only after
	// a second).
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("writers racing a deletion ran %d transactions again after conflicts; want none", n)
	}
	evs := logSince(t, db, a, start)
	members := map[string]bool{"alice": true, "bob": true}
	deleted := 0
	for _, e := range evs {
		if e.Room != room.ID {
			continue
		}
		switch {
		case e.Type == event.RoomDeleted:
			deleted++
			delete(members, e.Subject)
		case deleted > 0:
			t.Fatalf("log: %s after the room's deletion", e.Type)
		case e.Type == event.MemberJoined:
			members[e.Subject] = true
		}
	}
	if len(members) != 0 {
		t.Errorf("members without a room:deleted of their own: %v", members)
	}
}

// A member's posts and edits race their own leave (another tab, another
// instance): each commits before the leave, its event ahead of the
// member:left, or is refused as not a member's. Nothing of the member
// follows their leave in the log, and no transaction deadlocks.
func testLeaveRacesOwnPosts(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	room := aliceAndBobIn(t, a, "r")
	first, _, err := a.PostMessage(ctx, bob, room.ID, "first", "")
	if err != nil {
		t.Fatalf("PostMessage = %v", err)
	}
	start := head(t, db, a)
	var wg sync.WaitGroup
	var done atomic.Int64
	for i := range 8 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			var err error
			if i%4 == 3 {
				_, _, err = st.EditMessage(ctx, store.UserActor("bob"), room.ID, first.ID, fmt.Sprint("edit", i), 0)
			} else {
				_, _, err = st.PostMessage(ctx, bob, room.ID, fmt.Sprint("m", i), "")
			}
			switch {
			case err == nil:
				done.Add(1)
			case !errors.Is(err, store.ErrNotMember) && !errors.Is(err, store.ErrMessageNotFound):
				t.Errorf("writer %d racing the leave = %v; want nil, or not a member's", i, err)
			}
		})
	}
	wg.Go(func() {
		if err := b.Leave(ctx, "bob", room.ID); err != nil {
			t.Errorf("Leave = %v", err)
		}
	})
	wg.Wait()
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("writers racing their author's leave ran %d transactions again after conflicts; want none", n)
	}
	left, changes := false, int64(0)
	for _, e := range logSince(t, db, a, start) {
		switch {
		case e.Type == event.MemberLeft && e.Subject == "bob":
			left = true
		case e.Type != event.MessageCreated && e.Type != event.MessageUpdated:
		case left:
			t.Fatalf("log: bob's %s after his member:left", e.Type)
		default:
			changes++
		}
	}
	if !left || changes != done.Load() {
		t.Errorf("log: member:left %v, %d messages and edits; want the leave and the %d writes that succeeded", left, changes, done.Load())
	}
}

// A member's read receipts race their own leave: each lands before the
// member:left or is refused as not a member's, never after it, and none
// deadlocks.
func testLeaveRacesOwnReceipts(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	for i := range 6 {
		room := aliceAndBobIn(t, a, fmt.Sprint("r", i))
		var ids []int64
		for j := range 4 {
			m := must[store.Message](t, "PostMessage")(func() (store.Message, error) {
				m, _, err := a.PostMessage(ctx, alice, room.ID, fmt.Sprint("m", j), "")
				return m, err
			}())
			ids = append(ids, m.ID)
		}
		start := head(t, db, a)
		var wg sync.WaitGroup
		for j, id := range ids {
			st := []*store.Store{a, b}[j%2]
			wg.Go(func() {
				if _, err := st.MarkRead(ctx, "bob", room.ID, id); err != nil && !errors.Is(err, store.ErrNotMember) {
					t.Errorf("round %d: MarkRead racing the leave = %v; want nil or not a member", i, err)
				}
			})
		}
		wg.Go(func() {
			if err := b.Leave(ctx, "bob", room.ID); err != nil {
				t.Errorf("round %d: Leave = %v", i, err)
			}
		})
		wg.Wait()
		left := false
		for _, e := range logSince(t, db, a, start) {
			switch {
			case e.Type == event.MemberLeft:
				left = true
			case e.Type == event.ReceiptUpdated && left:
				t.Fatalf("round %d: log: bob's receipt:updated after his member:left", i)
			}
		}
	}
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("receipts racing their user's leave ran %d transactions again after conflicts; want none", n)
	}
}

// The app's backend provisions a room again while it is being deleted,
// on another store: the provisioning either finds the room before the
// deletion or is told it was deleted. A deleted room's id is never a
// room again.
func testProvisionRacesDeletion(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	for i := range 6 {
		p := store.Provision{ID: fmt.Sprint("order-", i), Name: "Order", Members: []store.User{alice}}
		if _, _, err := a.ProvisionRoom(ctx, p); err != nil {
			t.Fatalf("ProvisionRoom = %v", err)
		}
		p.Members = []store.User{alice, bob}
		var wg sync.WaitGroup
		wg.Go(func() {
			_, created, err := a.ProvisionRoom(ctx, p)
			if created || (err != nil && !errors.Is(err, store.ErrRoomDeleted)) {
				t.Errorf("round %d: ProvisionRoom racing the deletion = created %v, %v; want found, or ErrRoomDeleted", i, created, err)
			}
		})
		wg.Go(func() {
			if err := b.DeleteRoom(ctx, store.Admin, p.ID); err != nil {
				t.Errorf("round %d: DeleteRoom = %v", i, err)
			}
		})
		wg.Wait()
		if _, _, err := a.ProvisionRoom(ctx, p); !errors.Is(err, store.ErrRoomDeleted) {
			t.Fatalf("round %d: ProvisionRoom after the deletion = %v; want ErrRoomDeleted", i, err)
		}
	}
}

// The app's backend provisions a public room with a member while that
// user joins it, on another store: the user joins once, and neither
// transaction deadlocks with the other.
func testProvisionRacesJoin(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := openTwo(t, db, store.Options{})
	for i := range 6 {
		p := store.Provision{ID: fmt.Sprint("lobby-", i), Name: "Lobby", Members: []store.User{alice}}
		if _, _, err := a.ProvisionRoom(ctx, p); err != nil {
			t.Fatalf("ProvisionRoom = %v", err)
		}
		u := store.User{ID: fmt.Sprint("u", i), Name: "U"}
		p.Members = []store.User{alice, u}
		start := head(t, db, a)
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, _, err := a.ProvisionRoom(ctx, p); err != nil {
				t.Errorf("round %d: ProvisionRoom = %v", i, err)
			}
		})
		wg.Go(func() {
			if _, err := b.Join(ctx, u, p.ID); err != nil {
				t.Errorf("round %d: Join = %v", i, err)
			}
		})
		wg.Wait()
		if got := types(logSince(t, db, a, start)); !slices.Equal(got, []string{"member:joined " + u.ID}) {
			t.Fatalf("round %d: log = %q; want %s's join, once", i, got, u.ID)
		}
	}
	if n := a.Stats().Retries + b.Stats().Retries; n != 0 {
		t.Errorf("provisionings racing joins ran %d transactions again after conflicts; want none", n)
	}
}

// The rooms list has each room's newest message and unread count, not
// counting deleted messages, the most recently active room first.
func testRoomList(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	quiet := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "quiet", false))
	busy := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "busy", false))
	must[bool](t, "Join")(st.Join(ctx, bob, quiet.ID))
	must[bool](t, "Join")(st.Join(ctx, bob, busy.ID))
	post := func(room string, text string) store.Message {
		t.Helper()
		m, _, err := st.PostMessage(ctx, alice, room, text, "")
		if err != nil {
			t.Fatalf("PostMessage = %v", err)
		}
		return m
	}
	post(quiet.ID, "q1")
	post(busy.ID, "b1")
	last := post(busy.ID, "b2")
	if _, _, err := st.DeleteMessage(ctx, store.UserActor("alice"), busy.ID, last.ID); err != nil {
		t.Fatalf("DeleteMessage = %v", err)
	}
	rooms := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "bob"))
	var got []string
	for _, r := range rooms {
		text := ""
		if r.LastMessage != nil {
			text = r.LastMessage.Text
		}
		got = append(got, fmt.Sprintf("%s %s %d", r.Name, text, r.Unread))
	}
	if want := []string{"busy b1 1", "quiet q1 1"}; !slices.Equal(got, want) {
		t.Errorf("Rooms(bob) = %q; want %q", got, want)
	}
	post(quiet.ID, "q2")
	if rooms := must[[]store.RoomSummary](t, "Rooms")(st.Rooms(ctx, "bob")); rooms[0].ID != quiet.ID {
		t.Errorf("after a message in quiet, the first room is %s; want quiet", rooms[0].Name)
	}
}

// The backend provisions a room by id: again with the same settings it
// gets the same room, with any new members added; with other settings, a
// conflict. Without an owner, no user has an owner's rights.
func testProvision(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	start := head(t, db, st)
	p := store.Provision{ID: "order-1", Name: "Order 1", Private: true, Members: []store.User{alice}}
	room, created, err := st.ProvisionRoom(ctx, p)
	if err != nil || !created || room.ID != "order-1" || room.Owner != store.System || !room.Private {
		t.Fatalf("ProvisionRoom = %+v, %v, %v; want order-1 created, private, owned by the system", room, created, err)
	}
	p.Members = []store.User{alice, bob}
	again, created, err := st.ProvisionRoom(ctx, p)
	if err != nil || created || again != room {
		t.Fatalf("ProvisionRoom again = %+v, %v, %v; want %+v, not created", again, created, err, room)
	}
	if got := types(logSince(t, db, st, start)); !slices.Equal(got, []string{"member:joined alice", "member:joined bob"}) {
		t.Errorf("log of the provisioning = %q; want alice's and bob's joins", got)
	}
	for _, change := range []func(*store.Provision){
		func(p *store.Provision) { p.Name = "Order one" },
		func(p *store.Provision) { p.Private = false },
		func(p *store.Provision) { p.Topic = "refund" },
		func(p *store.Provision) { p.Owner = &alice },
	} {
		q := p
		change(&q)
		if _, _, err := st.ProvisionRoom(ctx, q); !errors.Is(err, store.ErrRoomConflict) {
			t.Errorf("ProvisionRoom(%+v) over %+v = %v; want ErrRoomConflict", q, p, err)
		}
	}
	if _, err := st.AddMember(ctx, store.UserActor("alice"), room.ID, carol); !errors.Is(err, store.ErrNotOwner) {
		t.Errorf("a member adding to the system's room = %v; want ErrNotOwner", err)
	}
	owned, _, err := st.ProvisionRoom(ctx, store.Provision{Name: "support", Owner: &bob})
	if err != nil || owned.Owner != "bob" || !strings.HasPrefix(owned.ID, "r_") {
		t.Fatalf("ProvisionRoom with an owner and no id = %+v, %v", owned, err)
	}
	if err := st.CheckMember(ctx, "bob", owned.ID); err != nil {
		t.Errorf("the owner of a provisioned room: CheckMember = %v; want a member", err)
	}
	sys, _, err := st.PostMessage(ctx, store.User{ID: store.System}, room.ID, "Order shipped", "")
	if err != nil || !sys.System || sys.Author != store.System {
		t.Errorf("a system message = %+v, %v; want system", sys, err)
	}
	if err := st.RemoveMember(ctx, store.Admin, room.ID, "alice"); err != nil {
		t.Errorf("the backend removing a member = %v", err)
	}
}

// Instances race to provision one id: one room, created once.
func testConcurrentProvision(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	created, _ := race(t, a, b, "ProvisionRoom", func(_ int, st *store.Store) (struct{}, bool, error) {
		_, c, err := st.ProvisionRoom(ctx, store.Provision{ID: "shared", Name: "Shared", Members: []store.User{alice}})
		return struct{}{}, c, err
	})
	if created != 1 {
		t.Fatalf("8 racing provisions: %d created; want 1", created)
	}
	if got := types(logSince(t, db, a, 0)); !slices.Equal(got, []string{"member:joined alice"}) {
		t.Errorf("log = %q; want alice's one join", got)
	}
}

// Custom events for a room are the room's; for a user, about that user
// alone. A disconnect is a control event about its user, and its cut-off
// is kept, never moving back.
func testPublishAndDisconnect(t *testing.T, db Database) {
	ctx := context.Background()
	st := db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(st.CreateRoom(ctx, alice, "r", false))
	start := head(t, db, st)
	if err := st.Publish(ctx, room.ID, "", "order.updated", []byte(`{"status":"shipped"}`)); err != nil {
		t.Fatalf("Publish(room) = %v", err)
	}
	if err := st.Publish(ctx, "", "bob", "nudge", nil); err != nil {
		t.Fatalf("Publish(user) = %v", err)
	}
	if err := st.Publish(ctx, "r_nope", "", "x", nil); !errors.Is(err, store.ErrRoomNotFound) {
		t.Errorf("Publish(unknown room) = %v; want ErrRoomNotFound", err)
	}
	cut := time.UnixMilli(time.Now().UnixMilli())
	if err := st.Disconnect(ctx, "bob", cut); err != nil {
		t.Fatalf("Disconnect = %v", err)
	}
	if err := st.Disconnect(ctx, "bob", cut.Add(-time.Hour)); err != nil {
		t.Fatalf("Disconnect = %v", err)
	}
	evs := logSince(t, db, st, start)
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s \"%v\" %q %s", e.Type, e.Room == room.ID, e.Subject, e.Data))
	}
	want := []string{
		fmt.Sprintf(`custom "true" "" {"event":"order.updated","data":{"status":"shipped"},"room":%q}`, room.ID),
		`custom "false" "bob" {"event":"nudge","data":null}`,
		fmt.Sprintf(`user:disconnected "false" "bob" {"user":"bob","revoke_before":%d}`, cut.UnixMilli()),
		fmt.Sprintf(`user:disconnected "false" "bob" {"user":"bob","revoke_before":%d}`, cut.Add(-time.Hour).UnixMilli()),
	}
	if !slices.Equal(got, want) {
		t.Errorf("log = %q; want %q", got, want)
	}
	if mine := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: start, UpTo: 1 << 62, Subject: "bob", Limit: 10})); len(mine) != 3 {
		t.Errorf("Range(subject bob) = %d events; want the 3 about bob", len(mine))
	}
	if inRoom := must[[]event.Event](t, "Range")(st.Range(ctx, event.Query{After: start, UpTo: 1 << 62, Rooms: []string{room.ID}, Limit: 10})); len(inRoom) != 1 {
		t.Errorf("Range(room) = %d events; want the room's custom event alone", len(inRoom))
	}
	if before := must[time.Time](t, "RevokedBefore")(st.RevokedBefore(ctx, "bob")); !before.Equal(cut) {
		t.Errorf("RevokedBefore(bob) = %v; want %v, the later cut-off", before, cut)
	}
	if before := must[time.Time](t, "RevokedBefore")(st.RevokedBefore(ctx, "alice")); !before.IsZero() {
		t.Errorf("RevokedBefore(alice) = %v; want none", before)
	}
	if revs := must[map[string]time.Time](t, "Revocations")(st.Revocations(ctx)); len(revs) != 1 || !revs["bob"].Equal(cut) {
		t.Errorf("Revocations = %v; want bob's alone", revs)
	}
}

// A write that carries a request id records it with its change: a second
// one with the id changes nothing; a write that fails records nothing.
func testRequests(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, alice, "r", false))
	start := head(t, db, a)
	req := store.WithRequest(ctx, store.Request{ID: "req-1", Fingerprint: "f1"})
	if err := a.Publish(req, "r_nope", "", "x", nil); !errors.Is(err, store.ErrRoomNotFound) {
		t.Fatalf("Publish(unknown room) = %v", err)
	}
	if _, err := a.FindAnswer(ctx, "req-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FindAnswer after a failed request = %v; want ErrNotFound: nothing recorded", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	for i := range 6 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			err := st.Publish(req, room.ID, "", "once", nil)
			switch {
			case err == nil:
				mu.Lock()
				done++
				mu.Unlock()
			case !errors.Is(err, store.ErrRequestSeen):
				t.Errorf("Publish with a request id = %v", err)
			}
		})
	}
	wg.Wait()
	if done != 1 {
		t.Fatalf("6 racing requests with one id: %d done; want 1", done)
	}
	if got := logSince(t, db, a, start); len(got) != 1 {
		t.Errorf("log = %d events; want 1", len(got))
	}
	ans, err := b.FindAnswer(ctx, "req-1")
	if err != nil || ans.Fingerprint != "f1" || ans.Status != 0 {
		t.Fatalf("FindAnswer before the answer = %+v, %v; want f1, no status", ans, err)
	}
	if err := a.SaveAnswer(req, "req-1", 204, []byte("{}")); err != nil {
		t.Fatalf("SaveAnswer = %v", err)
	}
	if ans, err := b.FindAnswer(ctx, "req-1"); err != nil || ans.Status != 204 || string(ans.Body) != "{}" {
		t.Errorf("FindAnswer = %+v, %v; want 204 {}", ans, err)
	}
}
