package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCheckpointerCopiesTheWAL: committed pages reach the database file
// once the writer pauses, while the WAL holds far fewer than the 1,000
// pages at which SQLite would copy them inside a commit.
func TestCheckpointerCopiesTheWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herald.db")
	st, room := openWithRoom(t, Options{Path: path})
	for i := range 50 {
		if _, _, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, "hello", ""); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	var pages, pageSize int64
	if err := st.r.GetContext(ctx, &pages, `PRAGMA page_count`); err != nil {
		t.Fatal(err)
	}
	if err := st.r.GetContext(ctx, &pageSize, `PRAGMA page_size`); err != nil {
		t.Fatal(err)
	}
	want := pages * pageSize
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		db, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if db.Size() >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file holds %d bytes after 20s; want the %d of its %d pages: the WAL was not checkpointed",
				db.Size(), want, pages)
		}
	}
	wal, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if frames := wal.Size() / (pageSize + 24); frames >= 1000 {
		t.Fatalf("the WAL holds %d frames: SQLite's own checkpoint may have copied them", frames)
	}
}

// TestCloseLeavesTheDatabaseWhole: after each clean stop the database file
// holds every commit and no WAL is left with any, so that a copy of the
// file alone, taken after a stop, is a whole backup. SQLite's own
// checkpoint as its last connection closes left the WAL behind about once
// in forty stops.
func TestCloseLeavesTheDatabaseWhole(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.db")
	for i := range 20 {
		st, err := Open(ctx, Options{Path: path, Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateRoom(ctx, User{ID: "alice"}, fmt.Sprint("r", i), false); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
			t.Fatalf("stop %d left a WAL of %d bytes", i+1, fi.Size())
		}
		// The file alone, elsewhere, has every room.
		copied := filepath.Join(dir, fmt.Sprint("copy", i, ".db"))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copied, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cp, err := Open(ctx, Options{Path: copied})
		if err != nil {
			t.Fatal(err)
		}
		rooms, err := cp.Rooms(ctx, "alice")
		cp.Close()
		if err != nil || len(rooms) != i+1 {
			t.Fatalf("a copy of the file after stop %d: %d rooms, %v; want %d", i+1, len(rooms), err, i+1)
		}
	}
}
