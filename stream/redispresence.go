package stream

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/heraldchat/herald/internal/quietlog"
	"github.com/redis/go-redis/v9"
)

// Presence across the instances of a cluster lives in Redis:
//
//	PREFIX pres:USER          hash: instance → that instance's streams of USER
//	PREFIX inst:ID:users      set: users with streams on instance ID
//	PREFIX instances          zset: instance → its last heartbeat (ms)
//	PREFIX grace              zset: user → when their last stream closed (ms)
//	PREFIX status:USER        away or dnd, while online
//	PREFIX online             hash: large room → its count as last published
//	PREFIX online:claim:ROOM  held for a count interval by the instance counting ROOM
//	PREFIX version            the last version given to a presence change (see stampLua)
//
// A user is online while their hash has a field, or while in grace. Each
// instance applies its hub's session feed to Redis and announces the
// changes its own streams made; every instance sweeps the grace set and
// the heartbeats, and the one whose script claims an entry announces it,
// so each change is announced once. An instance that dies without saying
// goodbye stops heartbeating: after InstanceTimeout another one removes
// its streams, and its users go offline unless they have streams
// elsewhere. An instance taken for dead that lives, or whose changes Redis
// missed while unreachable or lost in an empty restart, records its
// streams again from its hub at its next heartbeat.
//
// Large rooms' counts (see RoomOnline) are published through the same
// feed. Every instance reads every membership change in the log, and the
// one that announces a user's change knows which of the user's rooms are
// large, so more than one instance may find a room to count: the claim
// lets one of them count it per interval, and the others keep it for a
// later one.

// RedisPresenceOptions configure a RedisPresence. Zero values take the
// defaults.
type RedisPresenceOptions struct {
	// Prefix starts every key (default "herald:").
	Prefix string
	// Instance names this instance; it must be unique in the cluster.
	Instance string
	// Grace is how long a user stays online after their last stream
	// anywhere closes (default 5s).
	Grace time.Duration
	// Batch is how long announcements are gathered to be sent together
	// (default 200ms).
	Batch time.Duration
	// InstanceTimeout is how long an instance may go without a heartbeat
	// before its streams count as gone (default 15s); it heartbeats every
	// third of it.
	InstanceTimeout time.Duration
	// RoomLimit is the size of the largest room whose members hear each
	// other's presence changes (default 100); it must be the same on
	// every instance.
	RoomLimit int
	// CountInterval is the least time between two counts of a large room
	// (default 5s).
	CountInterval time.Duration
	// OnLastClose, when set, is called when a user's last stream anywhere
	// closes (typing stops at once).
	OnLastClose func(user string)
	Logger      *slog.Logger
}

// RedisPresence is the presence tracker of a cluster. It owns one
// goroutine, which applies the hub's session feed to Redis, sweeps and
// announces; Close stops it.
type RedisPresence struct {
	rdb    redis.UniversalClient
	hub    *Hub
	feed   *SessionFeed
	out    Notifier
	dir    Directory
	opts   RedisPresenceOptions
	counts *roomCounter     // the goroutine's
	quiet  *quietlog.Logger // for Redis's failures

	mu sync.Mutex // held while applying the feed, so lookups see every stream opened
	// stale is set when Redis may have missed some of the feed, and missed
	// holds the users whose changes it may have missed: the next heartbeat
	// records this instance's streams again.
	stale  bool
	missed map[string]struct{}
	queue  []announcement
	signal chan struct{} // capacity 1: an announcement was queued outside run
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// NewRedisPresence starts a tracker of hub's streams that announces to out
// (the cluster's feed). It first removes what a previous instance of the
// same name left behind.
func NewRedisPresence(rdb redis.UniversalClient, hub *Hub, out Notifier, dir Directory, opts RedisPresenceOptions) *RedisPresence {
	if opts.Prefix == "" {
		opts.Prefix = "herald:"
	}
	setPresenceDefaults(&opts.Grace, &opts.Batch, &opts.CountInterval, &opts.RoomLimit, &opts.Logger)
	if opts.InstanceTimeout <= 0 {
		opts.InstanceTimeout = 15 * time.Second
	}
	p := &RedisPresence{rdb: rdb, hub: hub, feed: hub.Sessions(), out: out, dir: dir, opts: opts,
		missed: map[string]struct{}{}, signal: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	p.quiet = quietlog.New(opts.Logger)
	p.counts = newRoomCounter(dir, &redisBoard{p}, opts.RoomLimit, opts.Logger)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	p.bury(ctx, opts.Instance, 0)
	cancel()
	go p.run()
	return p
}

// Close stops the tracker and removes this instance's streams from Redis:
// its users go offline (after grace) unless they have streams elsewhere.
// Idempotent.
func (p *RedisPresence) Close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

func (p *RedisPresence) key(parts ...string) string {
	k := p.opts.Prefix
	for i, s := range parts {
		if i > 0 {
			k += ":"
		}
		k += s
	}
	return k
}

func nowMillis() int64 { return time.Now().UnixMilli() }

// stampLua defines stamp, which returns a presence change's version: the
// microseconds of Redis's clock, made to exceed the last version given
// (kept at key) should that clock step back. The scripts that decide a
// change stamp it, so versions follow the order Redis applied changes in,
// whichever instance then announces each, and whenever; receivers drop a
// notice older than one they delivered (see RedisFeed). A clock, not a
// counter, so that versions keep growing after Redis restarts empty.
const stampLua = `
local function stamp(key)
  local t = redis.call('TIME')
  local v = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(redis.call('GET', key) or '0') + 1)
  redis.call('SET', key, string.format('%d', v))
  return v
end
`

// openedScript counts a stream; when it is the user's first anywhere and
// the user was not in grace, they come online, and it returns the change's
// version; otherwise 0.
var openedScript = redis.NewScript(stampLua + `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[2])
if n == 1 and redis.call('HLEN', KEYS[1]) == 1 then
  if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then return 0 end
  return stamp(KEYS[4])
end
return 0
`)

// closedScript uncounts a stream; it returns 1 when it was the user's last
// anywhere: their grace starts.
var closedScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  return 1
end
return 0
`)

// expireScript ends the grace of users whose last stream closed before
// ARGV[1]: those still without a stream go offline. It returns user, time
// of closing, version, for each; the ZREM makes one instance announce each.
var expireScript = redis.NewScript(stampLua + `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, 200)
local out = {}
for i = 1, #due, 2 do
  local u = due[i]
  redis.call('ZREM', KEYS[1], u)
  if redis.call('HLEN', ARGV[2] .. 'pres:' .. u) == 0 then
    redis.call('DEL', ARGV[2] .. 'status:' .. u)
    table.insert(out, u)
    table.insert(out, due[i+1])
    table.insert(out, string.format('%d', stamp(KEYS[2])))
  end
end
return out
`)

// buryScript removes a dead instance's streams (ARGV[1]) if this call
// claims it from the heartbeat set; its users whose last stream it held
// enter grace as of its last heartbeat, or of ARGV[3] when it is not 0
// (an instance leaving in good order). It returns false when another
// instance claimed it first.
var buryScript = redis.NewScript(`
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen then return false end
if ARGV[3] ~= '0' then seen = ARGV[3] end
redis.call('ZREM', KEYS[1], ARGV[1])
local set = ARGV[2] .. 'inst:' .. ARGV[1] .. ':users'
for _, u in ipairs(redis.call('SMEMBERS', set)) do
  local k = ARGV[2] .. 'pres:' .. u
  redis.call('HDEL', k, ARGV[1])
  if redis.call('HLEN', k) == 0 then
    redis.call('ZADD', ARGV[2] .. 'grace', 'NX', seen, u)
  end
end
redis.call('DEL', set)
return seen
`)

// statusScript sets an online user's status; it returns -1 when the user
// is offline, 0 when the status was already that, and the change's version
// when it changed.
var statusScript = redis.NewScript(stampLua + `
if redis.call('HLEN', KEYS[1]) == 0 and not redis.call('ZSCORE', KEYS[3], ARGV[2]) then return -1 end
local old = redis.call('GET', KEYS[2]) or 'online'
if old == ARGV[1] then return 0 end
if ARGV[1] == 'online' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[1]) end
return stamp(KEYS[4])
`)

// restoreScript records this instance's count of a user's streams
// (ARGV[1] the instance, ARGV[3] the count) when Redis may lack it; it
// returns the change's version when the user, with no stream elsewhere and
// not in grace, had been taken for offline: they come back online.
var restoreScript = redis.NewScript(stampLua + `
local had = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 or had > 0 then return 0 end
return stamp(KEYS[4])
`)

// dropScript removes this instance's count of a user's streams (ARGV[1]
// the instance) when none is left here; it returns 1 when the user has
// none anywhere and was not in grace: their grace starts.
var dropScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('HLEN', KEYS[1]) == 0 then
  return redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[2])
end
return 0
`)

// syncLocked applies the sessions the hub reported since the last call.
// A lookup's request may end meanwhile; the writes go on regardless, since
// a write cut short may have landed with its answer lost, and an
// announcement with it.
func (p *RedisPresence) syncLocked(ctx context.Context) {
	p.applyLocked(context.WithoutCancel(ctx), p.feed.Take())
}

// applyLocked records sessions in Redis and queues the changes they make.
func (p *RedisPresence) applyLocked(ctx context.Context, sessions []Session) {
	if len(sessions) == 0 {
		return
	}
	now := strconv.FormatInt(nowMillis(), 10)
	instUsers := p.key("inst", p.opts.Instance, "users")
	cmds := make([]*redis.Cmd, len(sessions))
	// Scripts go whole (EVAL, not EVALSHA) in a pipeline, whose replies
	// come too late to load a missing one.
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, s := range sessions {
			keys := []string{p.key("pres", s.User), instUsers, p.key("grace"), p.key("version")}
			if s.Opened {
				cmds[i] = openedScript.Eval(ctx, pipe, keys, p.opts.Instance, s.User)
			} else {
				cmds[i] = closedScript.Eval(ctx, pipe, keys, p.opts.Instance, s.User, now)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		// The hub's streams are the truth: rebuild Redis's view from them
		// at the next heartbeat.
		p.stale = true
		for _, s := range sessions {
			p.missed[s.User] = struct{}{}
		}
		p.quiet.Warn("record presence in redis", "err", err)
	}
	for i, s := range sessions {
		if n, err := cmds[i].Int64(); err == nil && n > 0 {
			if s.Opened {
				p.queue = append(p.queue, announcement{user: s.User, info: PresenceInfo{User: s.User, Status: StatusOnline}, transition: true, version: n})
			} else {
				p.queue = append(p.queue, announcement{user: s.User, lastClose: true})
			}
		}
		if s.Opened {
			p.queue = append(p.queue, announcement{user: s.User, opened: true})
		}
	}
}

// run applies the feed as it comes, sweeps grace and heartbeats, and
// announces in batches.
func (p *RedisPresence) run() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sweep := time.NewTicker(min(250*time.Millisecond, p.opts.Grace/4+time.Millisecond))
	defer sweep.Stop()
	beat := time.NewTicker(p.opts.InstanceTimeout / 3)
	defer beat.Stop()
	count := time.NewTicker(p.opts.CountInterval)
	defer count.Stop()
	p.heartbeat(ctx)
	var flush <-chan time.Time
	for {
		select {
		case <-p.stop:
			p.leave()
			return
		case <-p.feed.Ready():
			p.mu.Lock()
			p.syncLocked(ctx)
			p.mu.Unlock()
		case <-p.signal:
		case <-sweep.C:
			p.sweep(ctx)
		case <-beat.C:
			p.heartbeat(ctx)
		case <-count.C:
			p.counts.changed(p.feed.TakeRooms())
			if notices := p.counts.sample(ctx); len(notices) > 0 {
				p.out.Notify(notices)
			}
		case <-flush:
			flush = nil
			p.announce(ctx)
		}
		p.mu.Lock()
		pending := len(p.queue) > 0
		p.mu.Unlock()
		if pending && flush == nil {
			flush = time.After(p.opts.Batch)
		}
	}
}

// heartbeat tells the cluster this instance lives. Finding itself missing
// from the set (it was taken for dead, or Redis lost its data), or after
// Redis missed some of its streams' changes (it was unreachable), it
// records its streams again from the hub, which knows them.
func (p *RedisPresence) heartbeat(ctx context.Context) {
	added, err := p.rdb.ZAdd(ctx, p.key("instances"), redis.Z{Score: float64(nowMillis()), Member: p.opts.Instance}).Result()
	if err != nil {
		p.quiet.Warn("presence heartbeat", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if added == 0 && !p.stale {
		return
	}
	if err := p.reconcileLocked(ctx); err != nil {
		p.stale = true
		p.quiet.Warn("record presence in redis", "err", err)
		return
	}
	p.stale = false
	clear(p.missed)
}

// reconcileLocked makes Redis's record of this instance's streams the
// hub's: users with streams here are counted, and announced when that
// brings them back online; users Redis still counts here without a stream
// left start their grace, after which they go offline.
func (p *RedisPresence) reconcileLocked(ctx context.Context) error {
	// The feed's entries up to the counts are applied first, so that none
	// of them lands on top of counts that already hold it.
	sessions, counts := p.hub.takeStreamCounts()
	p.applyLocked(ctx, sessions)
	instUsers := p.key("inst", p.opts.Instance, "users")
	recorded, err := p.rdb.SMembers(ctx, instUsers).Result()
	if err != nil {
		return err
	}
	now := strconv.FormatInt(nowMillis(), 10)
	var users []string
	var cmds []*redis.Cmd
	_, err = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for user, n := range counts {
			keys := []string{p.key("pres", user), instUsers, p.key("grace"), p.key("version")}
			users = append(users, user)
			cmds = append(cmds, restoreScript.Eval(ctx, pipe, keys, p.opts.Instance, user, n))
		}
		// Users whose last change Redis may have missed may be counted
		// still though Redis lost this instance's record (it restarted
		// empty): they start their grace too, unless already in it.
		for user := range p.missed {
			recorded = append(recorded, user)
		}
		for _, user := range slices.Compact(slices.Sorted(slices.Values(recorded))) {
			if counts[user] == 0 {
				keys := []string{p.key("pres", user), instUsers, p.key("grace")}
				users = append(users, user)
				cmds = append(cmds, dropScript.Eval(ctx, pipe, keys, p.opts.Instance, user, now))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, user := range users {
		n, err := cmds[i].Int64()
		switch {
		case err != nil || n == 0:
		case counts[user] > 0:
			p.queue = append(p.queue, announcement{user: user, info: PresenceInfo{User: user, Status: StatusOnline}, transition: true, version: n})
		default:
			p.queue = append(p.queue, announcement{user: user, lastClose: true})
		}
	}
	return nil
}

// sweep ends expired graces and buries instances that stopped
// heartbeating.
func (p *RedisPresence) sweep(ctx context.Context) {
	now := nowMillis()
	dead, err := p.rdb.ZRangeByScore(ctx, p.key("instances"), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now-p.opts.InstanceTimeout.Milliseconds(), 10), Count: 10,
	}).Result()
	if err == nil {
		for _, inst := range dead {
			if inst != p.opts.Instance {
				p.bury(ctx, inst, 0)
			}
		}
	}
	res, err := expireScript.Run(ctx, p.rdb, []string{p.key("grace"), p.key("version")},
		now-p.opts.Grace.Milliseconds(), p.opts.Prefix).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		p.quiet.Warn("presence sweep", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i+2 < len(res); i += 3 {
		ms, _ := strconv.ParseInt(res[i+1], 10, 64)
		version, _ := strconv.ParseInt(res[i+2], 10, 64)
		seen := time.UnixMilli(ms).UTC()
		p.queue = append(p.queue, announcement{user: res[i], info: PresenceInfo{User: res[i], Status: StatusOffline, LastSeen: &seen}, transition: true, version: version})
	}
}

// bury removes an instance's streams if it claims them; asOf, when not 0,
// is when they closed.
func (p *RedisPresence) bury(ctx context.Context, inst string, asOf int64) {
	err := buryScript.Run(ctx, p.rdb, []string{p.key("instances")}, inst, p.opts.Prefix, asOf).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		p.quiet.Warn("remove a dead instance's presence", "instance", inst, "err", err)
		return
	}
	if err == nil && asOf == 0 && inst != p.opts.Instance {
		p.opts.Logger.Info("an instance stopped heartbeating: its streams are gone", "instance", inst)
	}
}

// leave removes this instance's streams as it shuts down: the hub has
// told them to reconnect elsewhere.
func (p *RedisPresence) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.bury(ctx, p.opts.Instance, nowMillis())
}

// announce sends the queued changes, in order.
func (p *RedisPresence) announce(ctx context.Context) {
	p.mu.Lock()
	queue := p.queue
	p.queue = nil
	p.mu.Unlock()
	var notices []Notice
	var opened []string
	for _, a := range queue {
		if a.lastClose {
			if p.opts.OnLastClose != nil {
				p.opts.OnLastClose(a.user)
			}
			continue
		}
		if a.opened {
			opened = append(opened, a.user)
			continue
		}
		// The rooms come from the store: the hub's index lags behind a
		// join that another instance committed and the sequencer has not
		// placed yet, and the audience is on every instance anyway.
		n, large, ok := presenceNotice(ctx, p.dir, a.info, p.storeRooms, p.opts.Logger)
		if a.transition {
			p.counts.mark(large)
		}
		if ok {
			n.Of, n.Version = a.user, a.version
			notices = append(notices, n)
		}
	}
	if len(notices) > 0 {
		p.out.Notify(notices)
	}
	// The counts for new streams are for those streams, which are here.
	p.counts.initial(ctx, p.hub, opened, p.roomsOf)
}

// storeRooms returns user's rooms split by size, from the store.
func (p *RedisPresence) storeRooms(ctx context.Context, user string) (small, large []string, err error) {
	return p.dir.PresenceRooms(ctx, user, p.opts.RoomLimit)
}

// roomsOf returns the rooms of a user with a stream here, from the hub's
// index.
func (p *RedisPresence) roomsOf(user string) []string {
	rooms, _ := p.hub.RoomsOf(user)
	return rooms
}

// SetStatus sets an online user's explicit status (online, away, dnd).
func (p *RedisPresence) SetStatus(ctx context.Context, user, status string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncLocked(ctx)
	n, err := statusScript.Run(ctx, p.rdb, []string{p.key("pres", user), p.key("status", user), p.key("grace"), p.key("version")}, status, user).Int64()
	if err != nil {
		return err
	}
	switch {
	case n == -1:
		return ErrOffline
	case n > 0:
		p.queue = append(p.queue, announcement{user: user, info: PresenceInfo{User: user, Status: status}, version: n})
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
	return nil
}

// Lookup returns the presence of users.
func (p *RedisPresence) Lookup(ctx context.Context, users []string) ([]PresenceInfo, error) {
	p.mu.Lock()
	p.syncLocked(ctx)
	p.mu.Unlock()
	type probe struct {
		streams *redis.IntCmd
		grace   *redis.FloatCmd
		status  *redis.StringCmd
	}
	probes := make([]probe, len(users))
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, u := range users {
			probes[i] = probe{pipe.HLen(ctx, p.key("pres", u)), pipe.ZScore(ctx, p.key("grace"), u), pipe.Get(ctx, p.key("status", u))}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]PresenceInfo, len(users))
	var offline []string
	for i, u := range users {
		out[i] = PresenceInfo{User: u, Status: StatusOffline}
		inGrace := probes[i].grace.Err() == nil
		if probes[i].streams.Val() > 0 || inGrace {
			out[i].Status = StatusOnline
			if s := probes[i].status.Val(); s != "" {
				out[i].Status = s
			}
			continue
		}
		offline = append(offline, u)
	}
	return fillLastSeen(ctx, p.dir, out, offline)
}

// redisBoard is the countBoard of a cluster: the published counts are in
// Redis, one hash for all large rooms, and who is online is what the
// cluster's presence keys say.
type redisBoard struct{ p *RedisPresence }

func (b redisBoard) claim(ctx context.Context, rooms []string) ([]string, error) {
	p := b.p
	cmds := make([]*redis.BoolCmd, len(rooms))
	_, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, r := range rooms {
			cmds[i] = pipe.SetNX(ctx, p.key("online", "claim", r), p.opts.Instance, p.opts.CountInterval)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for i, r := range rooms {
		if cmds[i].Val() {
			out = append(out, r)
		}
	}
	return out, nil
}

func (b redisBoard) published(ctx context.Context, rooms []string) (map[string]int, error) {
	vals, err := b.p.rdb.HMGet(ctx, b.p.key("online"), rooms...).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for i, v := range vals {
		if s, ok := v.(string); ok {
			if n, err := strconv.Atoi(s); err == nil {
				out[rooms[i]] = n
			}
		}
	}
	return out, nil
}

func (b redisBoard) publish(ctx context.Context, room string, n int) error {
	return b.p.rdb.HSet(ctx, b.p.key("online"), room, n).Err()
}

func (b redisBoard) unpublish(ctx context.Context, room string) error {
	return b.p.rdb.HDel(ctx, b.p.key("online"), room).Err()
}

// onlineScript counts the users ARGV[2..] who are online: with a stream
// on some instance, or in grace. ARGV[1] is the key prefix.
var onlineScript = redis.NewScript(`
local n = 0
for i = 2, #ARGV do
  local u = ARGV[i]
  if redis.call('EXISTS', ARGV[1] .. 'pres:' .. u) == 1 or redis.call('ZSCORE', ARGV[1] .. 'grace', u) then
    n = n + 1
  end
end
return n
`)

func (b redisBoard) online(ctx context.Context, users []string) (int, error) {
	total := 0
	// A script blocks Redis while it runs: a few thousand users at a time.
	for chunk := range slices.Chunk(users, 2000) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, b.p.opts.Prefix)
		for _, u := range chunk {
			args = append(args, u)
		}
		n, err := onlineScript.Run(ctx, b.p.rdb, nil, args...).Int()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
