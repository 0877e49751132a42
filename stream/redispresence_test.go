package stream_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
	"github.com/redis/go-redis/v9"
)

// These tests run RedisPresence trackers, one per instance, each beside a
// real hub with real streams, on a real redis-server: the cluster's
// presence rules without the cluster's processes. What the trackers
// announce is recorded where a RedisFeed would publish it.

// presenceDir puts every user in one small room, and keeps last seen.
type presenceDir struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (d *presenceDir) PresenceRooms(context.Context, string, int) (small, large []string, err error) {
	return []string{"lobby"}, nil, nil
}
func (d *presenceDir) LargeRooms(context.Context, []string, int) ([]string, error) { return nil, nil }
func (d *presenceDir) RoomMembers(context.Context, string) ([]string, error)       { return nil, nil }
func (d *presenceDir) SaveLastSeen(_ context.Context, user string, at time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[string]time.Time{}
	}
	d.seen[user] = at
	return nil
}
func (d *presenceDir) LastSeen(_ context.Context, users []string) (map[string]time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]time.Time{}
	for _, u := range users {
		if at, ok := d.seen[u]; ok {
			out[u] = at
		}
	}
	return out, nil
}

// announced records the presence changes the instances announce, in the
// order they announce them.
type announced chan stream.PresenceInfo

func (a announced) Notify(notices []stream.Notice) {
	for _, n := range notices {
		if n.Type != event.PresenceChanged {
			continue
		}
		var p stream.PresenceInfo
		if err := json.Unmarshal(n.Data, &p); err != nil {
			panic(err)
		}
		a <- p
	}
}

// next returns the next change announced by any instance.
func (a announced) next(t *testing.T) stream.PresenceInfo {
	t.Helper()
	select {
	case p := <-a:
		return p
	case <-time.After(streamtest.Timeout):
		t.Fatalf("no presence change announced within %v", streamtest.Timeout)
		return stream.PresenceInfo{}
	}
}

// expect reads announcements until it has seen each of want, in any
// order, and fails on any other, a second announcement of one of them
// included.
func (a announced) expect(t *testing.T, want ...stream.PresenceInfo) {
	t.Helper()
	left := map[[2]string]bool{}
	for _, w := range want {
		left[[2]string{w.User, w.Status}] = true
	}
	for len(left) > 0 {
		p := a.next(t)
		k := [2]string{p.User, p.Status}
		if !left[k] {
			t.Fatalf("announced %s %s; want only %v", p.User, p.Status, want)
		}
		delete(left, k)
	}
}

// nothingBefore fails the test if anything is announced before user,
// whose stream it opens on in after d: the room a stray announcement
// needs to show.
func (a announced) nothingBefore(t *testing.T, d time.Duration, in *instance, user string) {
	t.Helper()
	time.Sleep(d) // room for a stray announcement to show; nothing is timed
	in.open(t, user)
	a.expect(t, change(user, "online"))
}

func change(user, status string) stream.PresenceInfo {
	return stream.PresenceInfo{User: user, Status: status}
}

// instance is one server of the test's cluster: a hub serving streams
// over HTTP, and its presence tracker.
type instance struct {
	*stream.RedisPresence
	hub *stream.Hub
	url string
	rdb *redis.Client
}

// presenceCluster starts RedisPresence instances named by names on Redis
// at url, with short timings, all announcing to out.
func presenceCluster(t *testing.T, url, prefix string, out announced, names ...string) []*instance {
	t.Helper()
	dir := &presenceDir{}
	var insts []*instance
	for _, name := range names {
		log := stream.NewTestLog()
		hub, err := stream.NewHub(context.Background(), log, log, stream.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), streamtest.Timeout)
			defer cancel()
			if err := hub.Close(ctx); err != nil {
				t.Errorf("hub %s: Close = %v", name, err)
			}
		})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hub.Serve(w, r, stream.Subscriber{User: r.URL.Query().Get("user")})
		}))
		t.Cleanup(srv.Close)
		rdb, err := stream.NewRedisClient(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		p := stream.NewRedisPresence(rdb, hub, out, dir, stream.RedisPresenceOptions{
			Prefix: prefix, Instance: name, Grace: 200 * time.Millisecond, Batch: 10 * time.Millisecond,
			InstanceTimeout: 600 * time.Millisecond,
		})
		t.Cleanup(p.Close)
		insts = append(insts, &instance{RedisPresence: p, hub: hub, url: srv.URL, rdb: rdb})
	}
	return insts
}

// open opens a stream of user's on the instance.
func (in *instance) open(t *testing.T, user string) *streamtest.Client {
	t.Helper()
	c := streamtest.Connect(t, in.url+"?user="+user, nil)
	c.Expect(event.Ready) // sent once the hub has registered the stream
	return c
}

// streams waits until the instance's hub has n streams open, a closed
// one reported to the tracker.
func (in *instance) streams(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(streamtest.Timeout); in.hub.Stats().Streams != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open; want %d within %v", in.hub.Stats().Streams, n, streamtest.Timeout)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not guessing a delay
	}
}

// lookup fails the test unless the instance sees users as want says.
func (in *instance) lookup(t *testing.T, want map[string]string) {
	t.Helper()
	var users []string
	for u := range want {
		users = append(users, u)
	}
	got, err := in.Lookup(context.Background(), users)
	if err != nil {
		t.Fatalf("Lookup(%v) = %v", users, err)
	}
	for _, p := range got {
		if p.Status != want[p.User] {
			t.Errorf("Lookup: %s is %s; want %s", p.User, p.Status, want[p.User])
		}
	}
}

// Each change is announced once, whichever instances hold the user's
// streams: online at the first stream anywhere, offline a grace after the
// last one closed, by whichever instance's sweep claims it.
func TestRedisPresenceAnnouncesEachChangeOnce(t *testing.T) {
	url, prefix := streamtest.RedisURL(t)
	out := make(announced, 100)
	insts := presenceCluster(t, url, prefix, out, "a", "b")
	a, b := insts[0], insts[1]

	onA := a.open(t, "bob")
	out.expect(t, change("bob", "online"))
	// A second stream elsewhere, and the close of the first, change
	// nothing: carol's change, which a records after bob's close, is the
	// next one announced.
	onB := b.open(t, "bob")
	onA.Close()
	a.streams(t, 0)
	a.open(t, "carol")
	out.expect(t, change("carol", "online"))
	a.lookup(t, map[string]string{"bob": "online", "carol": "online"})

	onB.Close()
	out.expect(t, change("bob", "offline"))
	b.lookup(t, map[string]string{"bob": "offline"})
	// Both instances sweep the grace set, every 51ms here: a second
	// announcement of bob's change would come within a few sweeps.
	out.nothingBefore(t, 300*time.Millisecond, a, "dave")
}

// An instance that dies without a word stops heartbeating: another one
// removes its streams after the instance timeout, and its users go
// offline, announced once; users with streams elsewhere stay online.
func TestRedisPresenceDeadInstance(t *testing.T) {
	url, prefix := streamtest.RedisURL(t)
	out := make(announced, 100)
	insts := presenceCluster(t, url, prefix, out, "a", "b")
	a, b := insts[0], insts[1]
	a.open(t, "bob")
	a.open(t, "carol")
	b.open(t, "carol")
	out.expect(t, change("bob", "online"), change("carol", "online"))

	// Cut a off from Redis: it can neither heartbeat nor say goodbye.
	a.rdb.Close()
	a.Close()
	out.expect(t, change("bob", "offline"))
	b.lookup(t, map[string]string{"bob": "offline", "carol": "online"})
	// carol kept a stream: her change, had it been announced, would have
	// come with bob's.
	out.nothingBefore(t, 100*time.Millisecond, b, "dave")
}

// Redis that was unreachable, and restarts with its data or empty, gets
// each instance's streams back from the hub, the changes it missed while
// down included: users whose stream opened meanwhile come online, users
// whose last stream closed meanwhile go offline after their grace, and
// users whose streams stayed open are online again, announced, since a
// client that refetched presence from the empty Redis took them for
// offline.
func TestRedisPresenceAcrossRedisRestart(t *testing.T) {
	for _, persist := range []bool{true, false} {
		name := "empty"
		if persist {
			name = "with its data"
		}
		t.Run(name, func(t *testing.T) {
			r := streamtest.StartRedis(t, persist)
			out := make(announced, 100)
			a := presenceCluster(t, r.URL(), "herald:", out, "a")[0]
			a.open(t, "alice")
			bob := a.open(t, "bob")
			out.expect(t, change("alice", "online"), change("bob", "online"))

			r.Kill()
			bob.Close()
			a.open(t, "dave")
			// Once the hub has reported both changes, a lookup applies
			// what the tracker had not yet tried to record, and fails:
			// Redis missed both.
			a.streams(t, 2)
			if _, err := a.Lookup(context.Background(), []string{"dave"}); err == nil {
				t.Fatal("Lookup with Redis down succeeded")
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			want := []stream.PresenceInfo{change("dave", "online"), change("bob", "offline")}
			if !persist {
				want = append(want, change("alice", "online"))
			}
			out.expect(t, want...)
			a.lookup(t, map[string]string{"alice": "online", "bob": "offline", "dave": "online"})
			// Once Redis has them, the changes it missed are done with:
			// later heartbeats (every 200ms here) announce none again.
			out.nothingBefore(t, 700*time.Millisecond, a, "erin")
		})
	}
}

// Redis that loses its data while reachable (a FLUSHALL, a failover to an
// empty replica) gets each instance's streams back at its next heartbeat,
// which finds the instance missing: its users are online again, and
// announced.
func TestRedisPresenceAfterRedisLostItsData(t *testing.T) {
	url, prefix := streamtest.RedisURL(t)
	out := make(announced, 100)
	a := presenceCluster(t, url, prefix, out, "a")[0]
	a.open(t, "alice")
	out.expect(t, change("alice", "online"))

	ctx := context.Background()
	keys, err := a.rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	out.expect(t, change("alice", "online"))
	a.lookup(t, map[string]string{"alice": "online"})
}
