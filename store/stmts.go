package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps one prepared statement per query text, so that SQLite
// parses each query once rather than on every call. Only fixed query texts
// go through it; queries built with a variable number of placeholders do
// not, or the cache would grow without bound.
type stmtCache struct {
	db preparer
	mu sync.Mutex // guards m
	m  map[string]*sqlx.Stmt
}

// preparer is a pool (*sqlx.DB) or one connection (*sqlx.Conn).
type preparer interface {
	PreparexContext(ctx context.Context, query string) (*sqlx.Stmt, error)
	Rebind(query string) string
}

func newStmtCache(db preparer) *stmtCache { return &stmtCache{db: db, m: map[string]*sqlx.Stmt{}} }

func (c *stmtCache) get(query string) (*sqlx.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	st, err := c.db.PreparexContext(context.Background(), c.db.Rebind(query))
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

// Statement helpers for reads on the pool.

func (s *Store) get(ctx context.Context, dest any, query string, args ...any) error {
	st, err := s.rstmts.get(query)
	if err != nil {
		return unavailable(err)
	}
	return unavailable(st.GetContext(ctx, dest, args...))
}

func (s *Store) sel(ctx context.Context, dest any, query string, args ...any) error {
	st, err := s.rstmts.get(query)
	if err != nil {
		return unavailable(err)
	}
	return unavailable(st.SelectContext(ctx, dest, args...))
}
