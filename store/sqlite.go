package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// Everything specific to SQLite lives in this file: connection settings,
// pragmas, the migration files, the group-committing writer with its
// savepoints and membership cache, its checkpointer, and where the log's
// head is kept.

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// sqliteDB is the SQLite dialect. One goroutine, the writer, owns the
// only write connection: it takes whatever requests are queued (up to
// MaxBatch), runs each in its own savepoint of one IMMEDIATE transaction
// and commits once, so that under load many requests share one fsync.
// Being the only writer, it can also remember the rooms and memberships it
// has read.
type sqliteDB struct {
	w        *sqlx.DB   // exactly one connection: the writer's
	wc       *sqlx.Conn // that connection, held by the writer goroutine
	stmts    *stmtCache // prepared on wc; used only by the writer goroutine
	cache    *memberCache
	maxBatch int
	// onCommit receives each committed transaction's events, in log order,
	// from the writer goroutine. It must not block.
	onCommit func([]event.Event)

	reqs    chan *writeReq
	closeMu sync.RWMutex // held for reading while a request is queued
	closed  bool         // guarded by closeMu
	stop    chan struct{}
	done    chan struct{} // closed when the writer exits

	// ck is the checkpointer's own connection, so that it never waits for
	// the writer's. The writer tells it of each commit through committed,
	// and when its last one ended in lastCommit (time since opened, read
	// from the monotonic clock).
	ck         *sql.DB
	committed  chan struct{}
	opened     time.Time
	lastCommit atomic.Int64
	ckDone     chan struct{} // closed when the checkpointer exits
	logger     *slog.Logger

	commits atomic.Int64
	writes  atomic.Int64

	// syncWAL, with FULL, makes the commits written so far durable: the
	// writer calls it after publishing a commit's events and before
	// answering its requests, so streams hear of a commit as soon as it
	// is written while a 201 still waits for the disk. nil with NORMAL
	// (nothing waits for the disk) and EXTRA (SQLite syncs inside COMMIT).
	syncWAL func() error
	// wal is the write-ahead log, opened by syncWALFile at its first call,
	// which close makes sure is on disk.
	walPath string
	wal     *os.File

	// locked is set by the writer goroutine, its only user, while another
	// process holds the database's write lock: each transaction then
	// waits for it only briefly, so that the requests queued meanwhile are
	// answered (503) at once rather than a busy timeout each.
	locked bool
}

// How long the writer waits for another process's write lock (ms): at
// first, and while it is known to be held.
const (
	busyTimeout       = 1000
	busyTimeoutLocked = 50
)

var _ dialect = (*sqliteDB)(nil)

// openSQLite opens the writer (one connection, transactions BEGIN IMMEDIATE)
// and the reader pool on the same WAL-mode file, migrates, and starts the
// writer.
func openSQLite(ctx context.Context, opts Options, onCommit func([]event.Event)) (*sqliteDB, *sqlx.DB, error) {
	if dir := filepath.Dir(opts.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("store: create data dir: %w", err)
		}
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "5000")
	q.Set("_foreign_keys", "on")
	// With FULL the writer fsyncs the WAL itself, after the commit's events
	// are published (syncWAL): SQLite's part of the commit is NORMAL's.
	sync := opts.Synchronous
	if sync == "FULL" {
		sync = "NORMAL"
	}
	q.Set("_synchronous", sync)
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	wq.Set("_txlock", "immediate")
	// Only another process takes the write lock from the writer, which is
	// this process's only writing connection: waiting long for it would
	// only hold up the answers queued behind.
	wq.Set("_busy_timeout", strconv.Itoa(busyTimeout))
	w, err := sqlx.ConnectContext(ctx, "sqlite3", "file:"+opts.Path+"?"+wq.Encode())
	if err != nil {
		return nil, nil, fmt.Errorf("store: open %s: %w", opts.Path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := migrate(ctx, w, sqliteMigrations, "migrations/sqlite"); err != nil {
		w.Close()
		return nil, nil, err
	}
	q.Set("_query_only", "true")
	r, err := sqlx.ConnectContext(ctx, "sqlite3", "file:"+opts.Path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("store: open readers: %w", err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	// The writer holds its connection for good and runs its transactions
	// with plain BEGIN/COMMIT on it, so its prepared statements serve every
	// transaction as they are.
	wc, err := w.Connx(ctx)
	if err != nil {
		w.Close()
		r.Close()
		return nil, nil, fmt.Errorf("store: writer connection: %w", err)
	}
	ck, err := sqlx.ConnectContext(ctx, "sqlite3", "file:"+opts.Path+"?"+wq.Encode())
	if err != nil {
		wc.Close()
		w.Close()
		r.Close()
		return nil, nil, fmt.Errorf("store: checkpointer connection: %w", err)
	}
	ck.SetMaxOpenConns(1)
	db := &sqliteDB{w: w, wc: wc, stmts: newStmtCache(wc), cache: newMemberCache(), maxBatch: opts.MaxBatch,
		onCommit: onCommit, reqs: make(chan *writeReq, 1024), stop: make(chan struct{}), done: make(chan struct{}),
		ck: ck.DB, committed: make(chan struct{}, 1), opened: time.Now(), ckDone: make(chan struct{}), logger: opts.Logger,
		walPath: opts.Path + "-wal"}
	if opts.Synchronous == "FULL" {
		db.syncWAL = db.syncWALFile
	}
	go db.writer()
	go db.checkpointer()
	return db, r, nil
}

// How often the checkpointer looks for a pause in the writer's commits,
// once there are commits to copy, and how long a pause must have lasted.
const (
	checkpointEvery = 200 * time.Millisecond
	checkpointPause = time.Millisecond
)

// checkpointer copies committed pages from the WAL into the database file
// while the writer pauses. SQLite does it inside the COMMIT that takes the
// WAL past 1,000 pages: at 100 posts/s one post in about 150 waited 8 ms
// more for it. Beside a writer that never pauses, a checkpoint's fsyncs
// would slow the writer's own more than it gains (a third slower with
// FULL), so there the checkpointer leaves the work to SQLite as before.
// A PASSIVE checkpoint waits for no reader and no writer: what a reader
// still needs stays in the WAL for the next round.
func (db *sqliteDB) checkpointer() {
	defer close(db.ckDone)
	wait := time.NewTimer(0)
	<-wait.C
	for {
		select {
		case <-db.committed:
		case <-db.stop:
			return
		}
		for {
			wait.Reset(checkpointEvery)
			select {
			case <-wait.C:
			case <-db.stop:
				return
			}
			if time.Since(db.opened)-time.Duration(db.lastCommit.Load()) >= checkpointPause {
				break
			}
		}
		if _, err := db.ck.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
			db.logger.Warn("checkpoint the write-ahead log", "err", err)
		}
	}
}

// The log's head is the table's AUTOINCREMENT counter: it never goes back,
// even after retention deletes the newest rows' predecessors, and a
// rolled-back insert gives its position back, so positions are dense.
const sqliteHeadSQL = `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)`

func (db *sqliteDB) headSQL() string { return sqliteHeadSQL }

// snapshotSQL reads the head and the user's rooms in one statement, so in
// one read transaction. One statement costs less than BEGIN, two queries and
// ROLLBACK, and a snapshot opens every stream. (A LEFT JOIN from a constant
// row reads the same, but SQLite recompiled that form on every run, which
// tripled its cost.)
func (db *sqliteDB) snapshotSQL() string {
	return `SELECT (` + sqliteHeadSQL + `), NULL
	UNION ALL SELECT NULL, room_id FROM members WHERE user_id = ?`
}

// rangeLog needs no snapshot of the mark: Trim raises the mark in memory
// before its rows go.
func (db *sqliteDB) rangeLog(ctx context.Context, r *sqlx.DB, query string, args []any) ([]event.Event, int64, error) {
	evs := []event.Event{}
	err := r.SelectContext(ctx, &evs, query, args...)
	return evs, 0, err
}

func (db *sqliteDB) stats() Stats {
	return Stats{Writes: db.writes.Load(), Commits: db.commits.Load()}
}

func (db *sqliteDB) close() error {
	db.closeMu.Lock()
	if !db.closed {
		db.closed = true
		close(db.stop)
	}
	db.closeMu.Unlock()
	<-db.done
	<-db.ckDone
	// A clean stop leaves the whole database in its file, and an empty
	// WAL: a copy of the file alone is then a backup, and a WAL left
	// beside a file restored over it replays nothing. SQLite checkpoints
	// as its last connection closes, but not always: about one stop in
	// forty left committed transactions only in the WAL.
	if _, err := db.wc.ExecContext(context.Background(), `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		db.logger.Warn("checkpoint the write-ahead log at close", "err", err)
	}
	// What a checkpoint left in the WAL (a reader held it, or NORMAL never
	// synced it) is on disk once the store is closed.
	walErr := db.syncWALFile()
	if walErr != nil {
		walErr = fmt.Errorf("store: sync the write-ahead log: %w", walErr)
	}
	if db.wal != nil {
		walErr = errors.Join(walErr, db.wal.Close())
	}
	db.stmts.close()
	return errors.Join(db.ck.Close(), db.wc.Close(), db.w.Close(), walErr)
}

// syncWALFile fsyncs the write-ahead log, where every commit goes until a
// checkpoint copies it into the database; a checkpoint syncs both files
// itself. SQLite keeps the file while any of its connections is open, and
// the writer's stays open as long as the writer runs.
func (db *sqliteDB) syncWALFile() error {
	if db.wal == nil {
		f, err := os.Open(db.walPath)
		if err != nil {
			return err
		}
		db.wal = f
	}
	return db.wal.Sync()
}

// sqliteTx runs a transaction's statements on the writer's connection,
// through its prepared statements, which need no rebinding to it.
type sqliteTx struct{ stmts *stmtCache }

func (q sqliteTx) exec(query string, args ...any) (sql.Result, error) {
	st, err := q.stmts.get(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

func (q sqliteTx) get(dest any, query string, args ...any) error {
	st, err := q.stmts.get(query)
	if err != nil {
		return err
	}
	return st.Get(dest, args...)
}

func (q sqliteTx) sel(dest any, query string, args ...any) error {
	st, err := q.stmts.get(query)
	if err != nil {
		return err
	}
	return st.Select(dest, args...)
}

// insert reads the new row's id from the statement's result, which is
// cheaper than reading a RETURNING row back through database/sql.
func (q sqliteTx) insert(query string, args ...any) (int64, error) {
	res, err := q.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// logEvent inserts into the log itself: the row's key is its position.
func (q sqliteTx) logEvent(e event.Event) (int64, error) {
	return q.insert(`INSERT INTO events (room_id, type, subject, data, created_at) VALUES (?, ?, ?, ?, ?)`,
		e.Room, e.Type, e.Subject, e.Data, e.CreatedAt)
}

// lockRoom, keyShare, lockRoomExclusive, lockDM, lockInvitee and
// lockMember have nothing to do: the writer is the only one, and a
// membership it read holds until its commit.
func (sqliteTx) lockRoom(string) error                   { return nil }
func (sqliteTx) keyShare() string                        { return "" }
func (sqliteTx) lockRoomExclusive(string) error          { return nil }
func (sqliteTx) lockDM(string) error                     { return nil }
func (sqliteTx) lockInvitee(string) error                { return nil }
func (sqliteTx) lockMember(string, string) (bool, error) { return true, nil }

type writeReq struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error // buffered; receives exactly one value
}

// write queues fn for the writer's next transaction.
func (db *sqliteDB) write(ctx context.Context, fn func(*Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	// closeMu keeps close from stopping the writer between the closed check
	// and the send: a request that was queued is always answered.
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case db.reqs <- req:
		db.closeMu.RUnlock()
	case <-ctx.Done():
		db.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the request is always answered: the writer drains the queue
	// before it exits. Waiting for it even when ctx ends keeps "committed"
	// and "answered" the same thing.
	return <-req.done
}

// writer owns the write connection until close.
func (db *sqliteDB) writer() {
	defer close(db.done)
	batch := make([]*writeReq, 0, db.maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-db.reqs:
		case <-db.stop:
			// Answer whatever is still queued, then exit.
			for {
				select {
				case req := <-db.reqs:
					req.done <- ErrClosed
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < db.maxBatch {
			select {
			case req := <-db.reqs:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		db.commitBatch(batch)
	}
}

// run calls a request's function, turning its panic (a bug) into the
// request's error, so that the rest of the batch commits and the writer,
// whose goroutine no handler's recovery covers, lives on.
func (db *sqliteDB) run(fn func(*Tx) error, t *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			db.logger.Error("a write panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("store: write panicked: %v", p)
		}
	}()
	return fn(t)
}

// setLocked shortens the writer's wait for the write lock while another
// process holds it, and restores it once a transaction got it.
func (db *sqliteDB) setLocked(locked bool) {
	if locked == db.locked {
		return
	}
	ms := busyTimeout
	if locked {
		ms = busyTimeoutLocked
	}
	if _, err := db.wc.ExecContext(context.Background(), `PRAGMA busy_timeout = `+strconv.Itoa(ms)); err == nil {
		db.locked = locked
	}
}

// commitBatch runs a batch in one transaction, each request in its own
// savepoint: one request's failure rolls back only its own changes while
// the rest of the group commits. A failure of the database itself (a full
// disk, another process's lock) fails the whole batch with ErrUnavailable.
func (db *sqliteDB) commitBatch(batch []*writeReq) {
	results := make([]error, len(batch))
	var events []event.Event
	committed := false
	err := unavailable(func() error {
		t := &Tx{q: sqliteTx{db.stmts}, cache: db.cache, now: now()}
		if _, err := t.exec(`BEGIN IMMEDIATE`); err != nil {
			return fmt.Errorf("store: begin: %w", err)
		}
		defer func() {
			if !committed {
				// After a failed COMMIT SQLite may have rolled back already;
				// the error of this ROLLBACK then says only that.
				t.exec(`ROLLBACK`)
				db.cache.rollback(0)
			}
		}()
		ran := 0
		for i, req := range batch {
			if err := req.ctx.Err(); err != nil {
				results[i] = err
				continue
			}
			if _, err := t.exec(`SAVEPOINT req`); err != nil {
				return fmt.Errorf("store: savepoint: %w", err)
			}
			mark, cacheMark := len(t.events), db.cache.mark()
			if err := db.run(req.fn, t); err != nil {
				if err = unavailable(err); errors.Is(err, ErrUnavailable) {
					// The database cannot write (a full disk, a lock):
					// neither can the rest of the batch, and SQLite may
					// have rolled the whole transaction back already.
					return err
				}
				results[i] = err
				t.events = t.events[:mark]
				db.cache.rollback(cacheMark)
				if _, err := t.exec(`ROLLBACK TO req`); err != nil {
					return fmt.Errorf("store: rollback to savepoint: %w", err)
				}
			} else {
				ran++
			}
			if _, err := t.exec(`RELEASE req`); err != nil {
				return fmt.Errorf("store: release savepoint: %w", err)
			}
		}
		if ran == 0 {
			return nil
		}
		if _, err := t.exec(`COMMIT`); err != nil {
			return fmt.Errorf("store: commit: %w", err)
		}
		committed = true
		db.cache.commit()
		events = t.events
		return nil
	}())
	db.setLocked(errors.Is(err, ErrLocked))
	if err == nil && committed {
		if len(events) > 0 {
			db.onCommit(events)
		}
		if db.syncWAL != nil {
			if err = db.syncWAL(); err != nil {
				// The commit stands, and its events are out: a client
				// that retries with its client_id gets the original.
				db.logger.Error("sync the write-ahead log", "err", err)
				err = errors.Join(ErrUnavailable, fmt.Errorf("store: sync the write-ahead log: %w", err))
			}
		}
		db.lastCommit.Store(int64(time.Since(db.opened)))
		select {
		case db.committed <- struct{}{}:
		default: // the checkpointer knows already
		}
	}
	if err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
	} else {
		db.commits.Add(1)
		db.writes.Add(int64(len(batch)))
	}
	for i, req := range batch {
		req.done <- results[i]
	}
}
