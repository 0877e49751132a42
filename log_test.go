package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/store/storetest"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
)

// storeLog drives a store through its repositories: the embedded Log.
type storeLog struct{ st *store.Store }

func (h storeLog) Log() stream.Log            { return h.st }
func (h storeLog) Members() stream.Membership { return h.st }

func (h storeLog) CreateRoom(t testing.TB, owner string) string {
	t.Helper()
	room, err := h.st.CreateRoom(context.Background(), store.User{ID: owner}, "room", false)
	if err != nil {
		t.Fatalf("CreateRoom: %v", err)
	}
	return room.ID
}

func (h storeLog) Join(t testing.TB, user, room string) {
	t.Helper()
	if joined, err := h.st.Join(context.Background(), store.User{ID: user}, room); err != nil || !joined {
		t.Fatalf("Join(%s, %s) = %v, %v; want joined", user, room, joined, err)
	}
}

func (h storeLog) Leave(t testing.TB, user, room string) {
	t.Helper()
	if err := h.st.Leave(context.Background(), user, room); err != nil {
		t.Fatalf("Leave(%s, %s) = %v", user, room, err)
	}
}

func (h storeLog) Post(t testing.TB, user, room string) {
	t.Helper()
	if _, _, err := h.st.PostMessage(context.Background(), store.User{ID: user}, room, "hello", ""); err != nil {
		t.Errorf("PostMessage(%s, %s) = %v", user, room, err)
	}
}

func (h storeLog) SendTo(t testing.TB, user string) {
	t.Helper()
	if err := h.st.Publish(context.Background(), "", user, "hello", nil); err != nil {
		t.Fatalf("Publish(to %s) = %v", user, err)
	}
}

func (h storeLog) DeleteRoom(t testing.TB, owner, room string) {
	t.Helper()
	if err := h.st.DeleteRoom(context.Background(), store.UserActor(owner), room); err != nil {
		t.Fatalf("DeleteRoom(%s) = %v", room, err)
	}
}

func (h storeLog) Trim(t testing.TB, through int64) {
	t.Helper()
	if err := h.st.Trim(context.Background(), through); err != nil {
		t.Fatalf("Trim(%d) = %v", through, err)
	}
}

// TestEmbeddedLog runs the Log contract over the store of embedded mode: a
// SQLite file whose writer feeds the live window.
func TestEmbeddedLog(t *testing.T) {
	streamtest.TestLog(t, func(t *testing.T, live int) streamtest.LogHarness {
		st, err := store.Open(context.Background(), store.Options{
			Path: filepath.Join(t.TempDir(), "herald.db"), Synchronous: "NORMAL", LiveEvents: live,
		})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return storeLog{st}
	})
}

// clusterLog is the log of cluster mode: a PostgreSQL store whose leader
// sequences the outbox into a Redis Stream, read through a RedisLog.
type clusterLog struct {
	storeLog
	log *stream.RedisLog
}

func (h clusterLog) Log() stream.Log { return h.log }

// TestClusterLog runs the Log contract over cluster mode's log: real
// PostgreSQL and redis-server, the leader's sequencer and pump.
func TestClusterLog(t *testing.T) {
	streamtest.TestLog(t, func(t *testing.T, live int) streamtest.LogHarness {
		st, rlog := startClusterLog(t, live)
		return clusterLog{storeLog{st}, rlog}
	})
}

// startClusterLog opens a store on a new PostgreSQL database and a Redis
// log beside it, and runs the leader loop until the test ends.
func startClusterLog(t *testing.T, live int) (*store.Store, *stream.RedisLog) {
	t.Helper()
	url, prefix := streamtest.RedisURL(t)
	rdb, err := stream.NewRedisClient(url)
	if err != nil {
		t.Fatal(err)
	}
	waker := stream.NewWaker(rdb, prefix)
	st, err := store.Open(context.Background(), store.Options{URL: storetest.DatabaseURL(t), OnCommit: waker.Wake})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	rlog := stream.NewRedisLog(rdb, st, stream.RedisOptions{Prefix: prefix, MaxLen: live, Block: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	led := make(chan struct{})
	go func() {
		defer close(led)
		st.Lead(ctx, 100*time.Millisecond, func(ctx context.Context, l *store.Leader) error { return rlog.Pump(ctx, l) })
	}()
	t.Cleanup(func() {
		cancel()
		<-led
		st.Close()
		waker.Close()
		rdb.Close()
	})
	return st, rlog
}
