package store

import (
	"context"
	"fmt"
	"time"
)

// SpendTicket records a stream ticket's nonce as used until the ticket
// expires; fresh is false when it already was. The record outlives a
// restart, so a ticket opens one stream only, ever.
func (s *Store) SpendTicket(ctx context.Context, nonce string, expires time.Time) (fresh bool, err error) {
	err = s.write(ctx, func(t *Tx) error {
		res, err := t.exec(`INSERT INTO spent_tickets (nonce, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING`,
			nonce, Millis(expires.UnixMilli()))
		if err != nil {
			return fmt.Errorf("store: spend ticket: %w", err)
		}
		n, err := res.RowsAffected()
		fresh = n == 1
		return err
	})
	return fresh, err
}

// pruneTickets forgets the tickets that have expired.
func (s *Store) pruneTickets(ctx context.Context) error {
	return s.write(ctx, func(t *Tx) error {
		_, err := t.exec(`DELETE FROM spent_tickets WHERE expires_at < ?`, now())
		if err != nil {
			return fmt.Errorf("store: prune spent tickets: %w", err)
		}
		return nil
	})
}
