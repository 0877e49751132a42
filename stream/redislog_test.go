package stream_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	code := m.Run()
	streamtest.StopSharedRedis()
	os.Exit(code)
}

// durable is an in-memory stand-in for PostgreSQL's log: positions 1..n.
type durable struct {
	mu      sync.Mutex
	evs     []event.Event
	trimmed int64
}

func (d *durable) Epoch() string { return "e1" }

func (d *durable) TrimmedThrough() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.trimmed
}

func (d *durable) Range(_ context.Context, q event.Query) ([]event.Event, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []event.Event{}
	for _, e := range d.evs {
		if e.Seq > q.After && e.Seq <= q.UpTo && e.Seq > d.trimmed && len(out) < q.Limit &&
			(q.Rooms == nil || slices.Contains(q.Rooms, e.Room)) && (q.Subject == "" || q.Subject == e.Subject) {
			out = append(out, e)
		}
	}
	return out, nil
}

// add appends n events to the durable log and returns them.
func (d *durable) add(n int) []event.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []event.Event
	for range n {
		seq := int64(len(d.evs) + 1)
		e := event.Event{Seq: seq, Room: "r", Type: event.MessageCreated, Data: []byte(`{"n":1}`), CreatedAt: seq}
		d.evs = append(d.evs, e)
		out = append(out, e)
	}
	return out
}

func seqsOf(evs []event.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func newRedisLog(t *testing.T, r *streamtest.Redis, d *durable, maxLen int) (*stream.RedisLog, *redis.Client) {
	t.Helper()
	rdb, err := stream.NewRedisClient(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return stream.NewRedisLog(rdb, d, stream.RedisOptions{MaxLen: maxLen, Block: 100 * time.Millisecond}), rdb
}

// A Redis that restarted empty is refilled with the newest events only;
// a reader behind them is told so (ErrTrimmed), and Range serves it from
// the durable log. Nothing is skipped.
func TestRedisLogRefillAfterWipe(t *testing.T) {
	ctx := context.Background()
	r := streamtest.StartRedis(t, false)
	d := &durable{}
	l, _ := newRedisLog(t, r, d, 10)
	evs := d.add(30)
	if err := l.Append(ctx, 30, evs); err != nil {
		t.Fatalf("Append = %v", err)
	}
	if got, err := l.Read(ctx, 25, 100); err != nil || !slices.Equal(seqsOf(got), []int64{26, 27, 28, 29, 30}) {
		t.Fatalf("Read(after 25) = %v, %v; want 26..30", seqsOf(got), err)
	}

	r.Kill() // comes back empty
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	more := d.add(5)
	if err := l.Append(ctx, 35, more); err != nil {
		t.Fatalf("Append after the wipe = %v", err)
	}
	// Refilled with no more than MaxLen of the newest: 26..35.
	if got, err := l.Read(ctx, 25, 100); err != nil || len(got) == 0 || got[0].Seq != 26 || got[len(got)-1].Seq != 35 {
		t.Fatalf("Read(after 25) after the refill = %v, %v; want 26..35", seqsOf(got), err)
	}
	if _, err := l.Read(ctx, 5, 100); !errors.Is(err, event.ErrTrimmed) {
		t.Fatalf("Read(after 5), older than the refill = %v; want ErrTrimmed", err)
	}
	got, err := l.Range(ctx, event.Query{After: 5, UpTo: 35, Limit: 100})
	if err != nil || len(got) != 30 || got[0].Seq != 6 {
		t.Fatalf("Range(5, 35] = %v, %v; want 6..35 from the durable log", seqsOf(got), err)
	}
}

// A retried append is refused rather than duplicated, and an append that
// does not follow what Redis holds brings the missing events from the
// durable log first.
func TestRedisLogAppendOnce(t *testing.T) {
	ctx := context.Background()
	url, prefix := streamtest.RedisURL(t)
	rdb, err := stream.NewRedisClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	d := &durable{}
	l := stream.NewRedisLog(rdb, d, stream.RedisOptions{Prefix: prefix, Block: 100 * time.Millisecond})
	evs := d.add(10)
	if err := l.Append(ctx, 5, evs[:5]); err != nil {
		t.Fatal(err)
	}
	// A second leader (another RedisLog) appends the same and more.
	l2 := stream.NewRedisLog(rdb, d, stream.RedisOptions{Prefix: prefix})
	if err := l2.Append(ctx, 10, evs); err != nil {
		t.Fatal(err)
	}
	// The first one, behind, appends what it sequenced again.
	if err := l.Append(ctx, 10, evs[5:]); err != nil {
		t.Fatal(err)
	}
	got, err := l.Range(ctx, event.Query{After: 0, UpTo: 10, Limit: 100})
	if err != nil || !slices.Equal(seqsOf(got), []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("Range = %v, %v; want 1..10, each once", seqsOf(got), err)
	}
	if n, err := rdb.XLen(ctx, prefix+"log:e1").Result(); err != nil || n != 10 {
		t.Fatalf("XLEN = %d, %v; want 10 entries", n, err)
	}
}

// While Redis is unreachable, Read hands its reader to the durable log
// (ErrTrimmed) after a short wait instead of failing.
func TestRedisLogUnreachable(t *testing.T) {
	ctx := context.Background()
	r := streamtest.StartRedis(t, false)
	d := &durable{}
	l, _ := newRedisLog(t, r, d, 100)
	d.add(3)
	r.Kill()
	if _, err := l.Read(ctx, 0, 10); !errors.Is(err, event.ErrTrimmed) {
		t.Fatalf("Read with redis down = %v; want ErrTrimmed", err)
	}
	got, err := l.Range(ctx, event.Query{After: 0, UpTo: 3, Limit: 10})
	if err != nil || len(got) != 3 {
		t.Fatalf("Range with redis down = %v, %v; want 1..3 from the durable log", seqsOf(got), err)
	}
}
