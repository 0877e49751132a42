package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
)

// A database restored from a backup comes back with a shorter log under
// the same epoch. The positions its clients hold would then name other
// events: a client that resumes after the log grew past its position
// again must get resync, not silently skip what was written since.
func TestRestoredBackupGetsNewEpoch(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "restored", false)
	sc.join("bob", room)
	bob := sc.open("bob", "")
	for _, text := range sseNumbered("before the backup", 3) {
		sc.say("alice", room, text)
	}
	sseRead(t, bob, 3)

	// A backup, as sqlite3's .backup or VACUUM INTO makes it, while the
	// server runs.
	backup := filepath.Join(t.TempDir(), "backup.db")
	db, err := sql.Open("sqlite3", "file:"+sc.cfg.dbPath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`VACUUM INTO ?`, backup); err != nil {
		t.Fatalf("backup: %v", err)
	}
	db.Close()

	for _, text := range sseNumbered("after the backup", 3) {
		sc.say("alice", room, text)
	}
	sseRead(t, bob, 3)
	lastID := bob.LastID

	// The database alone is restored, as an operator restores it.
	sc.testServer.stop()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(sc.cfg.dbPath() + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sc.cfg.dbPath(), data, 0o600); err != nil {
		t.Fatal(err)
	}
	sc.restartServer()

	// The restored log grows past bob's position again, with new events.
	for _, text := range sseNumbered("after the restore", 5) {
		sc.say("alice", room, text)
	}
	bob = sc.open("bob", lastID)
	var resync struct{ Reason string }
	f := bob.ExpectData("resync", &resync)
	if resync.Reason != "unknown_epoch" {
		t.Fatalf("resync after a restore = %+v reason %q; want reason unknown_epoch", f, resync.Reason)
	}
	if sseEpoch(bob.LastID) == sseEpoch(lastID) {
		t.Errorf("epoch after the restore = %q; want a new one", sseEpoch(bob.LastID))
	}
}
