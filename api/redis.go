package api

import (
	"context"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// What a cluster's instances must agree on besides the log: rate-limit
// buckets and spent stream tickets, kept in Redis.

// RedisBuckets keeps rate-limit buckets in Redis (GCRA, one key per user
// and action), shared by every instance.
type RedisBuckets struct {
	l      *redis_rate.Limiter
	prefix string
}

var _ Buckets = RedisBuckets{}

// NewRedisBuckets keeps buckets in rdb under prefix.
func NewRedisBuckets(rdb redis.UniversalClient, prefix string) RedisBuckets {
	return RedisBuckets{redis_rate.NewLimiter(rdb), prefix}
}

// Take implements Buckets. A rate of r per second is r×1000 per 1000 s,
// so that fractional rates keep their precision.
func (b RedisBuckets) Take(ctx context.Context, key string, rate float64, burst int) (time.Duration, error) {
	res, err := b.l.Allow(ctx, b.prefix+key, redis_rate.Limit{
		Rate: max(1, int(math.Round(rate*1000))), Period: 1000 * time.Second, Burst: burst,
	})
	if err != nil {
		return 0, err
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}

// Tickets remember the stream tickets spent, so that a ticket opens one
// stream, also after a restart (the store) and on any instance of a
// cluster (Redis).
type Tickets interface {
	// SpendTicket records nonce as spent until expires; fresh is false
	// when it already was.
	SpendTicket(ctx context.Context, nonce string, expires time.Time) (fresh bool, err error)
}

// RedisTickets keeps spent tickets in Redis until they expire.
type RedisTickets struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ Tickets = RedisTickets{}

// NewRedisTickets keeps spent tickets in rdb under prefix.
func NewRedisTickets(rdb redis.UniversalClient, prefix string) RedisTickets {
	return RedisTickets{rdb, prefix}
}

// SpendTicket implements Tickets.
func (t RedisTickets) SpendTicket(ctx context.Context, nonce string, expires time.Time) (bool, error) {
	return t.rdb.SetNX(ctx, t.prefix+"ticket:"+nonce, 1, time.Until(expires)+time.Second).Result()
}
