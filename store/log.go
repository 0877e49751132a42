package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jmoiron/sqlx"
)

const eventColumns = `seq, room_id, type, subject, data, created_at`

// Snapshot returns the rooms user belongs to and the log position they
// belong to: membership is exactly as of head. One statement reads both,
// so one consistent snapshot, and costs less than a read transaction; a
// snapshot opens every stream.
func (s *Store) Snapshot(ctx context.Context, user string) (rooms []string, head int64, err error) {
	st, err := s.rstmts.get(s.db.snapshotSQL())
	if err != nil {
		return nil, 0, unavailable(err)
	}
	rows, err := st.QueryContext(ctx, user)
	if err != nil {
		return nil, 0, fmt.Errorf("store: snapshot: %w", unavailable(err))
	}
	defer rows.Close()
	rooms = []string{}
	for rows.Next() {
		var h sql.NullInt64
		var room sql.NullString
		if err := rows.Scan(&h, &room); err != nil {
			return nil, 0, fmt.Errorf("store: snapshot: %w", unavailable(err))
		}
		if h.Valid {
			head = h.Int64
		}
		if room.Valid {
			rooms = append(rooms, room.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: snapshot: %w", unavailable(err))
	}
	return rooms, head, nil
}

// Head returns the newest log position (0 for an empty log).
func (s *Store) Head(ctx context.Context) (int64, error) {
	var head int64
	if err := s.get(ctx, &head, s.db.headSQL()); err != nil {
		return 0, fmt.Errorf("store: log head: %w", err)
	}
	return head, nil
}

// TrimmedThrough is the newest position that retention deleted: a replay
// that starts before it cannot be complete.
func (s *Store) TrimmedThrough() int64 { return s.trimmedThrough.Load() }

// liveWait bounds how long Read waits for a new event, so that its caller
// checks its context in a loop rather than depending on cancellation alone.
const liveWait = time.Second

// Read returns up to max committed events after position after, in log
// order, from memory. It waits for the first one until ctx ends or a second
// passes, and may then return none. It returns event.ErrTrimmed when after
// is older than what memory holds: the rest is read with Range.
// In a cluster the store keeps no live window: the log is read live from
// Redis, and Read says so.
func (s *Store) Read(ctx context.Context, after int64, max int) ([]event.Event, error) {
	if s.live == nil {
		return nil, errNoLive
	}
	return s.live.read(ctx, after, max, liveWait)
}

var errNoLive = errors.New("store: a cluster's log is read live from Redis, not from the store")

// maxRoomsPerQuery bounds the rooms one statement of Range names, well
// under SQLite's limit on a statement's variables (and PostgreSQL's): a
// user in more rooms is served by several statements.
const maxRoomsPerQuery = 500

// Range returns up to q.Limit events of the log in (q.After, q.UpTo], in
// order.
func (s *Store) Range(ctx context.Context, q event.Query) ([]event.Event, error) {
	if q.Rooms != nil && len(q.Rooms) == 0 {
		return []event.Event{}, nil
	}
	if len(q.Rooms) <= maxRoomsPerQuery {
		return s.rangeOnce(ctx, q)
	}
	// Each chunk's first Limit events, merged: the first Limit of all.
	var out []event.Event
	for rooms := range slices.Chunk(q.Rooms, maxRoomsPerQuery) {
		cq := q
		cq.Rooms = rooms
		evs, err := s.rangeOnce(ctx, cq)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	slices.SortFunc(out, func(a, b event.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	return out[:min(len(out), q.Limit)], nil
}

func (s *Store) rangeOnce(ctx context.Context, q event.Query) ([]event.Event, error) {
	query := `SELECT ` + eventColumns + ` FROM events WHERE seq > ? AND seq <= ?`
	args := []any{q.After, q.UpTo}
	if q.Rooms != nil {
		query += ` AND room_id IN (?)`
		args = append(args, q.Rooms)
	}
	if q.Subject != "" {
		query += ` AND subject = ?`
		args = append(args, q.Subject)
	}
	query += ` ORDER BY seq LIMIT ?`
	args = append(args, q.Limit)
	query, args, err := sqlx.In(query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: build log query: %w", err)
	}
	evs, mark, err := s.db.rangeLog(ctx, s.r, s.r.Rebind(query), args)
	if err != nil {
		return nil, fmt.Errorf("store: read log: %w", err)
	}
	s.raiseTrimmed(mark)
	return evs, nil
}

// prune deletes events older than the retention window, and the server
// requests recorded before it: a request id is remembered as long as the
// events of its change.
func (s *Store) prune(ctx context.Context) error {
	cutoff := Millis(time.Now().Add(-s.opts.Retention).UnixMilli())
	err := s.write(ctx, func(t *Tx) error {
		if _, err := t.exec(`DELETE FROM server_requests WHERE created_at < ?`, cutoff); err != nil {
			return fmt.Errorf("store: prune requests: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var through int64
	if err := s.get(ctx, &through, `SELECT COALESCE(MAX(seq), 0) FROM events WHERE created_at < ?`, cutoff); err != nil {
		return fmt.Errorf("store: find prunable events: %w", err)
	}
	return s.Trim(ctx, through)
}

// Trim deletes the log's events through position through (never past the
// head), as retention does: a replay from before it gets resync. It never
// moves the mark back.
func (s *Store) Trim(ctx context.Context, through int64) error {
	return s.write(ctx, func(t *Tx) error {
		var head int64
		if err := t.get(&head, s.db.headSQL()); err != nil {
			return fmt.Errorf("store: log head: %w", err)
		}
		through = min(through, head)
		if through <= s.trimmedThrough.Load() {
			return nil
		}
		if _, err := t.exec(`DELETE FROM events WHERE seq <= ?`, through); err != nil {
			return fmt.Errorf("store: prune events: %w", err)
		}
		_, err := t.exec(`INSERT INTO meta (key, value) VALUES ('pruned_through', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value
			WHERE CAST(meta.value AS BIGINT) < CAST(excluded.value AS BIGINT)`, strconv.FormatInt(through, 10))
		if err != nil {
			return fmt.Errorf("store: record pruning: %w", err)
		}
		// Raise the mark before the rows go for readers: they go at
		// commit, and a replay that misses them must see the mark after.
		s.raiseTrimmed(through)
		return nil
	})
}

// pruner runs prune every minute (and once at start) until Close. In a
// cluster every instance prunes (deleting twice is harmless) and so also
// learns the others' trims.
func (s *Store) pruner() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	interval := max(10*time.Millisecond, min(time.Minute, s.opts.Retention/4))
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			err := s.prune(ctx)
			if err == nil {
				err = s.loadTrimmed(ctx)
			}
			if err == nil {
				err = s.pruneTickets(ctx)
			}
			if err != nil && ctx.Err() == nil {
				s.opts.Logger.Error("prune event log", "err", err)
			}
			t.Reset(interval)
		}
	}
}
