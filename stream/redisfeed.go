package stream

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/internal/quietlog"
	"github.com/redis/go-redis/v9"
)

// RedisFeed carries ephemeral notices (presence, typing) between the
// instances of a cluster on one Redis channel: Notify publishes, and a
// goroutine of its own subscribes and hands every message to the local
// hub. Pub/sub delivers at most once, which is what ephemeral events need:
// a stream that misses one refetches presence over REST when it comes
// back, and typing is over by then.
type RedisFeed struct {
	rdb     redis.UniversalClient
	channel string
	local   *Hub
	logger  *slog.Logger

	ps     *redis.PubSub
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	quiet    *quietlog.Logger // for Redis's failures
	versions versions         // run's
}

var _ Notifier = (*RedisFeed)(nil)

// NewRedisFeed subscribes to the feed's channel and delivers what comes to
// local (the hub) until Close. It waits a short while for the subscription
// to be confirmed; go-redis subscribes again after reconnecting.
func NewRedisFeed(rdb redis.UniversalClient, prefix string, local *Hub, logger *slog.Logger) *RedisFeed {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &RedisFeed{rdb: rdb, channel: prefix + "notices", local: local, logger: logger, quiet: quietlog.New(logger), cancel: cancel, done: make(chan struct{})}
	f.ps = rdb.Subscribe(ctx, f.channel)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := f.ps.Receive(wctx); err != nil {
		logger.Warn("subscribe to the notice feed (retrying in the background)", "err", err)
	}
	wcancel()
	go f.run(ctx)
	return f
}

func (f *RedisFeed) run(ctx context.Context) {
	defer close(f.done)
	ch := f.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if s, ok := msg.(*redis.Subscription); ok {
				// Subscribed again after the connection was lost (the
				// first subscription was awaited by NewRedisFeed): what
				// was published meanwhile never came.
				if s.Kind == "subscribe" {
					f.local.NotifyAll(event.PresenceStale, []byte("{}"))
				}
				continue
			}
			m, ok := msg.(*redis.Message)
			if !ok {
				continue
			}
			var notices []Notice
			if err := json.Unmarshal([]byte(m.Payload), &notices); err != nil {
				f.logger.Error("undecodable notice", "err", err)
				continue
			}
			kept := notices[:0]
			for _, n := range notices {
				if f.versions.fresh(n, time.Now()) {
					kept = append(kept, n)
				}
			}
			f.local.Notify(kept)
		}
	}
}

// versions remembers the last Version delivered of each user's notices,
// for at least versionMemory: a change's notice reaches every instance
// well within it, so a notice it made stale comes no later.
type versions struct {
	cur, old map[string]int64
	rotated  time.Time
}

const versionMemory = time.Minute

// fresh reports whether n is not older than a notice of its user that was
// delivered already, and records it.
func (v *versions) fresh(n Notice, now time.Time) bool {
	if n.Of == "" || n.Version == 0 {
		return true
	}
	if v.cur == nil || now.Sub(v.rotated) >= versionMemory {
		v.old, v.cur, v.rotated = v.cur, map[string]int64{}, now
	}
	if n.Version <= max(v.cur[n.Of], v.old[n.Of]) {
		return false
	}
	v.cur[n.Of] = n.Version
	return true
}

// Notify publishes notices to every instance, this one included. While
// Redis is unreachable they reach this instance's streams only.
func (f *RedisFeed) Notify(notices []Notice) {
	if len(notices) == 0 {
		return
	}
	payload, err := f.encode(notices...)
	if err != nil {
		f.logger.Error("encode notices", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.rdb.Publish(ctx, f.channel, payload).Err(); err != nil {
		f.quiet.Warn("redis unavailable: presence and typing reach this instance only", "err", err)
		f.local.Notify(notices)
	}
}

// encode is a message of the feed's channel: its subscribers deliver
// notices to their instances' streams.
func (f *RedisFeed) encode(notices ...Notice) (string, error) {
	b, err := json.Marshal(notices)
	return string(b), err
}

// Close stops the subscriber and waits for it. Idempotent.
func (f *RedisFeed) Close() {
	f.once.Do(func() {
		f.cancel()
		f.ps.Close()
	})
	<-f.done
}
