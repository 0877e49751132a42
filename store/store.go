// Package store keeps Herald's state: users, rooms, members, messages, read
// positions, and the ordered event log that announces every change.
//
// Every change and the events that announce it are written in one
// transaction, so the log is also the outbox: an event is in the log if and
// only if its change was committed. On SQLite, writes go through a single
// writer goroutine that groups concurrent requests into one transaction
// (group commit); reads use a separate pool.
package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jmoiron/sqlx"
)

// Sentinel kinds of error. Every error the store returns for a client's
// mistake wraps one of these; anything else is an internal failure.
var (
	ErrNotFound  = errors.New("not found")
	ErrForbidden = errors.New("forbidden")
	ErrConflict  = errors.New("conflict")
	// ErrInvalid is a request that names something that cannot be: a
	// well-formed value the rules refuse.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable wraps failures to reach the database (down, restarting,
	// unreachable), which a client may retry, as opposed to internal errors.
	ErrUnavailable = errors.New("store: database unavailable")
)

// Error is a client-facing failure with a stable code. It unwraps to one of
// the sentinel kinds so callers can map it with errors.Is.
type Error struct {
	Kind    error
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Kind }

// The errors a client can cause.
var (
	ErrRoomNotFound    = &Error{ErrNotFound, "room_not_found", "room not found"}
	ErrMemberNotFound  = &Error{ErrNotFound, "member_not_found", "user is not a member of this room"}
	ErrMessageNotFound = &Error{ErrNotFound, "message_not_found", "message not found in this room"}
	ErrNotMember       = &Error{ErrForbidden, "not_member", "you are not a member of this room"}
	ErrNotOwner        = &Error{ErrForbidden, "not_owner", "only the room's owner may do this"}
	ErrPrivateRoom     = &Error{ErrForbidden, "private_room", "this room is private: its owner must invite you"}
	ErrOwnerRemoval    = &Error{ErrConflict, "owner_removal", "the owner cannot be removed; the owner may leave instead"}
	ErrUserNotFound    = &Error{ErrNotFound, "user_not_found", "no such user"}
	ErrNotAuthor       = &Error{ErrForbidden, "not_author", "only the message's author may edit it"}
	ErrNotAuthorOwner  = &Error{ErrForbidden, "not_author", "only the message's author or the room's owner may delete it"}
	ErrEditWindow      = &Error{ErrForbidden, "edit_window_closed", "the message is too old to edit"}
	ErrMessageDeleted  = &Error{ErrConflict, "message_deleted", "the message was deleted"}
	ErrDMRoom          = &Error{ErrForbidden, "dm_room", "a direct conversation keeps its two members and has no owner: it cannot be changed so"}
	ErrDMWithSelf      = &Error{ErrInvalid, "dm_with_self", "a direct conversation needs another user than yourself"}
	ErrOwnerNotMember  = &Error{ErrInvalid, "owner_not_member", "the new owner must be a member of the room"}
	ErrRoomDeleted     = &Error{ErrConflict, "room_deleted", "a room with this id was deleted; a room id is never used again"}
	ErrRoomConflict    = &Error{ErrConflict, "room_conflict", "a room with this id exists with other settings"}
	ErrRoomFull        = &Error{ErrConflict, "room_full", "the room has as many members as this server allows"}
	ErrTooManyRooms    = &Error{ErrConflict, "too_many_rooms", "the user is in as many rooms as this server allows: they must leave one first"}
	ErrTooManyInvites  = &Error{ErrConflict, "too_many_invitations", "the room has as many open invitations as it may have members: withdraw some first"}
	ErrNoInvitation    = &Error{ErrNotFound, "invitation_not_found", "you have no open invitation to this room"}
)

// Options configure Open. Zero values take the documented defaults.
type Options struct {
	// Path is the SQLite database file, for one instance (embedded mode).
	Path string
	// URL, instead of Path, is a postgres:// URL, for a cluster of
	// instances sharing one database.
	URL string
	// Conns is the size of PostgreSQL's connection pool (default 20).
	Conns int
	// OnCommit, with a PostgreSQL URL, is called after every commit that
	// wrote events to the outbox, to wake the sequencer. It must not block.
	OnCommit func()
	// Retention is how long events stay in the log for replay (default 24h).
	Retention time.Duration
	// MaxBatch caps how many write requests share one transaction (default 256).
	MaxBatch int
	// Readers is the size of SQLite's read connection pool (default 8).
	Readers int
	// Synchronous says when a commit is on disk. FULL (default): its
	// requests are answered after an fsync of the WAL, which runs after
	// its events are published. NORMAL: nothing waits for the disk; a
	// power loss may take back the last commits. EXTRA: SQLite syncs
	// inside the commit, before its events are published.
	Synchronous string
	// LiveEvents is how many of the newest events Read serves from memory
	// (default 65,536), and LiveBytes how many bytes of data they may take
	// (default 32 MiB); a reader further behind gets event.ErrTrimmed and
	// reads the rest with Range. Embedded mode only: a cluster's instances
	// read the log live from Redis.
	LiveEvents, LiveBytes int
	// MaxRoomsPerUser caps the rooms one user is a member of, and
	// MaxRoomMembers the members of one room, and so its open
	// invitations (0: no cap). A join past either fails with
	// ErrTooManyRooms or ErrRoomFull; two that race for the last place
	// never both pass.
	MaxRoomsPerUser, MaxRoomMembers int
	// Logger receives background errors (pruning). Default: discard.
	Logger *slog.Logger
}

// Store is the repository. Its methods are safe for concurrent use.
type Store struct {
	opts   Options
	db     dialect    // how this database runs writes and keeps the log
	r      *sqlx.DB   // the reader pool
	rstmts *stmtCache // prepared on the reader pool
	epoch  string
	live   *live     // the newest committed events, for Read; nil in a cluster
	mark   *markFile // the highest position handed out; nil in a cluster

	// trimmedThrough is the highest log position deleted by retention: a
	// replay must start at or after it.
	trimmedThrough atomic.Int64

	// unwritable is set while writes fail for want of the database (a
	// full disk, another process's lock, a database out of reach), from
	// the first such failure to the next write that commits: Ping reports
	// it, and tries a write of its own to learn whether it is over.
	unwritable atomic.Bool

	stop      chan struct{} // closed by Close: stops the pruner
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// dialect is what differs between databases, behind one seam: how writes
// become transactions, how a transaction's statements run, where a
// change's events go and where the log's head is kept. The repositories
// above it use portable SQL with ? placeholders, through Tx for writes and
// the reader pool for reads. sqlite.go implements it.
type dialect interface {
	// write runs fn in a transaction and returns once that transaction
	// committed (nil) or fn's changes were rolled back (its error, or the
	// transaction's). After close it returns ErrClosed.
	write(ctx context.Context, fn func(*Tx) error) error
	// headSQL reads the newest position ever assigned (0 for none),
	// including positions whose rows retention has since deleted.
	headSQL() string
	// snapshotSQL reads, in one consistent snapshot, a row with the head
	// (and a NULL room), then a row per room of the user given as its one
	// parameter (and a NULL head).
	snapshotSQL() string
	// rangeLog runs a query of the log and returns its events with the
	// trim mark read in the same snapshot (0 when the mark in memory is
	// already right), so that a replay can tell deleted from never written.
	rangeLog(ctx context.Context, r *sqlx.DB, query string, args []any) ([]event.Event, int64, error)
	// stats counts writes and transactions since open.
	stats() Stats
	// close answers or finishes every queued write, then closes the writer's
	// connections. The reader pool is the Store's to close.
	close() error
}

// Open opens (creating if needed) the database, runs migrations and starts
// the writer and the retention pruner. Close stops them.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if (opts.Path == "") == (opts.URL == "") {
		return nil, errors.New("store: give a SQLite path or a PostgreSQL URL")
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Readers <= 0 {
		opts.Readers = 8
	}
	if opts.Conns <= 0 {
		opts.Conns = 20
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "FULL"
	}
	if opts.LiveEvents <= 0 {
		opts.LiveEvents = 1 << 16
	}
	if opts.LiveBytes <= 0 {
		opts.LiveBytes = 32 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, stop: make(chan struct{})}
	var err error
	if opts.URL != "" {
		s.db, s.r, err = openPostgres(ctx, opts)
	} else {
		s.live = newLive(opts.LiveEvents, opts.LiveBytes)
		if s.mark, err = openMark(opts.Path + markSuffix); err != nil {
			return nil, err
		}
		if s.db, s.r, err = openSQLite(ctx, opts, s.committed); err != nil {
			s.mark.close()
		}
	}
	if err != nil {
		return nil, err
	}
	s.rstmts = newStmtCache(s.r)
	if err := s.loadMeta(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if s.mark != nil {
		if err := s.checkMark(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.pruner()
	return s, nil
}

// Close stops the pruner, finishes the writes already queued or in flight
// (later ones get ErrClosed) and closes the database. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		dbErr := s.db.close()
		s.rstmts.close()
		s.closeErr = errors.Join(dbErr, s.r.Close())
		if s.mark != nil {
			if dbErr == nil && s.mark.running {
				// Every commit is on disk: a power loss from now on
				// takes nothing back. (A store that failed to open
				// leaves what an earlier run recorded.)
				s.closeErr = errors.Join(s.closeErr, s.mark.setRunning(false, s.mark.epoch, s.mark.pos))
			}
			s.closeErr = errors.Join(s.closeErr, s.mark.close())
		}
	})
	return s.closeErr
}

// Epoch identifies this log. A new database gets a new epoch, so positions
// from another log are recognised instead of misread.
func (s *Store) Epoch() string { return s.epoch }

// RotateEpoch gives the log a new epoch if its epoch is still old. A log
// that went back (PostgreSQL restored from an older backup) would give
// positions that clients already hold to other events: with a new epoch,
// their ids get resync instead. Instances that run while it changes keep
// the old one until they restart.
func (s *Store) RotateEpoch(ctx context.Context, old string) error {
	_, err := s.r.ExecContext(ctx, s.r.Rebind(`UPDATE meta SET value = ? WHERE key = 'epoch' AND value = ?`), newEpoch(), old)
	if err != nil {
		return fmt.Errorf("store: rotate epoch: %w", unavailable(err))
	}
	return s.loadMeta(ctx)
}

// Ping checks that the database answers, and that it takes writes: after
// a write failed with ErrUnavailable, Ping writes a row itself (reads work
// on a full disk, and next to another process's write lock), so that
// readiness recovers without waiting for a client to try again.
func (s *Store) Ping(ctx context.Context) error {
	if err := unavailable(s.r.PingContext(ctx)); err != nil {
		return err
	}
	if !s.unwritable.Load() {
		return nil
	}
	return s.write(ctx, func(t *Tx) error {
		_, err := t.exec(`INSERT INTO meta (key, value) VALUES ('probe', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.FormatInt(time.Now().UnixNano(), 10))
		return err
	})
}

// Stats counts a store's writes since it opened.
type Stats struct {
	Writes  int64 // write requests committed
	Commits int64 // transactions committed: SQLite's commit several writes at once
	// Retries counts transactions run again after a conflict with another
	// (PostgreSQL: a deadlock, a serialization failure, a unique key raced
	// for). SQLite's one writer has none.
	Retries int64
}

// Stats reports how many write requests were committed, in how many
// transactions, and how many transactions ran again, since Open.
func (s *Store) Stats() Stats { return s.db.stats() }

func (s *Store) loadMeta(ctx context.Context) error {
	var epoch string
	err := s.r.GetContext(ctx, &epoch, `SELECT value FROM meta WHERE key = 'epoch'`)
	if err != nil {
		return fmt.Errorf("store: read epoch: %w", unavailable(err))
	}
	s.epoch = epoch
	return s.loadTrimmed(ctx)
}

// loadTrimmed raises the trim mark to what the database records: in a
// cluster another instance may have trimmed.
func (s *Store) loadTrimmed(ctx context.Context) error {
	var marks []string
	if err := s.r.SelectContext(ctx, &marks, `SELECT value FROM meta WHERE key = 'pruned_through'`); err != nil {
		return fmt.Errorf("store: read trim mark: %w", unavailable(err))
	}
	for _, m := range marks {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil {
			return fmt.Errorf("store: trim mark %q: %w", m, err)
		}
		s.raiseTrimmed(n)
	}
	return nil
}

// raiseTrimmed moves the trim mark up to n; it never goes back.
func (s *Store) raiseTrimmed(n int64) {
	for {
		cur := s.trimmedThrough.Load()
		if n <= cur || s.trimmedThrough.CompareAndSwap(cur, n) {
			return
		}
	}
}

// newID returns a random identifier with a readable prefix, such as "r_…".
func newID(prefix string) string {
	var b [10]byte
	rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// newEpoch returns a short random epoch.
func newEpoch() string {
	var b [5]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Millis is a time stored as Unix milliseconds and shown as RFC 3339.
type Millis int64

func now() Millis { return Millis(time.Now().UnixMilli()) }

// Time converts m to a time.Time.
func (m Millis) Time() time.Time { return time.UnixMilli(int64(m)).UTC() }

// MarshalJSON renders m as an RFC 3339 string with milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) {
	if m == 0 {
		return []byte("null"), nil
	}
	return json.Marshal(m.Time().Format("2006-01-02T15:04:05.000Z07:00"))
}
