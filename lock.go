package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// errLocked is the lock's answer when another process holds it.
var errLocked = errors.New("locked")

// lockDatabase takes the lock of an embedded database, a file beside it
// (DATA_DIR/herald.db.lock by default), for as long as the server runs.
// Two servers on one database would each dispatch only the events they
// wrote themselves: each one's streams would miss the other's, live and on
// replay, with nothing to say so. The second one is refused instead.
//
// The lock is the kernel's (flock), so it is released when the process
// exits, however it exits: a crashed server leaves no lock behind. The
// file holds the process id of its holder, for the message.
func lockDatabase(cfg Config) (unlock func(), err error) {
	db := cfg.dbPath()
	path := db + ".lock"
	if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the database's lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "process " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("another herald serves the database %s (%s holds its lock, %s): two servers on one database would each miss the other's events; stop that one, or give this one another --data-dir (%s) or --database-path (%s)",
				absDir(db), holder, absDir(path), envName("data-dir"), envName("database-path"))
		}
		return nil, fmt.Errorf("lock the database %s: %w", absDir(db), err)
	}
	// Whoever reads the file learns who holds the lock; a write that
	// fails only makes the other server's message vaguer.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	// The file stays: removing it would let a third server lock a new
	// file of the same name while the second still waits on the old one.
	return func() { f.Close() }, nil
}
