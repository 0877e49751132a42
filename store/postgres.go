package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/jmoiron/sqlx"
)

// Everything specific to PostgreSQL lives in this file and sequencer.go:
// the pool, the migrations run by one instance at a time, transactions of
// one request each, retried when PostgreSQL aborts them for a conflict,
// and the outbox that the sequencer turns into the log.

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// Advisory lock keys, one per purpose: migrations and the sequencer's
// leadership, taken by one instance at a time.
const (
	migrateLock = 0x6865_7261_6c64_0001
	leaderLock  = 0x6865_7261_6c64_0002
)

// dmLocks and inviteeLocks are the first keys of the transaction-scoped
// advisory locks on DM pairs (lockDM) and on invited users (lockInvitee),
// the pair key's or the user's hash the second: a key of two 32-bit
// halves never meets the 64-bit ones above.
const (
	dmLocks      int32 = 0x6864_6d31
	inviteeLocks int32 = 0x6869_6e76
)

// pgDB is the PostgreSQL dialect. Several instances write at once, so
// there is no writer goroutine and no membership cache: each request runs
// in its own transaction from the pool, and PostgreSQL's row locks order
// the writes that touch the same rows. Many concurrent commits still share
// WAL flushes, which is PostgreSQL's own group commit.
type pgDB struct {
	db      *sqlx.DB
	retries int
	// onCommit is called after each commit that wrote to the outbox, to
	// wake the sequencer. (PostgreSQL's NOTIFY would do it, but it makes
	// every committing transaction that sent one wait for the others.)
	onCommit func()

	closeMu  sync.RWMutex // held for reading by each write in flight
	closed   bool         // guarded by closeMu
	inflight sync.WaitGroup

	commits atomic.Int64
	retried atomic.Int64 // transactions run again after a conflict
}

var _ dialect = (*pgDB)(nil)

// openPostgres connects the pool, waiting for the server while ctx lasts
// (an instance may start before its database), and migrates under an
// advisory lock, so that instances starting together migrate one at a time.
func openPostgres(ctx context.Context, opts Options) (*pgDB, *sqlx.DB, error) {
	db, err := sqlx.Open("pgx", opts.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open %s: %w", redactURL(opts.URL), err)
	}
	db.SetMaxOpenConns(opts.Conns)
	db.SetMaxIdleConns(opts.Conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = db.PingContext(pctx)
		cancel()
		if err == nil {
			break
		}
		opts.Logger.Warn("waiting for postgres", "url", redactURL(opts.URL), "err", err)
		select {
		case <-ctx.Done():
			db.Close()
			return nil, nil, fmt.Errorf("store: connect to %s: %w", redactURL(opts.URL), err)
		case <-time.After(wait):
		}
	}
	if err := migrateLocked(ctx, db); err != nil {
		db.Close()
		return nil, nil, err
	}
	return &pgDB{db: db, retries: 5, onCommit: opts.OnCommit}, db, nil
}

func migrateLocked(ctx context.Context, db *sqlx.DB) error {
	conn, err := db.Connx(ctx)
	if err != nil {
		return fmt.Errorf("store: migration lock: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("store: migration lock: %w", err)
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(migrateLock))
	return migrate(ctx, db, postgresMigrations, "migrations/postgres")
}

// redactURL drops a URL's password, for logs and errors.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return u
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":xxx@" + rest[at+1:]
}

func (p *pgDB) headSQL() string { return `SELECT seq FROM log_head` }

// The membership as of the head is the sequencer's, not the members
// table's: a join committed but not yet sequenced has no position yet.
func (p *pgDB) snapshotSQL() string {
	return `SELECT (SELECT seq FROM log_head), NULL
	UNION ALL SELECT NULL, room_id FROM log_members WHERE user_id = ?`
}

// rangeLog reads the trim mark and the events in one snapshot: another
// instance may trim at any time, and a replay must not mistake rows it
// deleted for rows never written.
func (p *pgDB) rangeLog(ctx context.Context, r *sqlx.DB, query string, args []any) ([]event.Event, int64, error) {
	tx, err := r.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, 0, unavailable(err)
	}
	defer tx.Rollback()
	var marks []string
	if err := tx.SelectContext(ctx, &marks, `SELECT value FROM meta WHERE key = 'pruned_through'`); err != nil {
		return nil, 0, unavailable(err)
	}
	var mark int64
	for _, m := range marks {
		fmt.Sscan(m, &mark)
	}
	evs := []event.Event{}
	if err := tx.SelectContext(ctx, &evs, query, args...); err != nil {
		return nil, 0, unavailable(err)
	}
	return evs, mark, nil
}

func (p *pgDB) stats() Stats {
	n := p.commits.Load()
	return Stats{Writes: n, Commits: n, Retries: p.retried.Load()}
}

func (p *pgDB) close() error {
	p.closeMu.Lock()
	p.closed = true
	p.closeMu.Unlock()
	p.inflight.Wait()
	return nil
}

// write runs fn in a transaction of its own. A transaction that
// PostgreSQL aborted for a conflict with another (a deadlock, a
// serialization failure, a unique key raced for) runs again from the
// start: fn must set its results anew on each run.
func (p *pgDB) write(ctx context.Context, fn func(*Tx) error) error {
	p.closeMu.RLock()
	if p.closed {
		p.closeMu.RUnlock()
		return ErrClosed
	}
	p.inflight.Add(1)
	p.closeMu.RUnlock()
	defer p.inflight.Done()
	for attempt := 0; ; attempt++ {
		err := p.try(ctx, fn)
		if err == nil || attempt >= p.retries || !retryable(err) {
			return err
		}
		p.retried.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
}

func (p *pgDB) try(ctx context.Context, fn func(*Tx) error) error {
	tx, err := p.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", unavailable(err))
	}
	defer tx.Rollback() // after Commit, a no-op
	t := &Tx{q: pgTx{ctx: ctx, tx: tx}, now: now()}
	if err := fn(t); err != nil {
		return unavailable(err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", unavailable(err))
	}
	p.commits.Add(1)
	if len(t.events) > 0 && p.onCommit != nil {
		p.onCommit()
	}
	return nil
}

// retryable reports errors after which a transaction can simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01", "23505": // serialization failure, deadlock, unique violation
		return true
	}
	return false
}

// pgTx runs a request's statements in its own transaction. pgx prepares
// and caches each statement on its connection by itself.
type pgTx struct {
	ctx context.Context
	tx  *sqlx.Tx
}

func (q pgTx) exec(query string, args ...any) (sql.Result, error) {
	return q.tx.ExecContext(q.ctx, q.tx.Rebind(query), args...)
}

func (q pgTx) get(dest any, query string, args ...any) error {
	return q.tx.GetContext(q.ctx, dest, q.tx.Rebind(query), args...)
}

func (q pgTx) sel(dest any, query string, args ...any) error {
	return q.tx.SelectContext(q.ctx, dest, q.tx.Rebind(query), args...)
}

func (q pgTx) insert(query string, args ...any) (int64, error) {
	var id int64
	err := q.get(&id, query+` RETURNING id`, args...)
	return id, err
}

// logEvent writes to the outbox: the event gets its position when the
// sequencer takes it, after this transaction commits.
func (q pgTx) logEvent(e event.Event) (int64, error) {
	_, err := q.exec(`INSERT INTO outbox (room_id, type, subject, data, created_at) VALUES (?, ?, ?, ?, ?)`,
		e.Room, e.Type, e.Subject, e.Data, e.CreatedAt)
	return 0, err
}

// lockRoom locks the room's row against other posts, but not against the
// key-share locks that inserting members and messages takes. It conflicts
// with a deletion's lock: a room deleted while it waited is gone.
func (q pgTx) lockRoom(id string) error {
	var one int
	err := q.get(&one, `SELECT 1 FROM rooms WHERE id = ? FOR NO KEY UPDATE`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrRoomNotFound
	}
	return err
}

// keyShare locks the room's row as a foreign key check does: it conflicts
// only with the FOR UPDATE lock of a deletion.
func (pgTx) keyShare() string { return " FOR KEY SHARE" }

// lockDM makes the transactions that open one pair's DM take turns.
// Without it, two opening it at once from both sides each lock their own
// user's row, then wait for each other (for the room's unique key, for
// the peer's room count): a deadlock that PostgreSQL breaks only after its
// deadlock_timeout (1 s), as often as the retries allow.
func (q pgTx) lockDM(key string) error { return q.advisoryLock(dmLocks, key) }

// lockInvitee makes the invitations of one user take turns, whatever
// their rooms, so that the count of the user's open invitations holds.
func (q pgTx) lockInvitee(user string) error { return q.advisoryLock(inviteeLocks, user) }

func (q pgTx) advisoryLock(class int32, key string) error {
	_, err := q.exec(`SELECT pg_advisory_xact_lock(?, hashtext(?))`, class, key)
	return err
}

func (q pgTx) lockMember(room, user string) (bool, error) {
	var one []int
	if err := q.sel(&one, `SELECT 1 FROM members WHERE room_id = ? AND user_id = ? FOR KEY SHARE`, room, user); err != nil {
		return false, err
	}
	return len(one) > 0, nil
}

func (q pgTx) lockRoomExclusive(id string) error {
	_, err := q.exec(`SELECT 1 FROM rooms WHERE id = ? FOR UPDATE`, id)
	return err
}
