package stream

import (
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
//	PREFIX typ:ROOM\0USER     the typist's display name, while typing
//	PREFIX typ:deadlines      zset: ROOM\0USER → when the typing times out (ms)
//	PREFIX typ:user:USER      set: the rooms USER is typing in
//
// A ping on any instance starts or extends the typing; every instance
// sweeps the deadlines, and the one whose script claims an entry
// announces the stop, so a typist whose instance died stops by the
// timeout all the same. User and room ids never hold a NUL, so the key
// cannot be read two ways.

// RedisTyping is the typing tracker of a cluster. It owns one goroutine,
// the sweeper; Close stops it.
type RedisTyping struct {
	rdb     redis.UniversalClient
	out     Notifier
	timeout time.Duration
	prefix  string
	logger  *slog.Logger
	quiet   *quietlog.Logger // for Redis's failures

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewRedisTyping starts a tracker whose typists stop after timeout without
// a new ping (default 5s); it announces to out, the cluster's feed.
func NewRedisTyping(rdb redis.UniversalClient, out Notifier, timeout time.Duration, prefix string, logger *slog.Logger) *RedisTyping {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if prefix == "" {
		prefix = "herald:"
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &RedisTyping{rdb: rdb, out: out, timeout: timeout, prefix: prefix, logger: logger, quiet: quietlog.New(logger),
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

// typingStartScript records a ping; it returns 1 when the typing starts
// (was not on), 0 when it only extends.
var typingStartScript = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[5])
return 1 - existed
`)

// typingStopScript ends a typing; it returns the typist's name, or false
// when they were not typing.
var typingStopScript = redis.NewScript(`
local name = redis.call('GET', KEYS[1])
if not name then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
return name
`)

// typingExpireScript ends the typings whose deadline passed; it returns
// ROOM\0USER, name for each it claimed.
var typingExpireScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 200)
local out = {}
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local sep = string.find(m, '\0', 1, true)
  local room, user = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  local k = ARGV[2] .. 'typ:' .. m
  local name = redis.call('GET', k) or ''
  redis.call('DEL', k)
  redis.call('SREM', ARGV[2] .. 'typ:user:' .. user, room)
  table.insert(out, m)
  table.insert(out, name)
end
return out
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
	ctx, cancel := callCtx()
	defer cancel()
	deadline := nowMillis() + t.timeout.Milliseconds()
	// The key outlives its deadline: the sweeper reads the name from it.
	ttl := (t.timeout + 30*time.Second).Milliseconds()
	started, err := typingStartScript.Run(ctx, t.rdb, t.keys(room, user), name, ttl, deadline, room+"\x00"+user, room).Int()
	if err != nil {
		t.quiet.Warn("record typing in redis", "err", err)
		return
	}
	if started == 1 {
		t.out.Notify([]Notice{typingNotice(room, user, name, event.TypingStarted)})
	}
}

// Stop ends user's typing in room, if any.
func (t *RedisTyping) Stop(room, user string) {
	ctx, cancel := callCtx()
	defer cancel()
	name, err := typingStopScript.Run(ctx, t.rdb, t.keys(room, user), room+"\x00"+user, room).Text()
	if errors.Is(err, redis.Nil) {
		return
	}
	if err != nil {
		t.quiet.Warn("stop typing in redis", "err", err)
		return
	}
	t.out.Notify([]Notice{typingNotice(room, user, name, event.TypingStopped)})
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
		res, err := typingExpireScript.Run(ctx, t.rdb, []string{t.prefix + "typ:deadlines"}, nowMillis(), t.prefix).StringSlice()
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			continue // Redis is down; the typings time out when it is back
		}
		var notices []Notice
		for i := 0; i+1 < len(res); i += 2 {
			room, user, _ := strings.Cut(res[i], "\x00")
			notices = append(notices, typingNotice(room, user, res[i+1], event.TypingStopped))
		}
		if len(notices) > 0 {
			t.out.Notify(notices)
		}
	}
}
