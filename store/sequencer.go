package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// The cluster's log. API transactions write their change and an
// unsequenced outbox row together; one sequencer at a time (the leader,
// by advisory lock) takes the committed rows in one ordered pass, gives
// them the next positions and records them, with the membership they make,
// in the events and log_members tables. Positions are therefore dense and
// in commit order, which a PostgreSQL sequence filled by concurrent
// transactions is not.

// ErrNotCluster is returned by the sequencer's methods on an embedded
// store, whose writer gives positions itself.
var ErrNotCluster = errors.New("store: sequencing is for a PostgreSQL store")

// Leader is this instance's tenure as the cluster's sequencer; it holds
// the leader lock on a connection of its own.
type Leader struct {
	s     *Store
	conn  *sql.Conn
	alive time.Time // when the lock's connection last answered
}

// Lead runs fn whenever this instance holds the leader lock, until ctx
// ends. Every instance calls it and waits for the lock in PostgreSQL; when
// the holder's connection ends (its instance died, or its machine: the
// server's keepalives on that connection notice within seconds) the lock
// passes at once to a waiting instance. fn's context ends if the lock is
// lost; fn returning an error gives the lock up, to be taken again. After
// a failure to reach the database, Lead tries again after retry.
func (s *Store) Lead(ctx context.Context, retry time.Duration, fn func(ctx context.Context, l *Leader) error) error {
	if _, ok := s.db.(*pgDB); !ok {
		return ErrNotCluster
	}
	for ctx.Err() == nil {
		l, err := s.acquire(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("leader lock", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
			continue
		}
		err = fn(ctx, l)
		l.release()
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("gave up leading the cluster's log", "err", err)
		}
	}
	return nil
}

// acquire waits for the leader lock on a connection of its own.
func (s *Store) acquire(ctx context.Context) (*Leader, error) {
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	// The lock lasts as long as this session: let the server notice a
	// vanished machine in about 11s rather than its default two hours.
	for _, q := range []string{`SET tcp_keepalives_idle = 5`, `SET tcp_keepalives_interval = 2`, `SET tcp_keepalives_count = 3`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			discard(conn)
			return nil, unavailable(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(leaderLock)); err != nil {
		discard(conn) // a wait cut short may leave the lock to come to it
		return nil, unavailable(err)
	}
	return &Leader{s: s, conn: conn, alive: time.Now()}, nil
}

// release closes the lock's connection rather than returning it to the
// pool, where the lock would stay with it.
func (l *Leader) release() { discard(l.conn) }

func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

// Alive checks, at most once a second, that the lock's connection still
// answers: an error means leadership is lost.
func (l *Leader) Alive(ctx context.Context) error {
	if time.Since(l.alive) < time.Second {
		return nil
	}
	if err := l.conn.PingContext(ctx); err != nil {
		return unavailable(err)
	}
	l.alive = time.Now()
	return nil
}

// Sequence takes up to max committed outbox rows, in order, gives them
// the positions after the head and records them and the membership they
// make, in one transaction. It returns the events sequenced (none when the
// outbox was empty). Each pass locks the head's row first, so even two
// sequencers at once could never give one position twice.
func (l *Leader) Sequence(ctx context.Context, max int) ([]event.Event, error) {
	tx, err := l.s.r.BeginTxx(ctx, nil)
	if err != nil {
		return nil, unavailable(err)
	}
	defer tx.Rollback()
	var head int64
	if err := tx.GetContext(ctx, &head, `SELECT seq FROM log_head FOR UPDATE`); err != nil {
		return nil, fmt.Errorf("store: lock log head: %w", unavailable(err))
	}
	var rows []struct {
		ID int64 `db:"id"`
		event.Event
	}
	if err := tx.SelectContext(ctx, &rows, `SELECT id, room_id, type, subject, data, created_at FROM outbox ORDER BY id LIMIT $1`, max); err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", unavailable(err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	n := len(rows)
	evs := make([]event.Event, n)
	var (
		ids, seqs, created  = make([]int64, n), make([]int64, n), make([]int64, n)
		rooms, types, subjs = make([]string, n), make([]string, n), make([]string, n)
		data                = make([][]byte, n)
	)
	for i, r := range rows {
		e := r.Event
		e.Seq = head + int64(i) + 1
		evs[i] = e
		ids[i], seqs[i], created[i] = r.ID, e.Seq, e.CreatedAt
		rooms[i], types[i], subjs[i], data[i] = e.Room, e.Type, e.Subject, e.Data
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO events (seq, room_id, type, subject, data, created_at)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bigint[])`,
		seqs, rooms, types, subjs, data, created)
	if err != nil {
		return nil, fmt.Errorf("store: append to log: %w", unavailable(err))
	}
	// Membership as of the new head: apply the member events in order.
	for _, e := range evs {
		var q string
		switch e.Type {
		case event.MemberJoined:
			q = `INSERT INTO log_members (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`
		case event.MemberLeft, event.RoomDeleted:
			q = `DELETE FROM log_members WHERE user_id = $1 AND room_id = $2`
		default:
			continue
		}
		if _, err := tx.ExecContext(ctx, q, e.Subject, e.Room); err != nil {
			return nil, fmt.Errorf("store: log membership: %w", unavailable(err))
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, ids); err != nil {
		return nil, fmt.Errorf("store: clear outbox: %w", unavailable(err))
	}
	if _, err := tx.ExecContext(ctx, `UPDATE log_head SET seq = $1`, head+int64(n)); err != nil {
		return nil, fmt.Errorf("store: move log head: %w", unavailable(err))
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: commit sequencing: %w", unavailable(err))
	}
	return evs, nil
}

// Head returns the newest position given (0 for none).
func (l *Leader) Head(ctx context.Context) (int64, error) { return l.s.Head(ctx) }

// Range reads the log, as Store.Range.
func (l *Leader) Range(ctx context.Context, q event.Query) ([]event.Event, error) {
	return l.s.Range(ctx, q)
}
