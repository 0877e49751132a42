package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimits are per-user rates in events per second; bursts are twice the
// rate. A zero rate disables that limit.
type RateLimits struct {
	Messages float64 // posts to rooms (default 20/s when enabled)
	Writes   float64 // other actions: rooms, joins, members, tickets (default 10/s)
	Typing   float64 // typing pings (default 10/s)
}

type action int

const (
	actionMessage action = iota
	actionWrite
	actionTyping
	numActions
)

// limiter holds one token bucket per user and action. Buckets idle for a
// while are full again, so they are swept away instead of kept forever.
type limiter struct {
	rates [numActions]float64

	mu      sync.Mutex // guards buckets and swept
	buckets map[bucketKey]*rate.Limiter
	swept   time.Time
}

type bucketKey struct {
	user   string
	action action
}

func newLimiter(l RateLimits) *limiter {
	return &limiter{rates: [numActions]float64{l.Messages, l.Writes, l.Typing}, buckets: map[bucketKey]*rate.Limiter{}}
}

// allow takes a token or returns a 429 error saying when to retry.
func (l *limiter) allow(user string, a action) error {
	r := l.rates[a]
	if r <= 0 {
		return nil
	}
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(b.Burst()) {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	k := bucketKey{user, a}
	b := l.buckets[k]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(2*r))))
		l.buckets[k] = b
	}
	res := b.ReserveN(now, 1)
	l.mu.Unlock()
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many requests; slow down",
			RetryAfter: max(1, int(math.Ceil(d.Seconds())))}
	}
	return nil
}
