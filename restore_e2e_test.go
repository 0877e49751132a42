package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"sync"
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

// TestCrashLosesNothing kills an embedded server in the middle of a burst
// and starts it again on its data dir, with the default FULL, under which
// streams hear of a commit before its fsync. A crash of the process alone
// takes back nothing it wrote: every post answered 201 reaches bob once,
// what he saw before the crash is not told again, and he resumes from his
// Last-Event-ID without resync, in the same epoch.
func TestCrashLosesNothing(t *testing.T) {
	env := map[string]string{"HERALD_DATA_DIR": t.TempDir(), "HERALD_SQLITE_SYNC": "FULL"}
	var mu sync.Mutex
	p := startProc(t, env)
	urls := func() []string { mu.Lock(); defer mu.Unlock(); return []string{p.URL} }
	sc := &streamScene{testServer: &testServer{t: t, URL: p.URL, secret: []byte(testSecret)}, t: t}
	room := sc.room("alice", "crash", false)
	sc.join("bob", room)
	bob := &follower{t: t, token: sc.tok("bob"), room: room, urls: urls}
	bob.open()

	// A second poster keeps commits in flight while the process dies.
	texts := sseNumbered("m", 300)
	other, otherDone := postAll(t, urls, sc.tok("alice"), room, sseNumbered("other", 300), -1, nil)
	posted, done := postAll(t, urls, sc.tok("alice"), room, texts, 100, func() {
		mu.Lock()
		defer mu.Unlock()
		p.kill()
		var err error
		if p, err = spawnProc(t, env); err != nil {
			t.Errorf("herald serve after the crash: %v", err)
		}
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}
	posted.ok = append(posted.ok, other.ok...)
	posted.unknown = append(posted.unknown, other.unknown...)
	bob.readUntil(posted.ok)
	bob.check(posted)
	if bob.reopens < 2 {
		t.Errorf("bob's stream never saw the crash (%d opens)", bob.reopens)
	}
	if first, last := sseEpoch(bob.ids[0]), sseEpoch(bob.ids[len(bob.ids)-1]); first != last {
		t.Errorf("epoch after the crash = %q; want %q kept", last, first)
	}
}
