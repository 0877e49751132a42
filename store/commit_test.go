package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// An event reaches readers if and only if its change committed. A
// transaction whose COMMIT fails (a deferred foreign key still broken at
// COMMIT) logged events inside it; none of them may appear on the live
// feed or in the table, and the next committed event must take the next
// position, so that a reader that has seen n has seen everything up to n.
func TestFailedCommitPublishesNothing(t *testing.T) {
	st, room := openWithRoom(t, Options{})
	ctx := context.Background()
	h0, err := st.Head(ctx)
	if err != nil || h0 == 0 {
		t.Fatalf("Head = %d, %v; want the room's member:joined", h0, err)
	}

	// A stream's tail, waiting on the live feed from the head: it keeps
	// the first batch it is given.
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	first := make(chan []event.Event, 1)
	go func() {
		for {
			evs, err := st.Read(readCtx, h0, 100)
			if err != nil || len(evs) > 0 {
				first <- evs
				return
			}
		}
	}()

	err = st.write(ctx, func(tx *Tx) error {
		if err := joinBob(tx, room); err != nil {
			return err
		}
		if err := tx.emit(room.ID, event.MessageCreated, "", Message{Room: room.ID, Author: "bob", Text: "never said"}); err != nil {
			return err
		}
		if _, err := tx.exec(`PRAGMA defer_foreign_keys = ON`); err != nil {
			return err
		}
		_, err := tx.exec(`INSERT INTO members (room_id, user_id, joined_at) VALUES (?, 'nobody', 0)`, room.ID)
		return err
	})
	if err == nil {
		t.Fatal("write with a broken foreign key committed")
	}

	// The marker: the next change that commits.
	msg, _, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, "marker", "")
	if err != nil {
		t.Fatalf("PostMessage after a failed commit = %v", err)
	}
	isMarker := func(e event.Event) bool {
		var m struct {
			ID   int64  `json:"id"`
			Text string `json:"text"`
		}
		return e.Type == event.MessageCreated && json.Unmarshal(e.Data, &m) == nil && m.ID == msg.ID && m.Text == "marker"
	}

	got := <-first
	if len(got) != 1 || !isMarker(got[0]) || got[0].Seq != h0+1 {
		t.Errorf("live feed after %d = %s; want only the marker at %d", h0, describe(got), h0+1)
	}
	if head, err := st.Head(ctx); err != nil || head != h0+1 {
		t.Errorf("Head = %d, %v; want %d", head, err, h0+1)
	}

	// Read never returns an event that Range does not: the same positions,
	// types and data.
	live, err := st.Read(ctx, 0, 100)
	if err != nil {
		t.Fatalf("Read(0) = %v", err)
	}
	table, err := st.Range(ctx, event.Query{After: 0, UpTo: h0 + 10, Limit: 100})
	if err != nil {
		t.Fatalf("Range = %v", err)
	}
	if len(table) != int(h0)+1 || !isMarker(table[len(table)-1]) {
		t.Errorf("table = %s; want %d events ending with the marker", describe(table), h0+1)
	}
	if len(live) != len(table) {
		t.Fatalf("live feed = %s; table = %s; want the same", describe(live), describe(table))
	}
	for i := range live {
		l, r := live[i], table[i]
		if l.Seq != r.Seq || l.Type != r.Type || l.Room != r.Room || l.Subject != r.Subject || !bytes.Equal(l.Data, r.Data) {
			t.Errorf("live event %d = %d %s %s; table has %d %s %s", i, l.Seq, l.Type, l.Data, r.Seq, r.Type, r.Data)
		}
	}
}

// describe lists events as type@position, for failure messages.
func describe(evs []event.Event) string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s@%d", e.Type, e.Seq)
	}
	return "[" + strings.Join(out, ", ") + "]"
}
