package api

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/quietlog"
	"golang.org/x/time/rate"
)

// RateLimits are per-user rates in events per second; bursts are twice the
// rate. A zero rate disables that limit.
type RateLimits struct {
	Messages float64 // posts to rooms (default 20/s when enabled)
	Writes   float64 // other actions: rooms, joins, members, tickets (default 10/s)
	Typing   float64 // typing pings (default 10/s)
	Reads    float64 // GET requests: history, members, presence (default 50/s)
	Streams  float64 // streams opened, each a replay maybe (default 5/s)
}

type action int

const (
	actionMessage action = iota
	actionWrite
	actionTyping
	actionRead
	actionStream
	numActions
)

// Buckets keep the token buckets of a cluster's instances in one place, so
// that a user's limit holds whichever instance they reach. RedisBuckets
// implements it; without one, each instance keeps its own in memory.
type Buckets interface {
	// Take takes a token from key's bucket, which refills at rate per
	// second up to burst, and returns how long to wait when it is empty.
	Take(ctx context.Context, key string, rate float64, burst int) (wait time.Duration, err error)
}

// limiter holds one token bucket per user and action, in memory unless
// shared is set. Buckets idle for a while are full again, so they are
// swept away instead of kept forever.
type limiter struct {
	rates  [numActions]float64
	shared Buckets
	quiet  *quietlog.Logger // for the shared buckets' failures

	mu      sync.Mutex // guards buckets and swept
	buckets map[bucketKey]*rate.Limiter
	swept   time.Time
}

type bucketKey struct {
	user   string
	action action
}

func newLimiter(l RateLimits, shared Buckets, logger *slog.Logger) *limiter {
	return &limiter{rates: [numActions]float64{l.Messages, l.Writes, l.Typing, l.Reads, l.Streams}, shared: shared, quiet: quietlog.New(logger),
		buckets: map[bucketKey]*rate.Limiter{}}
}

// burstOf is a rate's burst: twice the rate, and at least one.
func burstOf(r float64) int { return max(1, int(math.Ceil(2*r))) }

// allow takes a token or returns a 429 error saying when to retry.
func (l *limiter) allow(ctx context.Context, user string, a action) error {
	r := l.rates[a]
	if r <= 0 {
		return nil
	}
	if l.shared != nil {
		wait, err := l.shared.Take(ctx, user+":"+strconv.Itoa(int(a)), r, burstOf(r))
		if err == nil {
			return tooMany(wait)
		}
		// Fail open: a limit is not worth refusing every action while the
		// shared buckets are out of reach. This instance's own buckets
		// hold meanwhile.
		l.quiet.Warn("shared rate limit unavailable: limiting per instance", "err", err)
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
		b = rate.NewLimiter(rate.Limit(r), burstOf(r))
		l.buckets[k] = b
	}
	res := b.ReserveN(now, 1)
	l.mu.Unlock()
	d := res.DelayFrom(now)
	if d > 0 {
		res.CancelAt(now)
	}
	return tooMany(d)
}

// tooMany is the 429 for a wait, or nil when there is none.
func tooMany(wait time.Duration) error {
	if wait <= 0 {
		return nil
	}
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many requests; slow down",
		RetryAfter: max(1, int(math.Ceil(wait.Seconds())))}
}
