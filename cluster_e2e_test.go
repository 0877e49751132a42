package main

// End-to-end tests of cluster mode: several Herald instances over one real
// PostgreSQL and one real redis-server, all started by the tests, with no
// load balancer: each client picks its instance. Every guarantee of the
// stream must hold across instances.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/store/storetest"
	"github.com/heraldchat/herald/stream/streamtest"
)

// testCluster is instances sharing one database and one Redis.
type testCluster struct {
	t     *testing.T
	env   map[string]string
	nodes []*streamScene
	redis *streamtest.Redis // the test's own redis-server, when it needs one
}

// clusterEnv is the shared settings of a cluster's instances.
func clusterEnv(t testing.TB, redisURL, prefix string) map[string]string {
	return map[string]string{
		"HERALD_DATABASE_URL":     storetest.DatabaseURL(t),
		"HERALD_REDIS_URL":        redisURL,
		"HERALD_REDIS_PREFIX":     prefix,
		"HERALD_INSTANCE_TIMEOUT": "2s",
	}
}

// startCluster starts n instances on the package's shared Redis (a key
// prefix of the test's own) or, with ownRedis, on a redis-server of the
// test's own, which it may stop and restart; persist keeps Redis's data
// across such restarts.
func startCluster(t *testing.T, n int, ownRedis, persist bool, env map[string]string) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	if ownRedis {
		c.redis = streamtest.StartRedis(t, persist)
		c.env = clusterEnv(t, c.redis.URL(), "herald:")
	} else {
		url, prefix := streamtest.RedisURL(t)
		c.env = clusterEnv(t, url, prefix)
	}
	for k, v := range env {
		c.env[k] = v
	}
	for i := range n {
		c.add(fmt.Sprintf("n%d", i))
	}
	return c
}

// add starts one more instance, named name.
func (c *testCluster) add(name string) *streamScene {
	c.t.Helper()
	env := map[string]string{"HERALD_INSTANCE_ID": name}
	for k, v := range c.env {
		env[k] = v
	}
	sc := newStreamScene(c.t, env)
	c.nodes = append(c.nodes, sc)
	return sc
}

// lobby makes alice's room "lobby" on the first instance, with members,
// and opens watcher's stream (alice's or a member's) on n. The joins may
// reach the log after the stream opened: once a message that follows them
// came, the stream is in the room.
func (c *testCluster) lobby(n *streamScene, watcher string, members ...string) (string, *streamtest.Client) {
	c.t.Helper()
	n0 := c.nodes[0]
	room := n0.room("alice", "lobby", false)
	for _, m := range members {
		n0.join(m, room)
	}
	s := n.open(watcher, "")
	n0.say("alice", room, "joined")
	sseEventsBefore(c.t, s, "joined")
	return room, s
}

// TestClusterRouting: a user joins on one instance, another posts on a
// second, and members receive it on a third, in the same order everywhere,
// with ids that only increase.
func TestClusterRouting(t *testing.T) {
	c := startCluster(t, 3, false, false, nil)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	room := a.room("alice", "general", false)
	carol := cc.open("carol", "")
	bobStream := a.open("bob", "")
	a.join("bob", room)
	cc.join("carol", room)
	// carol's join reaches the stream she opened on another instance.
	for e := sseNext(t, carol); !(e.Event == "member:joined" && e.p.User == "carol"); e = sseNext(t, carol) {
	}
	texts := sseNumbered("m", 30)
	for _, text := range texts {
		b.say("bob", room, text)
	}
	got := sseRead(t, carol, len(texts))
	sseCheckMessages(t, "carol on n2", got, texts)
	bobs := sseEventsBefore(t, bobStream, texts[0])
	for _, e := range bobs {
		if e.Event != "member:joined" {
			t.Fatalf("bob on n0 before the messages: %s; want only joins", e.describe(nil))
		}
	}
	rest := append([]sseEvent{{Frame: got[0].Frame, p: got[0].p}}, sseRead(t, bobStream, len(texts)-1)...)
	for i := range got {
		if rest[i].ID != got[i].ID {
			t.Fatalf("event %d: bob on n0 has id %s, carol on n2 %s; want the same order everywhere", i, rest[i].ID, got[i].ID)
		}
	}
}

// TestClusterResumeElsewhere: a stream cut mid-burst resumes on another
// instance with its Last-Event-ID: no gap, no duplicate, the order
// everyone sees.
func TestClusterResumeElsewhere(t *testing.T) {
	const total, readFirst, pauseAt = 200, 50, 100
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"from memory and redis", nil},
		// The instances' memory and Redis keep little: the replay reads
		// PostgreSQL while the burst goes on.
		{"from postgres", map[string]string{"HERALD_REPLAY_BUFFER": "16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3, false, false, tc.env)
			a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
			room := a.room("alice", "burst", false)
			a.join("bob", room)
			watcher := cc.open("alice", "")
			first := a.open("bob", "")
			// The join may reach the log after the streams opened: a marker
			// shows everything before the burst has come.
			b.say("alice", room, "start")
			sseEventsBefore(t, watcher, "start")
			sseEventsBefore(t, first, "start")

			texts := sseNumbered("m", total)
			resume := make(chan struct{})
			paused, posted := ssePostInBackground(t, b.URL, b.tok("alice"), room, texts, pauseAt, resume)
			seen := sseRead(t, first, readFirst)
			first.Close()
			lastID := seen[len(seen)-1].ID
			<-paused
			close(resume)

			again := cc.open("bob", lastID)
			if again.LastID != lastID {
				t.Fatalf("ready id after resuming from %s on another instance = %s; want the position resumed", lastID, again.LastID)
			}
			seen = append(seen, sseRead(t, again, total-readFirst)...)
			if err := <-posted; err != nil {
				t.Fatal(err)
			}
			sseCheckMessages(t, "bob", seen, texts)
			ref := sseRead(t, watcher, total)
			for i := range ref {
				if ref[i].ID != seen[i].ID {
					t.Fatalf("message %d: bob has id %s, alice %s; want one order for all", i, seen[i].ID, ref[i].ID)
				}
			}
			b.say("alice", room, "marker")
			if got := sseEventsBefore(t, again, "marker"); len(got) > 0 {
				t.Fatalf("events after the burst = %q; want none before the marker", sseDescribeAll(got, nil))
			}
		})
	}
}

// TestClusterRemovalAcrossInstances: after a removal on one instance, not
// one more event of the room reaches the removed user's stream on another,
// live or by replay; what was said before the removal is replayed.
func TestClusterRemovalAcrossInstances(t *testing.T) {
	c := startCluster(t, 3, false, false, directAdds)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	room := a.room("alice", "private", true)
	other := a.room("alice", "other", false)
	a.add("alice", room, "bob")
	b.join("bob", other)
	live := cc.open("bob", "")
	away := cc.open("bob", "")
	b.say("alice", room, "before")
	// (The joins may come first: a stream opened right after a join may
	// find it not yet in the log, and then gets it live.)
	sseEventsBefore(t, away, "before")
	awayFrom := away.LastID
	away.Close()
	sseEventsBefore(t, live, "before")

	a.remove("alice", room, "bob")
	b.say("alice", room, "after")
	b.say("alice", other, "marker")
	got := sseDescribeAll(sseEventsBefore(t, live, "marker"), map[string]string{room: "room", other: "other"})
	want := []string{"member:left room bob removed"}
	if !slices.Equal(got, want) {
		t.Fatalf("bob's live stream on n2 = %q; want %q and nothing after the removal", got, want)
	}

	// Replayed on yet another instance: the removal, then nothing more.
	replay := b.open("bob", awayFrom)
	got = sseDescribeAll(sseEventsBefore(t, replay, "marker"), map[string]string{room: "room", other: "other"})
	want = []string{"member:left room bob removed"}
	if !slices.Equal(got, want) {
		t.Fatalf("bob's replay on n1 from before the removal = %q; want %q", got, want)
	}
}

// TestClusterReadyz: every instance reports its store and its Redis.
func TestClusterReadyz(t *testing.T) {
	c := startCluster(t, 1, true, false, nil)
	n := c.nodes[0]
	var r struct {
		Status string
		Checks map[string]string
	}
	n.must(http.StatusOK, "GET", "/readyz", "", nil, &r)
	if r.Status != "ready" || r.Checks["redis"] != "ok" || r.Checks["store"] != "ok" {
		t.Fatalf("readyz = %+v; want ready, redis and store ok", r)
	}
	c.redis.Kill()
	n.must(http.StatusOK, "GET", "/readyz", "", nil, &r)
	if r.Status != "degraded" || r.Checks["redis"] != "unavailable" {
		t.Fatalf("readyz with redis down = %+v; want 200 degraded, redis unavailable", r)
	}
}

// waitEphemeral reads c until an ephemeral event of type typ about user
// (and status, for presence) and returns the presence changes about user
// seen on the way, as "status" strings.
func waitEphemeral(t *testing.T, c *streamtest.Client, who, typ, user, status string) []string {
	t.Helper()
	var about []string
	for {
		f := c.Next()
		var p struct{ User, Status string }
		if f.Event == "presence:changed" || strings.HasPrefix(f.Event, "typing:") {
			if err := json.Unmarshal([]byte(f.Data), &p); err != nil {
				t.Fatalf("%s: %s data %q: %v", who, f.Event, f.Data, err)
			}
			if f.HasID {
				t.Fatalf("%s: %s has id %q; want none (ephemeral)", who, f.Event, f.ID)
			}
		}
		if p.User != user {
			continue
		}
		if f.Event == "presence:changed" {
			about = append(about, p.Status)
		}
		if f.Event == typ && (status == "" || p.Status == status) {
			return about
		}
		if strings.HasPrefix(f.Event, "typing:") && f.Event != typ {
			t.Fatalf("%s: %s by %s while waiting for %s", who, f.Event, user, typ)
		}
	}
}

// TestClusterPresenceAndTyping: presence counts a user's streams on every
// instance and announces each change once, everywhere; typing started on
// one instance is extended or stopped on another; and an instance killed
// without a goodbye leaves no one online or typing for long.
func TestClusterPresenceAndTyping(t *testing.T) {
	c := startCluster(t, 3, false, false, map[string]string{
		"HERALD_PRESENCE_GRACE": "300ms", "HERALD_TYPING_TIMEOUT": "1s",
	})
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	room, carol := c.lobby(n2, "carol", "bob", "carol")

	b0 := n0.open("bob", "")
	if got := waitEphemeral(t, carol, "carol", "presence:changed", "bob", "online"); len(got) != 1 {
		t.Fatalf("carol saw bob %v before online; want online once", got)
	}
	// A second device on another instance announces nothing: alice's
	// status change on that same instance comes next.
	b1 := n1.open("bob", "")
	n1.open("alice", "")
	waitEphemeral(t, carol, "carol", "presence:changed", "alice", "online")
	n1.must(http.StatusNoContent, "POST", "/v1/presence", n1.tok("bob"), map[string]string{"status": "away"}, nil)
	if got := waitEphemeral(t, carol, "carol", "presence:changed", "bob", "away"); len(got) != 1 {
		t.Fatalf("carol saw bob %v; want only away after his second device", got)
	}
	for _, n := range []*streamScene{n0, n1, n2} {
		if p := getPresence(t, n.testServer, n.tok("carol"), "bob")[0]; p.Status != "away" {
			t.Fatalf("GET /v1/presence bob on %s = %s; want away on every instance", n.URL, p.Status)
		}
	}

	// Typing on n0, a ping on n1 extends it, a stop on n2 ends it.
	setTyping(t, n0.testServer, n0.tok("bob"), room, true)
	waitEphemeral(t, carol, "carol", "typing:started", "bob", "")
	setTyping(t, n1.testServer, n1.tok("bob"), room, true)
	setTyping(t, n2.testServer, n2.tok("bob"), room, false)
	waitEphemeral(t, carol, "carol", "typing:stopped", "bob", "")

	// Closing both devices: offline once, after the grace.
	b0.Close()
	b1.Close()
	if got := waitEphemeral(t, carol, "carol", "presence:changed", "bob", "offline"); len(got) != 1 {
		t.Fatalf("carol saw bob %v; want offline once", got)
	}

	// An instance killed without a goodbye: its user goes offline and its
	// typist stops, announced by the instances left.
	victim := startProc(t, withEnv(c.env, "HERALD_INSTANCE_ID", "victim", "HERALD_PRESENCE_GRACE", "300ms", "HERALD_TYPING_TIMEOUT", "1s"))
	h := http.Header{"Authorization": {"Bearer " + n0.tok("bob")}}
	dead := streamtest.Connect(t, victim.URL+"/v1/stream", h)
	dead.Expect("ready")
	waitEphemeral(t, carol, "carol", "presence:changed", "bob", "online")
	req, _ := http.NewRequest("POST", victim.URL+"/v1/rooms/"+room+"/typing", strings.NewReader(`{"typing":true}`))
	req.Header = h.Clone()
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("typing on the victim = %v, %v; want 204", resp, err)
	}
	waitEphemeral(t, carol, "carol", "typing:started", "bob", "")
	victim.kill()
	waitEphemeral(t, carol, "carol", "typing:stopped", "bob", "")
	waitEphemeral(t, carol, "carol", "presence:changed", "bob", "offline")
}

// TestClusterBigRoom: a room crossing --presence-room-limit (2 here) with
// members on two instances. Past the limit, its count is published once
// per change whichever instance counts it, from the presence of every
// instance; a stream that opens gets the last count; no member hears of
// another's presence through it; back at the limit, presence comes again.
func TestClusterBigRoom(t *testing.T) {
	c := startCluster(t, 2, false, false, map[string]string{
		"HERALD_PRESENCE_ROOM_LIMIT": "2", "HERALD_PRESENCE_COUNT_INTERVAL": "30ms",
		"HERALD_PRESENCE_BATCH": "20ms", "HERALD_PRESENCE_GRACE": "150ms",
	})
	n0, n1 := c.nodes[0], c.nodes[1]
	big := n0.room("alice", "big", false)
	n0.join("bob", big)
	// Each stream is in the room once a message posted after it opened
	// reaches it: the joins may reach the log after the stream's snapshot.
	a0 := n0.open("alice", "")
	n0.say("alice", big, "a")
	sseEventsBefore(t, a0, "a")
	b1 := n1.open("bob", "")
	n0.say("alice", big, "b")
	// Bob's coming online may reach alice before "b" or after it.
	bobOnline := false
	for {
		f := a0.Next()
		if f.Event == "presence:changed" && strings.Contains(f.Data, `"user":"bob"`) && strings.Contains(f.Data, `"status":"online"`) {
			bobOnline = true
		}
		if f.Event == "message:created" && strings.Contains(f.Data, `"text":"b"`) {
			break
		}
	}
	sseEventsBefore(t, b1, "b")
	if !bobOnline {
		waitEphemeral(t, a0, "alice", "presence:changed", "bob", "online")
	}
	// A marker that both streams hear: nothing of the opening is left.
	n0.must(http.StatusNoContent, "POST", "/v1/presence", n0.tok("alice"), map[string]string{"status": "away"}, nil)
	waitEphemeral(t, a0, "alice", "presence:changed", "alice", "away")
	waitEphemeral(t, b1, "bob", "presence:changed", "alice", "away")

	// Carol joins through the other instance: past the limit, counted once.
	n1.join("carol", big)
	for name, s := range map[string]*streamtest.Client{"alice": a0, "bob": b1} {
		expectMemberAndCount(t, s, name+" (3 members: past the limit)", "member:joined", big, "carol", 2, false)
	}

	// Carol comes online: counted on both instances, announced to no one.
	c1 := n1.open("carol", "")
	for {
		f := c1.Next()
		var ro roomOnline
		if f.Event != event.RoomOnline {
			t.Fatalf("carol: %s %s; want the room's count", f.Event, f.Data)
		}
		decodeData(t, f, &ro)
		if ro.Room != big || ro.Presence {
			t.Fatalf("carol: room:online %s; want big's, presence false", f.Data)
		}
		if ro.Online == 3 {
			break
		}
		// The count as it was when her stream opened may come first.
		if ro.Online != 2 {
			t.Fatalf("carol: room:online %s; want 2 (the last count) or 3", f.Data)
		}
	}
	for name, s := range map[string]*streamtest.Client{"alice": a0, "bob": b1} {
		expectRoomOnline(t, s, name+" (carol counted, not announced)", big, 3, false)
	}

	// Carol leaves through the first instance: back at the limit.
	n0.leave("carol", big)
	// Her stream may get the count of 3 twice: once as the room's count,
	// and once as the last count when it opened, if that was published
	// first.
	for {
		f := c1.Next()
		if f.Event == event.RoomOnline && strings.Contains(f.Data, `"online":3`) {
			continue
		}
		var m struct{ Room, User string }
		if f.Event == "member:left" {
			decodeData(t, f, &m)
		}
		if f.Event != "member:left" || m.Room != big || m.User != "carol" {
			t.Fatalf("carol: next event = %s %s; want member:left of carol in %s", f.Event, f.Data, big)
		}
		break
	}
	for name, s := range map[string]*streamtest.Client{"alice": a0, "bob": b1} {
		expectMemberAndCount(t, s, name+" (2 members: back at the limit)", "member:left", big, "carol", 2, true)
	}
	n1.must(http.StatusNoContent, "POST", "/v1/presence", n1.tok("bob"), map[string]string{"status": "dnd"}, nil)
	for name, s := range map[string]*streamtest.Client{"alice": a0, "bob": b1} {
		expectPresence(t, s, name+" (presence again)", "bob", "dnd")
	}
}

// expectMemberAndCount reads the next two events of c: a membership change
// (typ of user in room) and the room:online it causes, in either order. In
// a cluster the change reaches each instance in the log (Redis Streams) and
// the count on the notice feed (pub/sub), from whichever instance counted
// the room, and the two feeds keep no order between them.
func expectMemberAndCount(t *testing.T, c *streamtest.Client, name, typ, room, user string, online int, presence bool) {
	t.Helper()
	var member, count bool
	for range 2 {
		f := c.Next()
		switch {
		case f.Event == typ && !member:
			var m struct{ Room, User string }
			decodeData(t, f, &m)
			if m.Room != room || m.User != user {
				t.Fatalf("%s: %s %s; want %s of %s in %s", name, f.Event, f.Data, typ, user, room)
			}
			member = true
		case f.Event == event.RoomOnline && !count:
			var ro roomOnline
			decodeData(t, f, &ro)
			if want := (roomOnline{room, online, presence}); ro != want || f.HasID {
				t.Fatalf("%s: room:online %s (id %q); want %+v, no id", name, f.Data, f.ID, want)
			}
			count = true
		default:
			t.Fatalf("%s: next event = %s %s; want %s of %s in %s and room:online", name, f.Event, f.Data, typ, user, room)
		}
	}
}

// TestClusterRestoredDatabase: PostgreSQL restored from an older backup
// would give positions that clients already hold to new events. Redis,
// which holds more than the database, tells: the log gets a new epoch, and
// a client resuming from the lost positions gets resync, never a replay
// that silently skips.
func TestClusterRestoredDatabase(t *testing.T) {
	c := startCluster(t, 1, false, false, nil)
	n := c.nodes[0]
	room := n.room("alice", "r", false)
	n.join("bob", room)
	bob := n.open("bob", "")
	for _, text := range sseNumbered("before", 3) {
		n.say("alice", room, text)
	}
	sseEventsBefore(t, bob, "before-002")
	seen := bob.LastID
	bob.Close()
	n.stop()
	backup := storetest.CopyDatabase(t, c.env["HERALD_DATABASE_URL"])

	// Life goes on after the backup; bob holds ids of it. He resumes from
	// where he was: a new stream would start after posts the sequencer
	// has already placed.
	n = c.add("n0-again")
	texts := sseNumbered("after", 5)
	for _, text := range texts {
		n.say("alice", room, text)
	}
	bob = n.open("bob", seen)
	var lost []sseEvent
	for len(lost) < len(texts) {
		if e := sseNext(t, bob); e.Event == "message:created" {
			lost = append(lost, e)
		}
	}
	bob.Close()
	n.stop()

	// The database comes back from the backup.
	c.env["HERALD_DATABASE_URL"] = backup
	n = c.add("restored")
	for _, text := range sseNumbered("new", 5) {
		n.say("alice", room, text)
	}
	for _, from := range []sseEvent{lost[1], lost[len(lost)-1]} {
		again := n.stream(n.tok("bob"), from.ID)
		if sseEpoch(again.LastID) == sseEpoch(from.ID) {
			t.Fatalf("resuming from %s after the restore: ready id %s is of the same epoch; want a new one", from.ID, again.LastID)
		}
		f := again.Next()
		if f.Event != "resync" || !strings.Contains(f.Data, "unknown_epoch") {
			t.Fatalf("resuming from %s after the restore: %s %s; want resync unknown_epoch", from.ID, f.Event, f.Data)
		}
	}
}

// TestClusterRetention: a client further behind than the retained log gets
// resync on any instance, never a replay with a hole.
func TestClusterRetention(t *testing.T) {
	c := startCluster(t, 1, false, false, nil)
	n := c.nodes[0]
	room := n.room("alice", "r", false)
	n.join("bob", room)
	bob := n.open("bob", "")
	texts := sseNumbered("old", 5)
	for _, text := range texts {
		n.say("alice", room, text)
	}
	sseEventsBefore(t, bob, texts[1])
	from := bob.LastID // the second message's

	// Retention deletes everything so far (as the pruner of any instance
	// would, a day later).
	st, err := store.Open(context.Background(), store.Options{URL: c.env["HERALD_DATABASE_URL"]})
	if err != nil {
		t.Fatal(err)
	}
	head, err := st.Head(context.Background())
	if err == nil {
		err = st.Trim(context.Background(), head)
	}
	st.Close()
	if err != nil {
		t.Fatalf("trim: %v", err)
	}

	other := c.add("n1")
	again := other.stream(other.tok("bob"), from)
	if f := again.Next(); f.Event != "resync" || !strings.Contains(f.Data, "expired") {
		t.Fatalf("resuming from %s, before the retained log: %s %s; want resync expired", from, f.Event, f.Data)
	}
}

// TestClusterTypingOrder: a typist's pings and stops, sent at once through
// two instances, reach a member in the order the cluster applied them:
// starts and stops alternate, and the last one says what the cluster
// holds, so no one is left shown as typing.
func TestClusterTypingOrder(t *testing.T) {
	c := startCluster(t, 2, false, false, map[string]string{"HERALD_TYPING_TIMEOUT": "1m"})
	n0, n1 := c.nodes[0], c.nodes[1]
	room, carol := c.lobby(n0, "carol", "carol", "dave")

	typing := func(n *streamScene, on bool) error {
		body := strings.NewReader(fmt.Sprintf(`{"typing":%t}`, on))
		req, _ := http.NewRequest("POST", n.URL+"/v1/rooms/"+room+"/typing", body)
		req.Header.Set("Authorization", "Bearer "+n.tok("alice"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("typing %t on %s = %d; want 204", on, n.URL, resp.StatusCode)
		}
		return nil
	}
	for range 300 {
		var wg sync.WaitGroup
		var errs [2]error
		wg.Go(func() { errs[0] = typing(n0, true) })
		wg.Go(func() { errs[1] = typing(n1, false) })
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatal(err)
		}
	}
	// Whatever the cluster holds, this ends it; dave's start, published
	// after it on the same channel, marks the end of alice's events.
	setTyping(t, n0.testServer, n0.tok("alice"), room, false)
	setTyping(t, n0.testServer, n0.tok("dave"), room, true)
	var last string
	for n := 0; ; {
		f := carol.Next()
		if !strings.HasPrefix(f.Event, "typing:") {
			continue
		}
		var d struct{ User string }
		if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
			t.Fatal(err)
		}
		if d.User == "dave" {
			break
		}
		if f.Event == last {
			t.Fatalf("carol heard %s twice in a row, after %d events: a change the cluster applied between them reached her out of order", f.Event, n)
		}
		last = f.Event
		n++
	}
	if last != "" && last != "typing:stopped" {
		t.Fatalf("carol's last word of alice is %s; want typing:stopped, as the cluster holds", last)
	}
}

// TestClusterPresenceOrder: status changes of one user sent at once
// through two instances, each of which announces in its own time, leave
// every member with the status the cluster holds: a change announced
// after a newer one is dropped.
func TestClusterPresenceOrder(t *testing.T) {
	c := startCluster(t, 2, false, false, nil)
	n0, n1 := c.nodes[0], c.nodes[1]
	_, carol := c.lobby(n0, "carol", "bob", "carol", "dave", "erin")
	for _, u := range []string{"bob", "dave", "erin"} {
		n0.open(u, "")
	}
	presenceSettles(t, carol, map[string]string{"bob": "online", "dave": "online", "erin": "online"})

	status := func(n *streamScene, user, status string) error {
		body := strings.NewReader(fmt.Sprintf(`{"status":%q}`, status))
		req, _ := http.NewRequest("POST", n.URL+"/v1/presence", body)
		req.Header.Set("Authorization", "Bearer "+n.tok(user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("%s's status %s on %s = %d; want 204", user, status, n.URL, resp.StatusCode)
		}
		return nil
	}
	for range 40 {
		var wg sync.WaitGroup
		var errs [2]error
		wg.Go(func() { errs[0] = status(n0, "bob", "away") })
		wg.Go(func() { errs[1] = status(n1, "bob", "dnd") })
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			t.Fatal(err)
		}
	}
	want := getPresence(t, n0.testServer, n0.tok("carol"), "bob")[0].Status
	// Each instance announces in order: dave's change through one and
	// erin's through the other come after all of bob's.
	if err := errors.Join(status(n0, "dave", "away"), status(n1, "erin", "away")); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for got["dave"] != "away" || got["erin"] != "away" {
		f := carol.Next()
		if f.Event != "presence:changed" {
			continue
		}
		var p struct{ User, Status string }
		if err := json.Unmarshal([]byte(f.Data), &p); err != nil {
			t.Fatal(err)
		}
		got[p.User] = p.Status
	}
	if got["bob"] != want {
		t.Fatalf("carol last heard bob is %s; he is %s", got["bob"], want)
	}
}
