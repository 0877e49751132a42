package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The mark file reads back what was recorded last, a shorter epoch or
// position over a longer one included, whether the store was running and
// on which boot; a new file reads as nothing, and an older server's file
// (epoch and position only) as stopped.
func TestMarkFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db"+markSuffix)
	m, err := openMark(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if rec, ok := m.read(); ok {
		t.Fatalf("a new mark file reads %+v; want nothing", rec)
	}
	if err := m.setRunning(true, "first", 5); err != nil {
		t.Fatal(err)
	}
	for _, want := range []mark{
		{"longepochname", 123456789, bootID(), true}, {"abc", 7, bootID(), true}, {"abc", 0, bootID(), true},
	} {
		if err := m.record(want.epoch, want.pos); err != nil {
			t.Fatal(err)
		}
		if rec, ok := m.read(); !ok || rec != want {
			t.Fatalf("mark after record(%q, %d) = %+v %v; want %+v", want.epoch, want.pos, rec, ok, want)
		}
	}
	if err := m.setRunning(false, "abc", 9); err != nil {
		t.Fatal(err)
	}
	if rec, ok := m.read(); !ok || rec != (mark{"abc", 9, bootID(), false}) {
		t.Fatalf("mark after a clean stop = %+v %v; want stopped at 9", rec, ok)
	}
	if _, err := m.f.WriteAt([]byte(fmt.Sprintf("%-16s %020d\n%60s", "old", 3, "")), 0); err != nil {
		t.Fatal(err)
	}
	if rec, ok := m.read(); !ok || rec != (mark{epoch: "old", pos: 3}) {
		t.Fatalf("an older server's mark = %+v %v; want epoch and position, stopped", rec, ok)
	}
}

// A server that was running when the machine went down may have let
// streams hear of commits that the power loss took back: the log gets a
// new epoch, once. One that stopped cleanly, or whose process alone
// crashed (the same boot: what it wrote is in the OS's cache), keeps its
// epoch.
func TestPowerLossGetsNewEpoch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herald.db")
	opts := Options{Path: path, Synchronous: "FULL"}
	// reopen opens the store, posts a message, and closes it, first
	// overwriting the mark file with line when it is not empty; it
	// returns the epoch the store had.
	reopen := func(line string) string {
		t.Helper()
		if line != "" {
			if err := os.WriteFile(path+markSuffix, []byte(line), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		st, err := Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			m, err := openMark(path + markSuffix)
			if err != nil {
				t.Fatal(err)
			}
			defer m.close()
			if rec, _ := m.read(); rec.running || rec.epoch != st.Epoch() {
				t.Fatalf("mark after a clean stop = %+v; want stopped, epoch %q", rec, st.Epoch())
			}
		}()
		m, _ := st.mark.read()
		if !m.running || m.boot != bootID() {
			t.Fatalf("mark of an open store = %+v; want running on boot %q", m, bootID())
		}
		if _, err := st.CreateRoom(ctx, User{ID: "alice"}, "r", false); err != nil {
			t.Fatal(err)
		}
		return st.Epoch()
	}
	// crashed is the mark file of a server that was running on boot.
	crashed := func(epoch, boot string) string {
		head := readHead(t, path)
		return fmt.Sprintf(markFormat, epoch, head, boot, "running")
	}

	first := reopen("")
	if epoch := reopen(""); epoch != first {
		t.Fatalf("epoch after a clean stop = %q; want %q kept", epoch, first)
	}
	if epoch := reopen(crashed(first, bootID())); epoch != first {
		t.Fatalf("epoch after the process crashed = %q; want %q kept", epoch, first)
	}
	second := reopen(crashed(first, "another-boot"))
	if second == first {
		t.Fatal("epoch after the machine went down under a running server was kept; want a new one")
	}
	if epoch := reopen(""); epoch != second {
		t.Fatalf("epoch after reopening = %q; want %q kept", epoch, second)
	}
	// The power loss also took back the commit that gave the log its new
	// epoch: the mark names that epoch, the log still the one before.
	if epoch := reopen(crashed("lostepoch", "another-boot")); epoch == second {
		t.Fatal("epoch after a power loss that took back a new epoch was kept; want another")
	}
}

// readHead is the log's head in the closed database at path.
func readHead(t *testing.T, path string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var head int64
	if err := db.QueryRow(sqliteHeadSQL).Scan(&head); err != nil {
		t.Fatal(err)
	}
	return head
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
