package store_test

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

func open(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{
		Path: filepath.Join(t.TempDir(), "herald.db"), Synchronous: "NORMAL",
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var (
	alice = store.User{ID: "alice", Name: "Alice"}
	bob   = store.User{ID: "bob", Name: "Bob"}
)

func TestRoomsAndMembership(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	pub, err := st.CreateRoom(ctx, alice, "public", false)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := st.CreateRoom(ctx, alice, "private", true)
	if err != nil {
		t.Fatal(err)
	}
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
	}
	for _, tt := range tests {
		if err := tt.do(); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v; want %v", tt.name, err, tt.want)
		}
	}
	if !errors.Is(store.ErrNotMember, store.ErrForbidden) || !errors.Is(store.ErrRoomNotFound, store.ErrNotFound) {
		t.Errorf("client errors must unwrap to their kinds")
	}
}

// TestLogMatchesChanges checks that every committed change is announced
// once, in order, on the live feed and in the table, and that failed
// requests in a shared batch announce nothing.
func TestLogMatchesChanges(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	room, err := st.CreateRoom(ctx, alice, "r", false)
	if err != nil {
		t.Fatalf("CreateRoom = %v", err)
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target, want := room.ID, error(nil)
			if i%4 == 0 {
				target, want = "r_missing", store.ErrRoomNotFound // fails inside the batch
			}
			if _, _, err := st.PostMessage(ctx, alice, target, fmt.Sprint("m", i), ""); !errors.Is(err, want) {
				t.Errorf("PostMessage(%s) = %v; want %v", target, err, want)
			}
		}()
	}
	wg.Wait()
	got, err := st.Read(ctx, 0, 1000)
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	if len(got) != 1+48 {
		t.Fatalf("announced %d events; want 49 (one join, 48 messages)", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("positions not dense and increasing: %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	head, err := st.Head(ctx)
	if err != nil || head != got[len(got)-1].Seq {
		t.Errorf("Head = %d, %v; want %d", head, err, got[len(got)-1].Seq)
	}
	evs, err := st.Range(ctx, event.Query{After: 0, UpTo: head, Limit: 1000})
	if err != nil || len(evs) != len(got) {
		t.Fatalf("Range = %d, %v; want %d", len(evs), err, len(got))
	}
	writes, commits := st.Stats()
	t.Logf("%d writes in %d commits", writes, commits)
}

func TestIdempotentPost(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	room, err := st.CreateRoom(ctx, alice, "r", false)
	if err != nil {
		t.Fatalf("CreateRoom = %v", err)
	}
	if _, err := st.Join(ctx, bob, room.ID); err != nil {
		t.Fatalf("Join(bob) = %v", err)
	}
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

func TestSnapshotAndReplayQuery(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	a, err := st.CreateRoom(ctx, alice, "a", false)
	if err != nil {
		t.Fatalf("CreateRoom(a) = %v", err)
	}
	b, err := st.CreateRoom(ctx, alice, "b", false)
	if err != nil {
		t.Fatalf("CreateRoom(b) = %v", err)
	}
	if _, err := st.Join(ctx, bob, a.ID); err != nil {
		t.Fatalf("Join(bob, a) = %v", err)
	}
	rooms0, head0, err := st.Snapshot(ctx, "bob")
	if err != nil || len(rooms0) != 1 || rooms0[0] != a.ID || head0 == 0 {
		t.Fatalf("Snapshot(bob) = %v, %d, %v; want room a at a position", rooms0, head0, err)
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
	rooms, head, err := st.Snapshot(ctx, "bob")
	if err != nil || len(rooms) != 0 || head != head0+3 {
		t.Fatalf("Snapshot(bob) = %v, %d, %v; want no rooms at %d", rooms, head, err, head0+3)
	}
	mine, err := st.Range(ctx, event.Query{After: head0, UpTo: head, Subject: "bob", Limit: 10})
	if err != nil || len(mine) != 1 || mine[0].Type != event.MemberLeft {
		t.Fatalf("bob's member events = %+v, %v; want one member:left", mine, err)
	}
	inA, err := st.Range(ctx, event.Query{After: head0, UpTo: head, Rooms: []string{a.ID}, Limit: 10})
	if err != nil || len(inA) != 2 {
		t.Fatalf("events of room a = %d, %v; want 2", len(inA), err)
	}
	none, err := st.Range(ctx, event.Query{After: 0, UpTo: head, Rooms: []string{}, Limit: 10})
	if err != nil || len(none) != 0 {
		t.Fatalf("events of no rooms = %d, %v; want 0", len(none), err)
	}
}

func TestReopenKeepsEpochAndLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herald.db")
	st, err := store.Open(ctx, store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRoom(ctx, alice, "r", false); err != nil {
		t.Fatalf("CreateRoom = %v", err)
	}
	epoch := st.Epoch()
	head, err := st.Head(ctx)
	if err != nil || head == 0 {
		t.Fatalf("Head = %d, %v; want a position", head, err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	st, err = store.Open(ctx, store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	head2, err := st.Head(ctx)
	if err != nil || st.Epoch() != epoch || head2 != head {
		t.Errorf("after reopen epoch, head = %s, %d, %v; want %s, %d", st.Epoch(), head2, err, epoch, head)
	}
	other, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "other.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if other.Epoch() == epoch {
		t.Errorf("a new database reused epoch %s", epoch)
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := st.CreateRoom(ctx, alice, "late", false); !errors.Is(err, store.ErrClosed) {
		t.Errorf("write after Close = %v; want ErrClosed", err)
	}
}

// TestRetention checks that old events are pruned and that the pruned mark
// tells replays where the log now starts.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "h.db"), Retention: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	room, err := st.CreateRoom(ctx, alice, "r", false)
	if err != nil {
		t.Fatalf("CreateRoom = %v", err)
	}
	if _, _, err := st.PostMessage(ctx, alice, room.ID, "old", ""); err != nil {
		t.Fatalf("PostMessage = %v", err)
	}
	head, err := st.Head(ctx)
	if err != nil || head == 0 {
		t.Fatalf("Head = %d, %v; want a position", head, err)
	}
	// The mark rises before the rows go (so that a concurrent replay never
	// misses a deletion): wait for both.
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := st.Range(ctx, event.Query{After: 0, UpTo: head, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if st.TrimmedThrough() >= head && len(evs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s TrimmedThrough = %d, %d events left; want %d, none", st.TrimmedThrough(), len(evs), head)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h, err := st.Head(ctx); err != nil || h != head {
		t.Errorf("Head after pruning = %d, %v; want %d (positions are never reused)", h, err, head)
	}
	// Messages are history, not log: they stay.
	msgs, _, err := st.Messages(ctx, "alice", room.ID, store.HistoryQuery{Limit: 10})
	if err != nil || len(msgs) != 1 {
		t.Errorf("history after pruning = %d, %v; want 1 message", len(msgs), err)
	}
}

// BenchmarkPostMessage_64Writers measures the store alone: 64 goroutines
// posting durable messages (synchronous=FULL) through the group-committing
// writer.
func BenchmarkPostMessage_64Writers(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(b.TempDir(), "h.db"), Synchronous: "FULL"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	room, err := st.CreateRoom(ctx, alice, "bench", false)
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := st.PostMessage(ctx, alice, room.ID, "durable hello", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	writes, commits := st.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
	b.ReportMetric(float64(writes)/float64(max(commits, 1)), "writes/commit")
}

// BenchmarkSnapshot measures what every stream reads as it opens: a user's
// rooms and the log head, in one statement.
func BenchmarkSnapshot(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(b.TempDir(), "h.db"), Synchronous: "NORMAL"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := range 3 {
		room, err := st.CreateRoom(ctx, alice, fmt.Sprint("r", i), false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Join(ctx, bob, room.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if rooms, _, err := st.Snapshot(ctx, bob.ID); err != nil || len(rooms) != 3 {
			b.Fatalf("Snapshot = %v, %v; want 3 rooms", rooms, err)
		}
	}
}
