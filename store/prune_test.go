package store

import (
	"context"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// Pruning keeps the events inside the window and deletes the ones before:
// the oldest events are aged by hand, so the test does not wait on a clock.
func TestPruneKeepsTheWindow(t *testing.T) {
	ctx := context.Background()
	st, room := openWithRoom(t, Options{Retention: time.Hour})
	for range 5 {
		if _, _, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, "m", ""); err != nil {
			t.Fatal(err)
		}
	}
	head, err := st.Head(ctx)
	if err != nil || head != 6 {
		t.Fatalf("Head = %d, %v; want 6 (a join, five messages)", head, err)
	}
	const aged = 3 // the room's member:joined and two messages
	old := Millis(time.Now().Add(-2 * time.Hour).UnixMilli())
	err = st.write(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE events SET created_at = ? WHERE seq <= ?`, old, aged)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // the second round has nothing more to delete
		if err := st.prune(ctx); err != nil {
			t.Fatal(err)
		}
		evs, err := st.Range(ctx, event.Query{UpTo: head, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != int(head)-aged || evs[0].Seq != aged+1 {
			t.Fatalf("round %d: events left = %v; want %d to %d", round, seqs(evs), aged+1, head)
		}
		if got := st.TrimmedThrough(); got != aged {
			t.Fatalf("round %d: TrimmedThrough = %d; want %d", round, got, aged)
		}
	}
}

// The pruner forgets spent tickets once they have expired, and only
// then: an expired nonce can be spent again (its ticket no longer
// verifies anyway), a live one cannot.
func TestPrunerForgetsExpiredTickets(t *testing.T) {
	ctx := context.Background()
	// A short retention makes the pruner run every 10 ms.
	st, _ := openWithRoom(t, Options{Retention: 40 * time.Millisecond})
	spend := func(nonce string, expires time.Time) bool {
		t.Helper()
		fresh, err := st.SpendTicket(ctx, nonce, expires)
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	expired, live := time.Now().Add(-time.Second), time.Now().Add(time.Hour)
	if !spend("expired", expired) || !spend("live", live) {
		t.Fatal("a new nonce is not fresh")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !spend("expired", expired) {
		if time.Now().After(deadline) {
			t.Fatal("an expired ticket's nonce is still spent after 30 s of pruning")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if spend("live", live) {
		t.Error("a live ticket's nonce was forgotten by the pruner")
	}
}

// seqs lists events' positions, for failure messages.
func seqs(evs []event.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}
