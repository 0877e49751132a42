package stream

import (
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

// Typing tracks who is typing in which room and announces starts and stops
// to the room's other members. A typist stops by an explicit stop, by
// posting a message, by the timeout, or by closing their last stream: it is
// never stuck. Repeated starts within the timeout only extend it, so a
// client may ping on every keystroke.
type Typing struct {
	out     Notifier
	timeout time.Duration

	mu     sync.Mutex // guards active and closed; held while announcing, so events stay in order
	active map[typingKey]*typist
	closed bool
}

type typingKey struct{ room, user string }

type typist struct {
	name  string
	timer *time.Timer
	gen   int
}

// NewTyping returns a tracker whose typists stop after timeout without a
// new ping (default 5s); it announces to out, the hub.
func NewTyping(out Notifier, timeout time.Duration) *Typing {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Typing{out: out, timeout: timeout, active: map[typingKey]*typist{}}
}

// Close stops every timer; no more events are sent.
func (t *Typing) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for k, ty := range t.active {
		ty.timer.Stop()
		delete(t.active, k)
	}
}

type typingEvent struct {
	Room string `json:"room"`
	User string `json:"user"`
	Name string `json:"name,omitempty"`
}

// Set records a typing ping (typing true) or an explicit stop.
func (t *Typing) Set(room, user, name string, typing bool) {
	if !typing {
		t.Stop(room, user)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	k := typingKey{room, user}
	if ty := t.active[k]; ty != nil {
		ty.gen++
		gen := ty.gen
		ty.timer.Stop()
		ty.timer = time.AfterFunc(t.timeout, func() { t.expire(k, gen) })
		return
	}
	ty := &typist{name: name}
	ty.timer = time.AfterFunc(t.timeout, func() { t.expire(k, 0) })
	t.active[k] = ty
	t.announceLocked(k, ty.name, event.TypingStarted)
}

// Stop ends user's typing in room, if any.
func (t *Typing) Stop(room, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopLocked(typingKey{room, user})
}

// StopUser ends user's typing in every room (their last stream closed).
func (t *Typing) StopUser(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.active {
		if k.user == user {
			t.stopLocked(k)
		}
	}
}

func (t *Typing) expire(k typingKey, gen int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ty := t.active[k]; ty != nil && ty.gen == gen {
		t.stopLocked(k)
	}
}

func (t *Typing) stopLocked(k typingKey) {
	ty := t.active[k]
	if ty == nil {
		return
	}
	ty.timer.Stop()
	delete(t.active, k)
	t.announceLocked(k, ty.name, event.TypingStopped)
}

// typingNotice is a typing event for a room's members but the typist.
func typingNotice(room, user, name, typ string) Notice {
	data, _ := event.Marshal(typingEvent{Room: room, User: user, Name: name})
	return Notice{Rooms: []string{room}, Except: user, Type: typ, Data: data}
}

func (t *Typing) announceLocked(k typingKey, name, typ string) {
	t.out.Notify([]Notice{typingNotice(k.room, k.user, name, typ)})
}
