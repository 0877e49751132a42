package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps one prepared statement per query text, so that SQLite
// parses each query once rather than on every call. Only fixed query texts
// go through it; queries built with a variable number of placeholders do
// not, or the cache would grow without bound.
type stmtCache struct {
	db *sqlx.DB
	mu sync.Mutex // guards m
	m  map[string]*sqlx.Stmt
}

func newStmtCache(db *sqlx.DB) *stmtCache { return &stmtCache{db: db, m: map[string]*sqlx.Stmt{}} }

func (c *stmtCache) get(query string) (*sqlx.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	st, err := c.db.Preparex(c.db.Rebind(query))
	if err != nil {
		return nil, fmt.Errorf("store: prepare: %w", err)
	}
	c.m[query] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// lookup returns the cached statement of query, if any.
func (c *stmtCache) lookup(query string) (*sqlx.Stmt, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[query]
	return st, ok
}

// Statement helpers for write transactions. The writer has one connection,
// held by the open transaction, so a statement cannot be prepared on the
// database mid-transaction: a new query is prepared on the transaction for
// this use, and on the database once the transaction ends (prepareMissed).

func (t *Tx) stmt(query string) (*sqlx.Stmt, error) {
	if st, ok := t.stmts.lookup(query); ok {
		return t.tx.Stmtx(st), nil
	}
	st, err := t.tx.Preparex(t.tx.Rebind(query))
	if err != nil {
		return nil, fmt.Errorf("store: prepare: %w", err)
	}
	t.missed = append(t.missed, query)
	return st, nil
}

// prepareMissed caches the statements a finished transaction lacked.
func (c *stmtCache) prepareMissed(queries []string) {
	for _, q := range queries {
		c.get(q) // on failure the query is simply prepared per use again
	}
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

func (t *Tx) get(dest any, query string, args ...any) error {
	st, err := t.stmt(query)
	if err != nil {
		return err
	}
	return st.Get(dest, args...)
}

// Statement helpers for reads on the pool.

func (s *Store) get(ctx context.Context, dest any, query string, args ...any) error {
	st, err := s.rstmts.get(query)
	if err != nil {
		return err
	}
	return st.GetContext(ctx, dest, args...)
}

func (s *Store) sel(ctx context.Context, dest any, query string, args ...any) error {
	st, err := s.rstmts.get(query)
	if err != nil {
		return err
	}
	return st.SelectContext(ctx, dest, args...)
}
