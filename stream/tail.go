package stream

import (
	"cmp"
	"slices"
	"sync"

	"github.com/heraldchat/herald/internal/event"
)

// tail is the recent part of the log kept in memory, indexed by room and by
// the user an event is about, so that most replays never touch the
// durable log. The hub's dispatcher is its only writer.
type tail struct {
	mu       sync.RWMutex
	max      int // events held at most
	maxBytes int // bytes held at most, data and frames
	bytes    int // guarded by mu
	// base is the position just before the oldest event held: the tail holds
	// every event in (base, last]. Guarded by mu, like the maps and slices.
	base      int64
	last      int64
	events    []*entry
	byRoom    map[string][]*entry
	bySubject map[string][]*entry
}

func newTail(max, maxBytes int, pos int64) *tail {
	return &tail{max: max, maxBytes: maxBytes, base: pos, last: pos, byRoom: map[string][]*entry{}, bySubject: map[string][]*entry{}}
}

// size is what an entry costs the tail.
func (e *entry) size() int { return len(e.Data) + len(e.frame) + 128 }

// append adds events in log order and evicts the oldest beyond max events
// or maxBytes.
func (t *tail) append(evs []*entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range evs {
		t.bytes += e.size()
		t.events = append(t.events, e)
		t.byRoom[e.Room] = append(t.byRoom[e.Room], e)
		if e.Subject != "" {
			t.bySubject[e.Subject] = append(t.bySubject[e.Subject], e)
		}
		t.last = e.Seq
	}
	over := len(t.events) - t.max
	if t.bytes > t.maxBytes {
		// As many of the oldest as take the bytes back under the bound.
		over = max(over, 0)
		for b := t.bytes; over < len(t.events) && b > t.maxBytes; over++ {
			b -= t.events[over].size()
		}
	}
	if over > 0 {
		// Evict in chunks so the bookkeeping is amortised.
		drop := min(len(t.events), max(over, t.max/8))
		for _, e := range t.events[:drop] {
			t.bytes -= e.size()
			t.byRoom[e.Room] = popFront(t.byRoom, e.Room)
			if e.Subject != "" {
				t.bySubject[e.Subject] = popFront(t.bySubject, e.Subject)
			}
		}
		t.base = t.events[drop-1].Seq
		t.events = slices.Delete(t.events, 0, drop)
	}
}

func popFront(m map[string][]*entry, k string) []*entry {
	s := m[k]
	if len(s) <= 1 {
		delete(m, k)
		return nil
	}
	return s[1:]
}

// covers reports whether the tail holds every event in (after, upTo].
func (t *tail) covers(after, upTo int64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return after >= t.base && upTo <= t.last
}

// between returns the events of s in (after, upTo]; s is in log order.
func between(s []*entry, after, upTo int64) []*entry {
	i, _ := slices.BinarySearchFunc(s, after+1, func(e *entry, seq int64) int { return cmp.Compare(e.Seq, seq) })
	j, _ := slices.BinarySearchFunc(s, upTo+1, func(e *entry, seq int64) int { return cmp.Compare(e.Seq, seq) })
	return s[i:j]
}

// subjectEvents returns the events about user in (after, upTo]: their
// membership events and the events for them alone.
func (t *tail) subjectEvents(user string, after, upTo int64) ([]*entry, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if after < t.base {
		return nil, event.ErrTrimmed
	}
	return slices.Clone(between(t.bySubject[user], after, upTo)), nil
}

// roomEvents returns, in log order, the events of rooms in (after, upTo].
// It reads whichever is shorter, the range or the rooms' indexes, so that
// a user in many rooms costs no more than the range.
func (t *tail) roomEvents(rooms map[string]bool, after, upTo int64) ([]*entry, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if after < t.base {
		return nil, event.ErrTrimmed
	}
	var out []*entry
	if all := between(t.events, after, upTo); len(all) <= len(rooms) {
		for _, e := range all {
			if rooms[e.Room] {
				out = append(out, e)
			}
		}
		return out, nil
	}
	for r := range rooms {
		out = append(out, between(t.byRoom[r], after, upTo)...)
	}
	if len(rooms) > 1 {
		slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return out, nil
}
