package stream

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldchat/herald/internal/event"
)

// emptyLog is a Log with no history and no new events: enough for
// benchmarks of the live path, which call dispatch themselves.
type emptyLog struct{}

func (emptyLog) Epoch() string { return "bench" }
func (emptyLog) Snapshot(context.Context, string) ([]string, int64, error) {
	return nil, 0, nil
}
func (emptyLog) Read(ctx context.Context, _ int64, _ int) ([]event.Event, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (emptyLog) Range(context.Context, event.Query) ([]event.Event, error) { return nil, nil }
func (emptyLog) TrimmedThrough() int64                                     { return 0 }

// BenchmarkDispatch_1000Conns routes one message to 1,000 connections in its
// room: encode once, queue the same bytes to each. Writers take their queues
// on the side, as pumps do, so queues never fill.
func BenchmarkDispatch_1000Conns(b *testing.B) {
	const n = 1000
	h, err := NewHub(context.Background(), emptyLog{}, emptyLog{}, Options{QueueSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	conns := make([]*conn, n)
	for i := range conns {
		c := newConn(fmt.Sprint("u", i), 1<<20)
		if _, _, err := h.register(c, []string{"room"}, 0); err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	data := []byte(`{"id":1,"room":"room","user":"alice","text":"` + string(make([]byte, 0, 100)) + `hello"}`)
	spares := make([][][]byte, n)
	b.ReportAllocs()
	seq := int64(0)
	for b.Loop() {
		seq++
		h.dispatch([]event.Event{{Seq: seq, Room: "room", Type: "message:created", Data: data}})
		if seq%64 == 0 {
			// Drain, as the writers would, without timing their writes.
			b.StopTimer()
			for i, c := range conns {
				frames, _ := c.take(spares[i])
				clear(frames)
				spares[i] = frames[:0]
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
}
