package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldchat/herald/internal/event"
)

// ErrClosed is returned for writes submitted after Close.
var ErrClosed = errors.New("store: closed")

// Tx is one write request's view of the shared transaction. Each request runs
// inside its own savepoint, so one request's failure rolls back only its own
// changes while the rest of the group commits.
type Tx struct {
	stmts  *stmtCache
	cache  *memberCache
	now    Millis
	events []event.Event
}

type writeReq struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error // buffered; receives exactly one value
}

// write runs fn in the writer's next transaction and returns once that
// transaction committed (nil) or fn's changes were rolled back (its error).
func (s *Store) write(ctx context.Context, fn func(*Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	// closeMu keeps Close from stopping the writer between the closed check
	// and the send: a request that was queued is always answered.
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- req:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the request is always answered: the writer drains the queue
	// before it exits. Waiting for it even when ctx ends keeps "committed"
	// and "answered" the same thing.
	return <-req.done
}

// writer owns the write connection. It takes whatever requests are queued
// (up to MaxBatch), runs them in one IMMEDIATE transaction and commits once:
// under load, many requests share one fsync.
func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]*writeReq, 0, s.opts.MaxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			// Answer whatever is still queued, then exit.
			for {
				select {
				case req := <-s.reqs:
					req.done <- ErrClosed
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case req := <-s.reqs:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

func (s *Store) commitBatch(batch []*writeReq) {
	results := make([]error, len(batch))
	var events []event.Event
	err := func() error {
		t := &Tx{stmts: s.wstmts, cache: s.cache, now: now()}
		if _, err := t.exec(`BEGIN IMMEDIATE`); err != nil {
			return fmt.Errorf("store: begin: %w", err)
		}
		committed := false
		defer func() {
			if !committed {
				// After a failed COMMIT SQLite may have rolled back already;
				// the error of this ROLLBACK then says only that.
				t.exec(`ROLLBACK`)
				s.cache.rollback(0)
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
			mark, cacheMark := len(t.events), t.cache.mark()
			if err := req.fn(t); err != nil {
				results[i] = err
				t.events = t.events[:mark]
				t.cache.rollback(cacheMark)
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
		t.cache.commit()
		events = t.events
		return nil
	}()
	if err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = err
			}
		}
	} else {
		s.commits.Add(1)
		s.writes.Add(int64(len(batch)))
		if len(events) > 0 {
			s.live.publish(events)
		}
	}
	for i, req := range batch {
		req.done <- results[i]
	}
}

// emit appends an event to the log inside the current transaction and
// remembers it for the live feed once the transaction commits.
func (t *Tx) emit(room, typ, subject string, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("store: encode %s event: %w", typ, err)
	}
	seq, err := t.insert(`INSERT INTO events (room_id, type, subject, data, created_at) VALUES (?, ?, ?, ?, ?)`,
		room, typ, subject, data, t.now)
	if err != nil {
		return fmt.Errorf("store: append %s event: %w", typ, err)
	}
	t.events = append(t.events, event.Event{Seq: seq, Room: room, Type: typ, Subject: subject, Data: data, CreatedAt: int64(t.now)})
	return nil
}

// ensureUser records a user the first time it is seen and keeps its display
// name current (an empty name never erases a known one).
func (t *Tx) ensureUser(u User) error {
	_, err := t.exec(`INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE excluded.name <> '' AND users.name <> excluded.name`,
		u.ID, u.Name, t.now)
	if err != nil {
		return fmt.Errorf("store: ensure user: %w", err)
	}
	return nil
}
