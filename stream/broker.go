package stream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// ErrTrimmed reports that a Broker no longer holds the events asked for.
var ErrTrimmed = errors.New("stream: position older than the broker holds")

// Broker is the live feed of the log. Every instance's Hub reads it from its
// current position, in order.
type Broker interface {
	// Read returns up to max events after position after, in log order. It
	// waits for the first one until ctx ends or a short bounded time passes,
	// and may then return none. It returns ErrTrimmed when after is older than
	// what the broker holds.
	Read(ctx context.Context, after int64, max int) ([]event.Event, error)
}

// MemoryBroker is the in-process Broker of embedded mode. The store's writer
// publishes each committed transaction's events to it in log order; it keeps
// the newest ones in a bounded buffer for the hub to read.
type MemoryBroker struct {
	mu     sync.Mutex
	events []event.Event // in order; guarded by mu
	notify chan struct{} // closed and replaced on each Publish; guarded by mu
	max    int
}

var _ Broker = (*MemoryBroker)(nil)

// NewMemoryBroker returns a broker that holds up to max recent events
// (default 65,536). A reader further behind gets ErrTrimmed and catches up
// from the durable log.
func NewMemoryBroker(max int) *MemoryBroker {
	if max <= 0 {
		max = 1 << 16
	}
	return &MemoryBroker{notify: make(chan struct{}), max: max}
}

// Publish appends events whose positions the durable log assigned. It never
// blocks on readers.
func (b *MemoryBroker) Publish(evs []event.Event) {
	b.mu.Lock()
	b.events = append(b.events, evs...)
	if over := len(b.events) - b.max; over > 0 {
		// Drop a slice of the oldest at once so the copy is amortised.
		drop := max(over, b.max/8)
		b.events = append(b.events[:0], b.events[drop:]...)
	}
	close(b.notify)
	b.notify = make(chan struct{})
	b.mu.Unlock()
}

// Read implements Broker.
func (b *MemoryBroker) Read(ctx context.Context, after int64, max int) ([]event.Event, error) {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for {
		b.mu.Lock()
		evs, err := b.afterLocked(after, max)
		notify := b.notify
		b.mu.Unlock()
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

func (b *MemoryBroker) afterLocked(after int64, max int) ([]event.Event, error) {
	if len(b.events) == 0 {
		return nil, nil
	}
	first := b.events[0].Seq
	if after < first-1 {
		return nil, ErrTrimmed
	}
	i := int(after - first + 1) // positions are dense within one process
	if i >= len(b.events) || b.events[i].Seq != after+1 {
		// Not dense (a gap the log itself has): fall back to a search.
		i = 0
		for i < len(b.events) && b.events[i].Seq <= after {
			i++
		}
	}
	n := min(len(b.events)-i, max)
	if n <= 0 {
		return nil, nil
	}
	return append([]event.Event(nil), b.events[i:i+n]...), nil
}
