package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The mark file reads back what was recorded last, a shorter epoch or
// position over a longer one included, and a new file reads as nothing.
func TestMarkFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db"+markSuffix)
	m, err := openMark(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if epoch, pos, ok := m.read(); ok {
		t.Fatalf("a new mark file reads %q %d; want nothing", epoch, pos)
	}
	for _, rec := range []struct {
		epoch string
		pos   int64
	}{{"longepochname", 123456789}, {"abc", 7}, {"abc", 0}} {
		if err := m.record(rec.epoch, rec.pos); err != nil {
			t.Fatal(err)
		}
		if epoch, pos, ok := m.read(); !ok || epoch != rec.epoch || pos != rec.pos {
			t.Fatalf("mark after record(%q, %d) = %q %d %v; want it back", rec.epoch, rec.pos, epoch, pos, ok)
		}
	}
}

// TestRestoredDatabaseGetsNewEpoch: a store reopened as it was keeps its
// epoch; one whose database file was replaced by an older copy (the mark
// file left beside it ahead of its log) gets a new one, and keeps that.
func TestRestoredDatabaseGetsNewEpoch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herald.db")
	opts := Options{Path: path, Synchronous: "NORMAL"}
	var room string
	// reopen opens the store, posts n messages in its one room, and
	// closes it, returning its epoch and head.
	reopen := func(n int) (epoch string, head int64) {
		t.Helper()
		st, err := Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		alice := User{ID: "alice"}
		if room == "" {
			r, err := st.CreateRoom(ctx, alice, "r", false)
			if err != nil {
				t.Fatal(err)
			}
			room = r.ID
		}
		for range n {
			if _, _, err := st.PostMessage(ctx, alice, room, "m", ""); err != nil {
				t.Fatal(err)
			}
		}
		if head, err = st.Head(ctx); err != nil {
			t.Fatal(err)
		}
		return st.Epoch(), head
	}

	first, _ := reopen(2)
	backup, err := os.ReadFile(path) // closed: the WAL is in the file
	if err != nil {
		t.Fatal(err)
	}
	if epoch, _ := reopen(3); epoch != first {
		t.Fatalf("epoch after a plain reopen = %q; want %q kept", epoch, first)
	}
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	restored, head := reopen(0)
	if restored == first {
		t.Fatalf("epoch after restoring an older database (head %d) = %q; want a new one", head, restored)
	}
	if epoch, _ := reopen(1); epoch != restored {
		t.Fatalf("epoch after reopening the restored database = %q; want %q kept", epoch, restored)
	}
}

// BenchmarkMarkRecord is the cost the mark adds to each commit.
func BenchmarkMarkRecord(b *testing.B) {
	m, err := openMark(filepath.Join(b.TempDir(), "herald.db"+markSuffix))
	if err != nil {
		b.Fatal(err)
	}
	defer m.close()
	b.ReportAllocs()
	var pos int64
	for b.Loop() {
		pos++
		if err := m.record("abcdefgh", pos); err != nil {
			b.Fatal(err)
		}
	}
}
