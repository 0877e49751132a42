package stream

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/internal/quietlog"
	"github.com/redis/go-redis/v9"
)

// Typing across the instances of a cluster lives in Redis:
//
//	PREFIX typ:ROOM\0USER     the typist's typing:stopped notice, while typing
//	PREFIX typ:deadlines      zset: ROOM\0USER → when the typing times out (ms)
//	PREFIX typ:user:USER      set: the rooms USER is typing in
//
// A ping on any instance starts or extends the typing; every instance
// sweeps the deadlines, and the one whose script claims an entry
// announces the stop, so a typist whose instance died stops by the
// timeout all the same. User and room ids never hold a NUL, so the key
// cannot be read two ways.
//
// The script that starts or stops a typing publishes its notice on the
// feed's channel itself: a ping and a stop sent at once through two
// instances reach every stream in the order Redis applied them, and the
// last one heard is what Redis holds. Published from Go after the script,
// they could cross, and leave a typist shown as typing for good.

// RedisTyping is the typing tracker of a cluster. It owns one goroutine,
// the sweeper; Close stops it.
type RedisTyping struct {
	rdb     redis.UniversalClient
	feed    *RedisFeed
	timeout time.Duration
	prefix  string
	quiet   *quietlog.Logger // for Redis's failures

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewRedisTyping starts a tracker whose typists stop after timeout without
// a new ping (default 5s); it announces on feed, the cluster's.
func NewRedisTyping(rdb redis.UniversalClient, feed *RedisFeed, timeout time.Duration, prefix string, logger *slog.Logger) *RedisTyping {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if prefix == "" {
		prefix = "herald:"
	}
	t := &RedisTyping{rdb: rdb, feed: feed, timeout: timeout, prefix: prefix, quiet: quietlog.New(logger),
		stop: make(chan struct{}), done: make(chan struct{})}
	go t.sweeper()
	return t
}

// Close stops the sweeper. Idempotent.
func (t *RedisTyping) Close() {
	t.once.Do(func() { close(t.stop) })
	<-t.done
}

func (t *RedisTyping) keys(room, user string) []string {
	return []string{t.prefix + "typ:" + room + "\x00" + user, t.prefix + "typ:deadlines", t.prefix + "typ:user:" + user}
}

// typingStartScript records a ping and keeps the notice of its stop
// (ARGV[1]); when the typing starts (was not on) it publishes ARGV[6] on
// the feed's channel, ARGV[7].
var typingStartScript = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[5])
if existed == 0 then redis.call('PUBLISH', ARGV[7], ARGV[6]) end
return 1 - existed
`)

// typingStopScript ends a typing and publishes its stop notice on the
// feed's channel, ARGV[3]; it returns 0 when there was no typing to end.
var typingStopScript = redis.NewScript(`
local stopped = redis.call('GET', KEYS[1])
if not stopped then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', ARGV[3], stopped)
return 1
`)

// typingExpireScript ends the typings whose deadline passed and publishes
// their stop notices on the feed's channel, ARGV[3]; it returns the ROOM\0USER of each it claimed whose
// notice had expired with its key (every instance was away for longer
// than the key outlives the deadline).
var typingExpireScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 200)
local lost = {}
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local sep = string.find(m, '\0', 1, true)
  local room, user = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  local k = ARGV[2] .. 'typ:' .. m
  local stopped = redis.call('GET', k)
  redis.call('DEL', k)
  redis.call('SREM', ARGV[2] .. 'typ:user:' .. user, room)
  if stopped then redis.call('PUBLISH', ARGV[3], stopped) else table.insert(lost, m) end
end
return lost
`)

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

// Set records a typing ping (typing true) or an explicit stop.
func (t *RedisTyping) Set(room, user, name string, typing bool) {
	if !typing {
		t.Stop(room, user)
		return
	}
	started, err1 := t.feed.encode(typingNotice(room, user, name, event.TypingStarted))
	stopped, err2 := t.feed.encode(typingNotice(room, user, name, event.TypingStopped))
	if err := cmp.Or(err1, err2); err != nil {
		t.quiet.Warn("encode a typing notice", "err", err)
		return
	}
	ctx, cancel := callCtx()
	defer cancel()
	deadline := nowMillis() + t.timeout.Milliseconds()
	// The key outlives its deadline: the sweeper reads the notice from it.
	ttl := (t.timeout + 30*time.Second).Milliseconds()
	err := typingStartScript.Run(ctx, t.rdb, t.keys(room, user), stopped, ttl, deadline, room+"\x00"+user, room, started, t.feed.channel).Err()
	if err != nil {
		t.quiet.Warn("record typing in redis", "err", err)
	}
}

// Stop ends user's typing in room, if any.
func (t *RedisTyping) Stop(room, user string) {
	ctx, cancel := callCtx()
	defer cancel()
	if err := typingStopScript.Run(ctx, t.rdb, t.keys(room, user), room+"\x00"+user, room, t.feed.channel).Err(); err != nil {
		t.quiet.Warn("stop typing in redis", "err", err)
	}
}

// StopUser ends user's typing in every room (their last stream closed).
func (t *RedisTyping) StopUser(user string) {
	ctx, cancel := callCtx()
	rooms, err := t.rdb.SMembers(ctx, t.prefix+"typ:user:"+user).Result()
	cancel()
	if err != nil {
		t.quiet.Warn("find typing in redis", "err", err)
		return
	}
	for _, r := range rooms {
		t.Stop(r, user)
	}
}

// sweeper ends the typings that timed out, on whichever instance first
// claims them.
func (t *RedisTyping) sweeper() {
	defer close(t.done)
	tick := time.NewTicker(min(250*time.Millisecond, t.timeout/10+time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := callCtx()
		lost, err := typingExpireScript.Run(ctx, t.rdb, []string{t.prefix + "typ:deadlines"}, nowMillis(), t.prefix, t.feed.channel).StringSlice()
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			continue // Redis is down; the typings time out when it is back
		}
		var notices []Notice
		for _, m := range lost {
			room, user, _ := strings.Cut(m, "\x00")
			notices = append(notices, typingNotice(room, user, "", event.TypingStopped))
		}
		t.feed.Notify(notices)
	}
}
