package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/internal/quietlog"
	"github.com/redis/go-redis/v9"
)

// Durable is the log's source of truth behind Redis: PostgreSQL's events,
// through the store. Redis holds a copy of its recent part.
type Durable interface {
	Epoch() string
	Range(ctx context.Context, q event.Query) ([]event.Event, error)
	TrimmedThrough() int64
}

// Sequencer is the leader's side of the durable log: it turns committed
// changes into positioned events. The store's Leader implements it.
type Sequencer interface {
	// Sequence gives up to max waiting changes their positions and returns
	// them, in order.
	Sequence(ctx context.Context, max int) ([]event.Event, error)
	// Head is the newest position given.
	Head(ctx context.Context) (int64, error)
	// Alive returns an error once leadership is lost.
	Alive(ctx context.Context) error
}

// NewRedisClient connects to the Redis at url (redis://, rediss:// or
// unix://) with the settings Herald's components expect: a call to a
// Redis that is down fails fast, after one more try, because each caller
// has a fallback (the durable log, this instance's own memory) that serves
// better than waiting.
func NewRedisClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.MaxRetries = 1
	opts.DialerRetries = 1
	opts.DialTimeout = 2 * time.Second
	return redis.NewClient(opts), nil
}

// RedisOptions configure a RedisLog. Zero values take the defaults.
type RedisOptions struct {
	// Prefix starts every key (default "herald:").
	Prefix string
	// MaxLen is about how many recent events the Redis Stream keeps
	// (default 100,000); older ones are read from the durable log.
	MaxLen int
	// Block bounds each XREAD's wait (default 1s), so that a reader checks
	// its context in a loop: cancelling one does not interrupt a blocked
	// read.
	Block time.Duration
	// Logger receives errors reaching Redis. Default: discard.
	Logger *slog.Logger
}

// RedisLog is the cluster's Log: a Redis Stream that the leader fills from
// PostgreSQL's log, with positions as entry ids, and that every instance
// reads live with XREAD. Redis is a rebuildable copy: what it lacks (it
// restarted empty, it trimmed, it is unreachable) is read from the durable
// log, and the leader refills it.
type RedisLog struct {
	rdb     redis.UniversalClient
	durable Durable
	key     string // one stream per epoch: an id of one never reads another
	opts    RedisOptions

	quiet *quietlog.Logger // for an unreachable Redis

	mu       sync.Mutex // guards appended
	appended int64      // the stream's last position as the leader knows it; -1: unknown
}

var _ Log = (*RedisLog)(nil)

// NewRedisLog returns the log of durable's epoch in rdb.
func NewRedisLog(rdb redis.UniversalClient, durable Durable, opts RedisOptions) *RedisLog {
	if opts.Prefix == "" {
		opts.Prefix = "herald:"
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = 100_000
	}
	if opts.Block <= 0 {
		opts.Block = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &RedisLog{rdb: rdb, durable: durable, key: opts.Prefix + "log:" + durable.Epoch(), opts: opts, quiet: quietlog.New(opts.Logger), appended: -1}
}

// Epoch implements Log.
func (l *RedisLog) Epoch() string { return l.durable.Epoch() }

// TrimmedThrough implements Log: retention is the durable log's.
func (l *RedisLog) TrimmedThrough() int64 { return l.durable.TrimmedThrough() }

// Ping checks that Redis answers.
func (l *RedisLog) Ping(ctx context.Context) error { return l.rdb.Ping(ctx).Err() }

// unreachableWait is how long Read waits before it hands an unreachable
// Redis's readers over to the durable log: while Redis is down, streams
// still get events, a little later.
const unreachableWait = 250 * time.Millisecond

// Read implements Log with XREAD. When the stream lacks the events right
// after `after` (Redis trimmed them, restarted empty, or is unreachable)
// it returns event.ErrTrimmed, and the hub reads them with Range.
func (l *RedisLog) Read(ctx context.Context, after int64, max int) ([]event.Event, error) {
	res, err := l.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{l.key, entryID(after)}, Count: int64(max), Block: l.opts.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		l.warn("read the log from redis", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(unreachableWait):
		}
		return nil, event.ErrTrimmed
	}
	var evs []event.Event
	for _, s := range res {
		if evs, err = appendEntries(evs, s.Messages); err != nil {
			return nil, err
		}
	}
	if len(evs) > 0 && evs[0].Seq != after+1 {
		return nil, event.ErrTrimmed
	}
	return evs, nil
}

// maxRedisRange is the widest range served from Redis. Redis filters
// nothing, so a wider one, or one with a narrow room filter over much of
// the log, costs less from PostgreSQL's indexes.
const maxRedisRange = 20_000

// Range implements Log: from the Redis Stream when it holds the whole
// range, else from the durable log, which alone knows what retention
// deleted.
func (l *RedisLog) Range(ctx context.Context, q event.Query) ([]event.Event, error) {
	if q.Rooms != nil && len(q.Rooms) == 0 {
		return []event.Event{}, nil
	}
	if q.UpTo-q.After <= maxRedisRange && q.After >= l.durable.TrimmedThrough() {
		evs, ok, err := l.rangeRedis(ctx, q)
		if err == nil && ok {
			return evs, nil
		}
		if err != nil && ctx.Err() == nil {
			l.warn("read a range from redis", err)
		}
	}
	return l.durable.Range(ctx, q)
}

// rangeRedis reads q from the stream; ok is false when the stream does
// not hold all of it.
func (l *RedisLog) rangeRedis(ctx context.Context, q event.Query) (evs []event.Event, ok bool, err error) {
	const page = 1000
	want := func(e event.Event) bool {
		return (q.Rooms == nil || slices.Contains(q.Rooms, e.Room)) &&
			(q.Subject == "" || e.Subject == q.Subject)
	}
	evs = []event.Event{}
	next := q.After + 1
	for len(evs) < q.Limit && next <= q.UpTo {
		msgs, err := l.rdb.XRangeN(ctx, l.key, entryID(next), entryID(q.UpTo), page).Result()
		if err != nil {
			return nil, false, err
		}
		batch, err := appendEntries(nil, msgs)
		if err != nil {
			return nil, false, err
		}
		if len(batch) == 0 || batch[0].Seq != next {
			// Trimmed, or not appended yet: this range is not all here.
			return nil, false, nil
		}
		for _, e := range batch {
			if e.Seq != next {
				return nil, false, nil
			}
			next++
			if want(e) {
				if evs = append(evs, e); len(evs) == q.Limit {
					return evs, true, nil
				}
			}
		}
		if len(batch) < page && next <= q.UpTo {
			// The stream ends before UpTo. A bounded range is not all here;
			// an open one (a catch-up to "now") is, as far as the stream
			// goes.
			return evs, q.UpTo == 1<<63-1, nil
		}
	}
	return evs, true, nil
}

func (l *RedisLog) warn(what string, err error) {
	l.quiet.Warn("redis unavailable: "+what+" from postgres", "err", err)
}

// entryID is the stream entry id of a position: the position is the id's
// first part, so Redis orders entries by position, and refuses to append
// one it has, or an older one.
func entryID(seq int64) string { return strconv.FormatInt(seq, 10) + "-0" }

// Entry field names: one letter each, in every entry.
const (
	fieldRoom    = "r"
	fieldType    = "t"
	fieldSubject = "s"
	fieldData    = "d"
	fieldCreated = "c"
)

func appendEntries(evs []event.Event, msgs []redis.XMessage) ([]event.Event, error) {
	for _, m := range msgs {
		ms, _, _ := strings.Cut(m.ID, "-")
		seq, err := strconv.ParseInt(ms, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("stream: log entry id %q: %w", m.ID, err)
		}
		str := func(k string) string { s, _ := m.Values[k].(string); return s }
		created, _ := strconv.ParseInt(str(fieldCreated), 10, 64)
		evs = append(evs, event.Event{Seq: seq, Room: str(fieldRoom), Type: str(fieldType),
			Subject: str(fieldSubject), Data: []byte(str(fieldData)), CreatedAt: created})
	}
	return evs, nil
}

// appendScript appends entries when the stream ends where the caller
// believes it does (ARGV[1]), and reports where it ends otherwise, so the
// caller can tell a Redis that lost data (or another leader's appends)
// from its own view. ARGV[2] is MAXLEN; then six arguments per entry.
var appendScript = redis.NewScript(`
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
if last ~= tonumber(ARGV[1]) then return {0, last} end
for i = 3, #ARGV, 6 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[i] .. '-0',
    'r', ARGV[i+1], 't', ARGV[i+2], 's', ARGV[i+3], 'd', ARGV[i+4], 'c', ARGV[i+5])
  last = tonumber(ARGV[i])
end
return {1, last}
`)

// End returns the last position the Redis Stream holds (0 when it is
// empty or missing, as after a restart without data). It never exceeds the
// durable log's head, unless that log went back.
func (l *RedisLog) End(ctx context.Context) (int64, error) { return l.lastInRedis(ctx) }

func (l *RedisLog) lastInRedis(ctx context.Context) (int64, error) {
	msgs, err := l.rdb.XRevRangeN(ctx, l.key, "+", "-", 1).Result()
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	evs, err := appendEntries(nil, msgs)
	if err != nil {
		return 0, err
	}
	return evs[0].Seq, nil
}

// Append brings the Redis Stream up to head, with the events the caller
// just sequenced (fresh, which should follow what the stream holds) or,
// for what the stream lacks, events read from the durable log. A stream
// that lost data is refilled with no more than MaxLen of the newest
// events; readers find older ones in the durable log.
func (l *RedisLog) Append(ctx context.Context, head int64, fresh []event.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for surprises := 0; ; {
		if l.appended < 0 {
			last, err := l.lastInRedis(ctx)
			if err != nil {
				return fmt.Errorf("stream: find the end of the redis log: %w", err)
			}
			l.appended = last
		}
		if l.appended >= head {
			return nil
		}
		evs := fresh
		fresh = nil
		if len(evs) == 0 || evs[0].Seq != l.appended+1 {
			from := max(l.appended, head-int64(l.opts.MaxLen))
			var err error
			evs, err = l.durable.Range(ctx, event.Query{After: from, UpTo: head, Limit: 1000})
			if err != nil {
				return fmt.Errorf("stream: read the log to refill redis: %w", err)
			}
			if len(evs) == 0 {
				return fmt.Errorf("stream: the durable log has nothing in (%d, %d]", from, head)
			}
		}
		args := make([]any, 0, 2+6*len(evs))
		args = append(args, l.appended, l.opts.MaxLen)
		for _, e := range evs {
			args = append(args, e.Seq, e.Room, e.Type, e.Subject, e.Data, e.CreatedAt)
		}
		res, err := appendScript.Run(ctx, l.rdb, []string{l.key}, args...).Int64Slice()
		if err != nil {
			l.appended = -1
			return fmt.Errorf("stream: append to the redis log: %w", err)
		}
		if res[0] == 0 {
			// The stream does not end where this leader thought: Redis lost
			// data, or another leader appended. Start again from its end.
			if res[1] < l.appended {
				l.opts.Logger.Warn("the redis log lost events: refilling it from postgres",
					"redis_last", res[1], "expected", l.appended)
			}
			if surprises++; surprises > 3 {
				l.appended = -1
				return fmt.Errorf("stream: the redis log keeps changing under the leader (ends at %d)", res[1])
			}
		}
		l.appended = res[1]
	}
}

// pumpPoll is how long the leader waits for a wake-up before it looks at
// the outbox anyway: the longest a change waits when Redis, which carries
// the wake-ups, is down.
const pumpPoll = 250 * time.Millisecond

// Pump is the leader's loop: it sequences what transactions committed and
// appends it to the Redis Stream, until ctx ends or leadership is lost. It
// wakes on the Waker's channel, and polls. An unreachable Redis does not
// stop sequencing: the events are appended when it is back.
func (l *RedisLog) Pump(ctx context.Context, seq Sequencer) error {
	const batch = 1000
	l.mu.Lock()
	l.appended = -1 // another leader may have appended since
	l.mu.Unlock()
	wake := l.rdb.Subscribe(ctx, l.opts.Prefix+wakeChannel)
	defer wake.Close()
	woken := wake.Channel(redis.WithChannelSize(16))
	var (
		head    int64 = -1
		backoff time.Duration
		retry   time.Time // no append to Redis before, after one failed
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ctx.Err() == nil {
		evs, err := seq.Sequence(ctx, batch)
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			head = evs[len(evs)-1].Seq
		} else if head < 0 {
			if head, err = seq.Head(ctx); err != nil {
				return err
			}
		}
		// While Redis is down the instances read the sequenced events
		// from the durable log: sequencing keeps its pace, and only the
		// appends back off. Append refills what the skipped ones missed.
		if !time.Now().Before(retry) {
			if err := l.Append(ctx, head, evs); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				l.warn("append to the log", err)
				backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
				retry = time.Now().Add(backoff)
			} else {
				backoff = 0
			}
		}
		if len(evs) == batch {
			continue
		}
		if err := seq.Alive(ctx); err != nil {
			return err
		}
		timer.Reset(pumpPoll)
		select {
		case <-ctx.Done():
		case <-woken:
		case <-timer.C:
		}
	}
	return nil
}

// wakeChannel is the Redis channel on which instances wake the leader.
const wakeChannel = "outbox"

// Waker tells the cluster's leader, wherever it runs, that a transaction
// committed events to the outbox: a message on a Redis channel, sent from
// a goroutine of its own so that a commit never waits on Redis, one for
// any number of commits that come while it is sending. (PostgreSQL's
// NOTIFY would reach the leader too, but it makes every committing
// transaction that sent one wait for the others.) Close stops it.
type Waker struct {
	rdb     redis.UniversalClient
	channel string
	wake    chan struct{} // capacity 1: a message is due
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewWaker starts a waker publishing under prefix.
func NewWaker(rdb redis.UniversalClient, prefix string) *Waker {
	w := &Waker{rdb: rdb, channel: prefix + wakeChannel,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Wake asks for a message to the leader. It never blocks.
func (w *Waker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Waker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		// A message lost while Redis is down costs the leader's poll.
		w.rdb.Publish(ctx, w.channel, "")
		cancel()
	}
}

// Close stops the waker's goroutine. Idempotent.
func (w *Waker) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
