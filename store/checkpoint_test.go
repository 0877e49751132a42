package store

import (
	"context"
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
