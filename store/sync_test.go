package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// With FULL, streams hear of a commit while its fsync runs, and its
// requests are answered only after the fsync: a 201 means on disk.
func TestFullPublishesBeforeTheSyncAndAnswersAfter(t *testing.T) {
	st, room := openWithRoom(t, Options{Synchronous: "FULL"})
	ctx := context.Background()
	db := st.db.(*sqliteDB)
	if db.syncWAL == nil {
		t.Fatal("FULL has the writer sync the WAL; it does not")
	}
	head, err := st.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The fakes hold the sync of a commit that published a message; the
	// pruner's commits, which publish nothing, sync as usual. They are
	// installed by the writer goroutine, their only caller.
	syncing, release := make(chan struct{}, 1), make(chan error)
	real, publish := db.syncWAL, db.onCommit
	var published []event.Event
	err = st.write(ctx, func(*Tx) error {
		db.onCommit = func(evs []event.Event) {
			published = evs
			publish(evs)
		}
		db.syncWAL = func() error {
			evs := published
			published = nil
			if len(evs) == 0 || evs[0].Type != event.MessageCreated {
				return real()
			}
			syncing <- struct{}{}
			select {
			case err := <-release:
				if err != nil {
					return err
				}
			case <-time.After(10 * time.Second): // the test failed already
			}
			return real()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		msg     Message
		created bool
		err     error
	}
	post := func(text string) chan result {
		answered := make(chan result, 1)
		go func() {
			msg, created, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, text, "c-"+text)
			answered <- result{msg, created, err}
		}()
		<-syncing
		return answered
	}

	answered := post("durable")
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	evs, err := st.Read(readCtx, head, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("events published while the commit syncs = %v, %v; want its message:created", evs, err)
	}
	select {
	case r := <-answered:
		t.Fatalf("the post was answered (%+v) before its fsync", r)
	case <-time.After(50 * time.Millisecond):
	}
	release <- nil
	if r := <-answered; r.err != nil || !r.created {
		t.Fatalf("post after its fsync = %+v; want created", r)
	}

	// A failed fsync: the commit stands and is out, but its writer cannot
	// say it is on disk. The client's retry gets the original.
	answered = post("unsure")
	release <- errors.New("EIO")
	r := <-answered
	if !errors.Is(r.err, ErrUnavailable) {
		t.Fatalf("post whose fsync failed = %+v; want ErrUnavailable", r)
	}
	retry, created, err := st.PostMessage(ctx, User{ID: "alice"}, room.ID, "unsure", "c-unsure")
	if err != nil || created || retry.Text != "unsure" {
		t.Fatalf("retry after the failed fsync = %+v created %v, %v; want the original", retry, created, err)
	}
}

// NORMAL and EXTRA leave the sync to SQLite: NORMAL does not wait for the
// disk, and EXTRA syncs inside COMMIT, before anything is published.
func TestOnlyFullSyncsAfterPublishing(t *testing.T) {
	for _, sync := range []string{"NORMAL", "EXTRA"} {
		st, _ := openWithRoom(t, Options{Synchronous: sync})
		if st.db.(*sqliteDB).syncWAL != nil {
			t.Errorf("%s: the writer syncs the WAL itself; want SQLite to", sync)
		}
	}
}
