package store

import (
	"context"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// live keeps the newest committed events in memory, so that the hubs of
// embedded mode tail the log without a query: the writer publishes each
// committed transaction's events to it in log order, and readers wait on
// it. Older events are read from the table (Range).
type live struct {
	mu       sync.Mutex
	events   []event.Event // in order; guarded by mu
	bytes    int           // of the events' data; guarded by mu
	notify   chan struct{} // closed and replaced on each publish; guarded by mu
	max      int           // events held at most
	maxBytes int           // bytes of data held at most
}

func newLive(max, maxBytes int) *live {
	return &live{notify: make(chan struct{}), max: max, maxBytes: maxBytes}
}

// publish appends events in log order. It never blocks on readers.
func (l *live) publish(evs []event.Event) {
	l.mu.Lock()
	l.events = append(l.events, evs...)
	for _, e := range evs {
		l.bytes += len(e.Data)
	}
	over := len(l.events) - l.max
	if l.bytes > l.maxBytes {
		// As many of the oldest as take the bytes back under the bound.
		over = max(over, 0)
		for b := l.bytes; b > l.maxBytes && over < len(l.events); over++ {
			b -= len(l.events[over].Data)
		}
	}
	if over > 0 {
		// Drop a slice of the oldest at once so the copy is amortised.
		drop := min(len(l.events), max(over, l.max/8))
		for _, e := range l.events[:drop] {
			l.bytes -= len(e.Data)
		}
		l.events = append(l.events[:0], l.events[drop:]...)
	}
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

// read returns up to max events after position after, waiting up to wait
// for the first; event.ErrTrimmed when after is older than what it holds.
func (l *live) read(ctx context.Context, after int64, max int, wait time.Duration) ([]event.Event, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		l.mu.Lock()
		evs, err := l.afterLocked(after, max)
		notify := l.notify
		l.mu.Unlock()
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, nil
		}
	}
}

func (l *live) afterLocked(after int64, max int) ([]event.Event, error) {
	if len(l.events) == 0 {
		return nil, nil
	}
	first := l.events[0].Seq
	if after < first-1 {
		return nil, event.ErrTrimmed
	}
	i := int(after - first + 1) // positions are dense
	if i >= len(l.events) || l.events[i].Seq != after+1 {
		// Not where density puts it: search rather than trust the index.
		i = 0
		for i < len(l.events) && l.events[i].Seq <= after {
			i++
		}
	}
	n := min(len(l.events)-i, max)
	if n <= 0 {
		return nil, nil
	}
	return append([]event.Event(nil), l.events[i:i+n]...), nil
}
