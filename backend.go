package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/stream"
	"github.com/redis/go-redis/v9"
)

// Embedded, the store is the hub's log and places its streams; in a
// cluster it places them, and is behind the Redis log.
var (
	_ stream.Log        = (*store.Store)(nil)
	_ stream.Durable    = (*store.Store)(nil)
	_ stream.Membership = (*store.Store)(nil)
	_ stream.Directory  = (*store.Store)(nil)
	_ stream.Sequencer  = (*store.Leader)(nil)
	_ api.Tickets       = (*store.Store)(nil)
)

// backend is what a deployment mode gives the server: the store, the hub
// and the log it follows, presence and typing, and in a cluster the Redis
// client and the leader's loop.
type backend struct {
	mode     string
	store    *store.Store
	hub      *stream.Hub
	presence api.Presence
	typing   api.Typing
	shared   api.Config // Buckets, Tickets and Checks, for a cluster
	stop     func()     // stops what the mode started, but the store
	unlock   func()     // releases the database's lock, after the store closed; nil in a cluster
	once     sync.Once
	err      error
}

// close stops what the backend started and closes the store, once the hub
// has closed and the HTTP server has stopped. It is idempotent.
func (b *backend) close() error {
	b.once.Do(func() {
		b.stop()
		b.err = b.store.Close()
		if b.unlock != nil {
			b.unlock()
		}
	})
	return b.err
}

func (cfg Config) hubOptions(logger *slog.Logger) stream.Options {
	return stream.Options{
		QueueSize:         cfg.QueueSize,
		Heartbeat:         cfg.Heartbeat,
		Retry:             cfg.Retry,
		WriteTimeout:      cfg.WriteTimeout,
		TailSize:          cfg.ReplayBuffer,
		TailBytes:         cfg.ReplayBufferBytes,
		QueueBytes:        cfg.QueueBytes,
		MaxReplay:         cfg.MaxReplay,
		MaxStreams:        cfg.MaxStreams,
		MaxStreamsPerUser: cfg.MaxStreamsPerUser,
		Logger:            logger,
	}
}

// embedded is one instance on its own: the store is a SQLite file whose
// writer feeds the hub from memory, and presence and typing are in memory.
func embedded(ctx context.Context, cfg Config, logger *slog.Logger) (b *backend, err error) {
	// The lock comes first: a second server must not even migrate a
	// database that another one serves.
	unlock, err := lockDatabase(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, store.Options{
		Path: cfg.dbPath(), Synchronous: cfg.SQLiteSync, Retention: cfg.Retention, Logger: logger,
		LiveEvents: cfg.ReplayBuffer, LiveBytes: cfg.ReplayBufferBytes,
		MaxRoomsPerUser: cfg.MaxRoomsPerUser, MaxRoomMembers: cfg.MaxRoomMembers,
	})
	if err != nil {
		unlock()
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
			unlock()
		}
	}()
	hub, err := stream.NewHub(ctx, st, st, cfg.hubOptions(logger))
	if err != nil {
		return nil, err
	}
	if err := loadRevocations(ctx, st, hub); err != nil {
		hub.Close(context.Background())
		return nil, err
	}
	typing := stream.NewTyping(hub, cfg.TypingTimeout)
	// Presence follows the hub's feed of streams opening and closing.
	presence := stream.NewPresence(hub, st, stream.PresenceOptions{
		Grace:         cfg.PresenceGrace,
		Batch:         cfg.PresenceBatch,
		RoomLimit:     cfg.PresenceRoomLimit,
		CountInterval: cfg.PresenceCount,
		OnLastClose:   typing.StopUser,
		Logger:        logger,
	})
	return &backend{mode: "embedded", store: st, hub: hub, presence: presence, typing: typing, unlock: unlock,
		// Spent stream tickets are kept in the database: a ticket opens one
		// stream, also across a restart.
		shared: api.Config{Tickets: st}, stop: func() {
			presence.Close()
			typing.Close()
		}}, nil
}

// loadRevocations gives a hub the token cut-offs of the store. The hub
// has read the log's head already, and learns the later ones from the log:
// none is missed, and one read twice changes nothing.
func loadRevocations(ctx context.Context, st *store.Store, hub *stream.Hub) error {
	revs, err := st.Revocations(ctx)
	if err != nil {
		return err
	}
	for user, before := range revs {
		hub.Revoke(user, before)
	}
	return nil
}

// leaderRetry is how long an instance waits to try the leader's lock
// again after failing to reach the database.
const leaderRetry = time.Second

// clustered is one of N instances over PostgreSQL and Redis: the log is
// the Redis Stream that the leader fills, and presence, typing, spent
// tickets and rate-limit buckets live in Redis.
func clustered(ctx context.Context, cfg Config, logger *slog.Logger) (b *backend, err error) {
	redis.SetLogger(redisLogger{logger})
	rdb, err := stream.NewRedisClient(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	// A Redis that is down at start is no reason to stop: the log reads
	// PostgreSQL meanwhile, and the rest waits for it.
	if err := rdb.Ping(ctx).Err(); err != nil {
		logger.Warn("redis unavailable at start; serving from postgres until it answers", "url", redactURL(cfg.RedisURL), "err", err)
	}
	waker := stream.NewWaker(rdb, cfg.RedisPrefix)
	st, err := store.Open(ctx, store.Options{
		URL: cfg.DatabaseURL, Conns: cfg.DatabaseConns, Retention: cfg.Retention, Logger: logger,
		OnCommit: waker.Wake, MaxRoomsPerUser: cfg.MaxRoomsPerUser, MaxRoomMembers: cfg.MaxRoomMembers,
	})
	if err != nil {
		waker.Close()
		rdb.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
			waker.Close()
			rdb.Close()
		}
	}()
	ropts := stream.RedisOptions{Prefix: cfg.RedisPrefix, MaxLen: cfg.ReplayBuffer, Logger: logger}
	if err := checkEpoch(ctx, st, stream.NewRedisLog(rdb, st, ropts), logger); err != nil {
		return nil, err
	}
	rlog := stream.NewRedisLog(rdb, st, ropts)
	hub, err := stream.NewHub(ctx, rlog, st, cfg.hubOptions(logger))
	if err != nil {
		return nil, err
	}
	if err := loadRevocations(ctx, st, hub); err != nil {
		hub.Close(context.Background())
		return nil, err
	}
	feed := stream.NewRedisFeed(rdb, cfg.RedisPrefix, hub, logger)
	typing := stream.NewRedisTyping(rdb, feed, cfg.TypingTimeout, cfg.RedisPrefix, logger)
	presence := stream.NewRedisPresence(rdb, hub, feed, st, stream.RedisPresenceOptions{
		Prefix:          cfg.RedisPrefix,
		Instance:        cfg.InstanceID,
		Grace:           cfg.PresenceGrace,
		Batch:           cfg.PresenceBatch,
		RoomLimit:       cfg.PresenceRoomLimit,
		CountInterval:   cfg.PresenceCount,
		InstanceTimeout: cfg.InstanceTimeout,
		OnLastClose:     typing.StopUser,
		Logger:          logger,
	})

	// Every instance runs the leader's loop; the one holding the lock
	// sequences and fills Redis, the others wait in PostgreSQL for the
	// lock, to take over the moment it is free.
	leadCtx, stopLeading := context.WithCancel(context.Background())
	var led sync.WaitGroup
	led.Go(func() {
		st.Lead(leadCtx, leaderRetry, func(ctx context.Context, l *store.Leader) error {
			logger.Info("this instance sequences the cluster's log", "instance", cfg.InstanceID)
			return rlog.Pump(ctx, l)
		})
	})
	return &backend{
		mode: "cluster", store: st, hub: hub, presence: presence, typing: typing,
		shared: api.Config{
			Buckets: api.NewRedisBuckets(rdb, cfg.RedisPrefix),
			Tickets: api.NewRedisTickets(rdb, cfg.RedisPrefix),
			Checks:  map[string]func(context.Context) error{"redis": rlog.Ping},
		},
		stop: func() {
			presence.Close() // this instance's streams leave the cluster's presence
			typing.Close()
			feed.Close()
			stopLeading()
			led.Wait()
			waker.Close()
			if err := rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
				logger.Warn("close redis", "err", err)
			}
		},
	}, nil
}

// checkEpoch gives the log a new epoch when Redis holds positions that
// PostgreSQL does not: the database went back (it was restored from an
// older backup), and the positions it gives next were already given to
// other events, which clients may hold. Redis never runs ahead otherwise,
// since the sequencer appends only what it committed.
func checkEpoch(ctx context.Context, st *store.Store, rlog *stream.RedisLog, logger *slog.Logger) error {
	end, err := rlog.End(ctx)
	if err != nil {
		return nil // Redis is down: nothing to compare with
	}
	head, err := st.Head(ctx)
	if err != nil {
		return err
	}
	if end <= head {
		return nil
	}
	old := st.Epoch()
	if err := st.RotateEpoch(ctx, old); err != nil {
		return err
	}
	logger.Warn("the database's log is behind Redis's (restored from an older backup?): the log gets a new epoch, and clients resync",
		"redis_end", end, "database_head", head, "old_epoch", old, "epoch", st.Epoch())
	return nil
}

// redisLogger sends go-redis's own messages (a pool that cannot dial) to
// the server's log, at debug: the components that use Redis say what a
// failure means for them, once.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.l.Enabled(ctx, slog.LevelDebug) {
		r.l.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
	}
}
