package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/heraldchat/herald/internal/event"
	"github.com/jmoiron/sqlx"
)

// The SQLite writer's queue: these tests hold a transaction open (a write
// whose function waits) while others queue behind it. They drive the
// dialect itself: a Store's pruner would queue writes of its own.

// testWriter is a SQLite writer on a new file, with what it committed.
type testWriter struct {
	*sqliteDB
	r    *sqlx.DB // its reader pool
	path string

	mu        sync.Mutex
	published []event.Event // guarded by mu
}

func openWriter(t *testing.T, maxBatch int) *testWriter {
	t.Helper()
	w := &testWriter{path: filepath.Join(t.TempDir(), "herald.db")}
	opts := Options{Path: w.path, Synchronous: "NORMAL", MaxBatch: maxBatch, Readers: 1, Logger: slog.New(slog.DiscardHandler)}
	db, r, err := openSQLite(context.Background(), opts, func(evs []event.Event) {
		w.mu.Lock()
		w.published = append(w.published, evs...)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	w.sqliteDB, w.r = db, r
	return w
}

// closeOnCleanup closes w when the test ends.
func (w *testWriter) closeOnCleanup(t *testing.T) {
	t.Cleanup(func() {
		w.close()
		w.r.Close()
	})
}

func (w *testWriter) events() []event.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event.Event(nil), w.published...)
}

// hold starts a write that waits inside its transaction until release is
// closed, and returns once it is running. Its answer arrives on the
// returned channel.
func (w *testWriter) hold(release <-chan struct{}) <-chan error {
	running, answer := make(chan struct{}), make(chan error, 1)
	go func() {
		answer <- w.write(context.Background(), func(tx *Tx) error {
			close(running)
			<-release
			return nil
		})
	}()
	<-running
	return answer
}

// queue starts n writes of one event each, and returns once all of them
// wait in the queue. Each records the transaction it ran in to txs, and
// sends its answer on the returned channel.
func (w *testWriter) queue(n int, txs *sync.Map) <-chan error {
	answers := make(chan error, n)
	queued := len(w.reqs)
	for range n {
		go func() {
			answers <- w.write(context.Background(), func(tx *Tx) error {
				txs.Store(tx, true)
				return tx.emit("r", "test:queued", "", map[string]int{})
			})
		}()
	}
	for len(w.reqs) < queued+n {
		runtime.Gosched()
	}
	return answers
}

func count(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// Requests that queue while a transaction runs share the next commits, up
// to MaxBatch requests each.
func TestQueuedWritesShareCommits(t *testing.T) {
	for _, tc := range []struct{ maxBatch, queued, wantTxs int }{
		{256, 10, 1},
		{4, 10, 3}, // 4 + 4 + 2
		{1, 3, 3},
	} {
		t.Run(fmt.Sprintf("max%d", tc.maxBatch), func(t *testing.T) {
			w := openWriter(t, tc.maxBatch)
			w.closeOnCleanup(t)
			release := make(chan struct{})
			held := w.hold(release)
			var txs sync.Map
			answers := w.queue(tc.queued, &txs)
			close(release)
			if err := <-held; err != nil {
				t.Fatalf("held write = %v", err)
			}
			for range tc.queued {
				if err := <-answers; err != nil {
					t.Fatalf("queued write = %v", err)
				}
			}
			if got := count(&txs); got != tc.wantTxs {
				t.Errorf("%d queued writes ran in %d transactions with MaxBatch %d; want %d", tc.queued, got, tc.maxBatch, tc.wantTxs)
			}
			if got := len(w.events()); got != tc.queued {
				t.Errorf("%d events committed; want %d", got, tc.queued)
			}
		})
	}
}

// A write whose function panics (a bug) fails alone: the panic becomes
// that write's error, its changes roll back, the rest of its batch commits,
// and the writer goes on.
func TestPanickingWriteFailsAlone(t *testing.T) {
	w := openWriter(t, 256)
	w.closeOnCleanup(t)
	release := make(chan struct{})
	held := w.hold(release)

	// Queued before and after the panicking write: one batch of three.
	var txs sync.Map
	before := w.queue(1, &txs)
	failed := make(chan error, 1)
	go func() {
		failed <- w.write(context.Background(), func(tx *Tx) error {
			txs.Store(tx, true)
			if err := tx.emit("r", "test:doomed", "", map[string]int{}); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	for len(w.reqs) < 2 {
		runtime.Gosched()
	}
	after := w.queue(1, &txs)
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("held write = %v", err)
	}
	if err := <-failed; err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("the panicking write = %v; want its panic as an error", err)
	}
	for _, answer := range []<-chan error{before, after} {
		if err := <-answer; err != nil {
			t.Errorf("a write in the panicking write's batch = %v", err)
		}
	}
	if n := count(&txs); n != 1 {
		t.Errorf("the three writes ran in %d transactions; want 1", n)
	}
	evs := w.events()
	if len(evs) != 2 || evs[0].Type != "test:queued" || evs[1].Type != "test:queued" || evs[1].Seq != evs[0].Seq+1 {
		t.Errorf("committed %s; want the two other writes' events only, at consecutive positions", describe(evs))
	}
	// The writer goes on.
	if err := w.write(context.Background(), func(*Tx) error { return nil }); err != nil {
		t.Errorf("write after a panicking write = %v", err)
	}
}

// close finishes the transaction running; each write queued behind it is
// answered, either committed or ErrClosed, and each answered nil is stored.
func TestCloseAnswersQueuedWrites(t *testing.T) {
	w := openWriter(t, 4)
	release := make(chan struct{})
	held := w.hold(release)
	const n = 20
	var txs sync.Map
	answers := w.queue(n, &txs)
	closed := make(chan error, 1)
	go func() { closed <- w.close() }()
	for !w.isClosed() {
		runtime.Gosched()
	}
	if err := w.write(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close = %v; want ErrClosed", err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("held write = %v", err)
	}
	stored := 0
	for range n {
		switch err := <-answers; {
		case err == nil:
			stored++
		case !errors.Is(err, ErrClosed):
			t.Errorf("queued write = %v; want nil or ErrClosed", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("close = %v", err)
	}
	w.r.Close()

	st, err := Open(context.Background(), Options{Path: w.path, Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rows int
	if err := st.get(context.Background(), &rows, `SELECT COUNT(*) FROM events WHERE type = 'test:queued'`); err != nil {
		t.Fatal(err)
	}
	if rows != stored || len(w.events()) != stored {
		t.Errorf("%d events in the file, %d published; want the %d writes answered nil", rows, len(w.events()), stored)
	}
}

func (w *testWriter) isClosed() bool {
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	return w.closed
}
