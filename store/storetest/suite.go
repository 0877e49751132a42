package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
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

// PostgresDatabase is a new database on the package's shared PostgreSQL server.
func PostgresDatabase(t *testing.T) Database { return postgresDB{DatabaseURL(t)} }

type postgresDB struct{ url string }

func (d postgresDB) Open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	opts.URL = d.url
	return open(t, opts)
}

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
		{"SpentTickets", testSpentTickets},
		{"ReopenKeepsEpochAndLog", testReopen},
		{"RangeOverManyRooms", testRangeOverManyRooms},
		{"Trim", testTrim},
		{"Retention", testRetention},
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
		{"add by non-owner", func() error { _, err := st.AddMember(ctx, "bob", priv.ID, bob); return err }, store.ErrNotOwner},
		{"add by owner", func() error { _, err := st.AddMember(ctx, "alice", priv.ID, bob); return err }, nil},
		{"post as member", func() error { _, _, err := st.PostMessage(ctx, bob, priv.ID, "hi", ""); return err }, nil},
		{"remove owner", func() error { return st.RemoveMember(ctx, "alice", priv.ID, "alice") }, store.ErrOwnerRemoval},
		{"remove member", func() error { return st.RemoveMember(ctx, "alice", priv.ID, "bob") }, nil},
		{"post after removal", func() error { _, _, err := st.PostMessage(ctx, bob, priv.ID, "hi", ""); return err }, store.ErrNotMember},
		{"remove again", func() error { return st.RemoveMember(ctx, "alice", priv.ID, "bob") }, store.ErrMemberNotFound},
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

// Retries of one post racing each other (two instances, say) create it
// once and announce it once.
func testConcurrentRetries(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, alice, "r", false))
	db.Sync(t, a)
	start := must[int64](t, "Head")(a.Head(ctx))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		ids     = map[int64]bool{}
	)
	for i := range 8 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			msg, c, err := st.PostMessage(ctx, alice, room.ID, "once", "retry-1")
			if err != nil {
				t.Errorf("PostMessage = %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[msg.ID] = true
			if c {
				created++
			}
		})
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Fatalf("8 racing retries: %d created, ids %v; want 1 created, one id", created, ids)
	}
	db.Sync(t, a)
	evs := must[[]event.Event](t, "Range")(a.Range(ctx, event.Query{After: start, UpTo: 1 << 62, Limit: 100}))
	if len(evs) != 1 {
		t.Fatalf("racing retries announced %d events; want 1", len(evs))
	}
}

// Joins of one user racing each other add them once, with one event.
func testConcurrentJoins(t *testing.T, db Database) {
	ctx := context.Background()
	a, b := db.Open(t, store.Options{}), db.Open(t, store.Options{})
	room := must[store.Room](t, "CreateRoom")(a.CreateRoom(ctx, alice, "r", false))
	db.Sync(t, a)
	start := must[int64](t, "Head")(a.Head(ctx))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		joined int
	)
	for i := range 8 {
		st := []*store.Store{a, b}[i%2]
		wg.Go(func() {
			j, err := st.Join(ctx, bob, room.ID)
			if err != nil {
				t.Errorf("Join = %v", err)
				return
			}
			if j {
				mu.Lock()
				joined++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	db.Sync(t, a)
	evs := must[[]event.Event](t, "Range")(a.Range(ctx, event.Query{After: start, UpTo: 1 << 62, Limit: 100}))
	if joined != 1 || len(evs) != 1 || evs[0].Type != event.MemberJoined {
		t.Fatalf("8 racing joins: %d reported joined, log %d events; want 1 and one member:joined", joined, len(evs))
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
