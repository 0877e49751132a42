package main

// Cluster mode under failure: instances killed with SIGKILL (real
// processes of the herald binary), the sequencer among them, and Redis
// stopped, restarted and wiped, all mid-burst. What must hold: every post
// answered 2xx reaches every member's stream exactly once, in one order,
// with no resync; presence and typing never stay stuck.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/store/storetest"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
	"github.com/redis/go-redis/v9"
)

var (
	heraldBin     string
	heraldBinErr  error
	heraldBinOnce sync.Once
)

// buildHerald builds the herald binary once per test run, with -race when
// the tests have it, so the build reuses what compiling them cached.
func buildHerald(t testing.TB) string {
	t.Helper()
	heraldBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-bin-")
		if err != nil {
			heraldBinErr = err
			return
		}
		heraldBin = filepath.Join(dir, "herald")
		args := []string{"build", "-o", heraldBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			heraldBinErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if heraldBinErr != nil {
		t.Fatal(heraldBinErr)
	}
	return heraldBin
}

// proc is a herald serve process, which a test may kill.
type proc struct {
	URL    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProc runs `herald serve` with env on a free loopback port (or
// env's HERALD_ADDR) and waits until it is ready; it is killed when the
// test ends.
func startProc(t testing.TB, env map[string]string) *proc {
	t.Helper()
	p, err := spawnProc(t, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// spawnProc is startProc returning its error, for a goroutine other than
// the test's.
func spawnProc(t testing.TB, env map[string]string) (*proc, error) {
	bin := buildHerald(t)
	addr := env["HERALD_ADDR"]
	if addr == "" {
		port, err := storetest.FreePort()
		if err != nil {
			return nil, err
		}
		addr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "HERALD_ADDR="+addr, "HERALD_DATA_DIR="+t.TempDir(),
		"HERALD_JWT_SECRET="+testSecret, "HERALD_RATE_LIMITS=off", "HERALD_LOG_LEVEL=warn",
		"HERALD_RETRY=50ms", "HERALD_PRESENCE_BATCH=5ms", "HERALD_DRAIN_DELAY=0s")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{URL: "http://" + addr, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, errors.New("herald serve exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("herald serve not ready within 60s: %w", err)
		}
	}
}

// kill ends the process at once, without a goodbye, as a crash would.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop asks the process to shut down, as a deployment does, and waits
// for it to exit.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
}

// acked is what a poster knows of its posts: those answered 201, and those
// whose outcome it cannot know (the instance died while answering).
type acked struct {
	mu      sync.Mutex
	ok      []string
	unknown []string
}

// postAll posts texts from its own goroutine, in order, each to the next
// of urls that answers; a post that fails on a connection is retried on
// another instance with a new text (its own outcome stays unknown). It
// calls pause before posting texts[pauseAt].
func postAll(t *testing.T, urls func() []string, token, room string, texts []string, pauseAt int, pause func()) (*acked, <-chan error) {
	a := &acked{}
	done := make(chan error, 1)
	go func() {
		n := 0
		for i, text := range texts {
			if i == pauseAt && pause != nil {
				pause()
			}
			for attempt := 0; ; attempt++ {
				us := urls()
				u := us[n%len(us)]
				n++
				body := text
				if attempt > 0 {
					body = fmt.Sprintf("%s/retry%d", text, attempt)
				}
				_, err := ssePostFrom(u, token, room, body)
				a.mu.Lock()
				if err == nil {
					a.ok = append(a.ok, body)
				} else {
					a.unknown = append(a.unknown, body)
				}
				a.mu.Unlock()
				if err == nil {
					break
				}
				if attempt > 20 {
					done <- fmt.Errorf("post %q failed on every instance: %w", text, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		done <- nil
	}()
	return a, done
}

// follower reads one user's messages in a room across reconnects, as a
// client behind a load balancer would: when its stream ends it opens a new
// one on a live instance with its Last-Event-ID.
type follower struct {
	t       *testing.T
	token   string
	room    string
	urls    func() []string
	c       *streamtest.Client
	got     []string
	ids     []string
	reopens int
}

func (f *follower) open() {
	us := f.urls()
	u := us[f.reopens%len(us)]
	h := http.Header{"Authorization": {"Bearer " + f.token}}
	if f.c != nil && f.c.LastID != "" {
		h.Set("Last-Event-ID", f.c.LastID)
	}
	last := ""
	if f.c != nil {
		last = f.c.LastID
		f.c.Close()
	}
	c, err := streamtest.Dial(u+"/v1/stream", h)
	f.reopens++
	if err != nil {
		f.c = &streamtest.Client{LastID: last}
		return
	}
	f.c = c
	f.c.LastID = last
}

// readUntil reads until the messages include every text of want, or fails
// the test after a minute. A resync fails it: nothing may be lost.
func (f *follower) readUntil(want []string) {
	f.t.Helper()
	deadline := time.Now().Add(time.Minute)
	missing := func() []string {
		var out []string
		for _, w := range want {
			if !slices.Contains(f.got, w) {
				out = append(out, w)
			}
		}
		return out
	}
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			f.t.Fatalf("after a minute and %d reconnects, %d messages never arrived, such as %q", f.reopens, len(missing()), missing()[0])
		}
		if f.c == nil || f.c.Resp == nil {
			time.Sleep(50 * time.Millisecond)
			f.open()
			continue
		}
		fr, ok := f.c.Frame()
		if !ok {
			f.open()
			continue
		}
		switch fr.Event {
		case "resync":
			f.t.Fatalf("resync %s after %d messages: the cluster lost its place", fr.Data, len(f.got))
		case "message:created":
			var m struct {
				Room, Text string
			}
			if err := json.Unmarshal([]byte(fr.Data), &m); err != nil {
				f.t.Fatalf("message data %q: %v", fr.Data, err)
			}
			if m.Room == f.room {
				f.got = append(f.got, m.Text)
				f.ids = append(f.ids, fr.ID)
			}
		}
	}
}

// check fails unless every acknowledged post arrived exactly once, nothing
// arrived that was not posted, and ids only increased.
func (f *follower) check(a *acked) {
	f.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := map[string]int{}
	for _, g := range f.got {
		seen[g]++
	}
	for text, n := range seen {
		if n > 1 {
			f.t.Errorf("%q arrived %d times; want once", text, n)
		}
		if !slices.Contains(a.ok, text) && !slices.Contains(a.unknown, text) {
			f.t.Errorf("%q arrived but was never posted", text)
		}
	}
	for _, text := range a.ok {
		if seen[text] == 0 {
			f.t.Errorf("%q was acknowledged (201) but never arrived", text)
		}
	}
	for i := 1; i < len(f.ids); i++ {
		if sseSeq(f.t, f.ids[i]) <= sseSeq(f.t, f.ids[i-1]) {
			f.t.Fatalf("id %s came after %s; want ids that only increase", f.ids[i], f.ids[i-1])
		}
	}
}

// TestClusterKillInstance kills an instance that holds open streams, and
// separately the sequencer, in the middle of a burst: every acknowledged
// post reaches the streams exactly once, the streams resume elsewhere,
// and a new sequencer takes over.
func TestClusterKillInstance(t *testing.T) {
	for _, victim := range []string{"an instance with streams", "the sequencer"} {
		t.Run(victim, func(t *testing.T) {
			url, prefix := streamtest.RedisURL(t)
			env := clusterEnv(t, url, prefix)
			c := &testCluster{t: t, env: env}
			// The first instance to start takes the leader's lock.
			var dead *proc
			if victim == "the sequencer" {
				dead = startProc(t, withEnv(env, "HERALD_INSTANCE_ID", "victim"))
			}
			a, b := c.add("a"), c.add("b")
			if dead == nil {
				dead = startProc(t, withEnv(env, "HERALD_INSTANCE_ID", "victim"))
			}
			room := a.room("alice", "burst", false)
			a.join("bob", room)
			a.join("carol", room)

			var mu sync.Mutex
			alive := []string{dead.URL, a.URL, b.URL}
			urls := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(alive) }
			survivors := func() []string { return []string{a.URL, b.URL} }
			bob := &follower{t: t, token: a.tok("bob"), room: room, urls: func() []string { return []string{dead.URL} }}
			bob.open()
			bob.urls = survivors
			carol := &follower{t: t, token: a.tok("carol"), room: room, urls: survivors}
			carol.open()

			texts := sseNumbered("m", 300)
			posted, done := postAll(t, urls, a.tok("alice"), room, texts, 150, func() {
				mu.Lock()
				alive = []string{a.URL, b.URL}
				mu.Unlock()
				dead.kill()
			})
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			posted.mu.Lock()
			want := slices.Clone(posted.ok)
			posted.mu.Unlock()
			for _, f := range []*follower{bob, carol} {
				f.readUntil(want)
				f.check(posted)
			}
			if !slices.Equal(bob.ids, carol.ids) {
				t.Errorf("bob and carol saw the room in different orders")
			}
			if bob.reopens < 2 {
				t.Errorf("bob's stream on the killed instance never moved (%d opens)", bob.reopens)
			}
		})
	}
}

func withEnv(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestClusterRedisOutage stops Redis in the middle of a burst and starts
// it again, once with its data kept and once wiped: posts keep being
// acknowledged meanwhile, and every one of them reaches the streams
// exactly once, with no resync.
func TestClusterRedisOutage(t *testing.T) {
	forRedisRestarts(t, func(t *testing.T, persist bool) {
		// Redis keeps few events, so that what it lacks after the
		// restart is read from PostgreSQL.
		c := startCluster(t, 2, true, persist, map[string]string{"HERALD_REPLAY_BUFFER": "16"})
		a, b := c.nodes[0], c.nodes[1]
		room := a.room("alice", "burst", false)
		a.join("bob", room)
		urls := func() []string { return []string{a.URL, b.URL} }
		bob := &follower{t: t, token: a.tok("bob"), room: room, urls: func() []string { return []string{b.URL} }}
		bob.open()

		texts := sseNumbered("m", 200)
		restarted := make(chan struct{})
		posted, done := postAll(t, urls, a.tok("alice"), room, texts, 60, func() {
			c.redis.Kill()
			// Posts go on while Redis is down; it comes back after a
			// third of the burst.
			go func() {
				defer close(restarted)
				time.Sleep(500 * time.Millisecond)
				if err := c.redis.Start(); err != nil {
					t.Error(err)
				}
			}()
		})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		<-restarted
		posted.mu.Lock()
		unknown := len(posted.unknown)
		want := slices.Clone(posted.ok)
		posted.mu.Unlock()
		if unknown > 0 {
			t.Errorf("%d posts failed while Redis was down; want every post acknowledged", unknown)
		}
		bob.readUntil(want)
		bob.check(posted)
		// A stream opened after the outage resumes from the start of
		// the burst, through Redis as refilled.
		late := &follower{t: t, token: a.tok("bob"), room: room, urls: urls}
		late.open()
		a.say("alice", room, "marker")
		late.readUntil([]string{"marker"})
	})
}

// forRedisRestarts runs f as subtests, once with Redis restarting with its
// data kept (persist) and once wiped.
func forRedisRestarts(t *testing.T, f func(t *testing.T, persist bool)) {
	for _, persist := range []bool{true, false} {
		name := "restarted empty"
		if persist {
			name = "restarted with its data"
		}
		t.Run(name, func(t *testing.T) { f(t, persist) })
	}
}

// TestClusterStoreUnavailable: while PostgreSQL is down an action answers
// 503 with a JSON error and Retry-After, never a 500; after it restarts
// the instances serve again without anyone's help.
func TestClusterStoreUnavailable(t *testing.T) {
	pg, err := storetest.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	url, prefix := streamtest.RedisURL(t)
	env := clusterEnv(t, url, prefix)
	env["HERALD_DATABASE_URL"] = pg.NewDatabase(t)
	c := &testCluster{t: t, env: env}
	a := c.add("a")
	room := a.room("alice", "r", false)
	pg.Halt()
	resp, body := a.doResp("POST", "/v1/rooms/"+room+"/messages", a.tok("alice"), map[string]string{"text": "hi"}, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || errorCode(t, body) != "unavailable" {
		t.Fatalf("post with postgres down = %d %s (Retry-After %q); want 503 unavailable with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := a.do("POST", "/v1/rooms/"+room+"/messages", a.tok("alice"), map[string]string{"text": "hi"})
		if status == http.StatusCreated {
			break
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("post after postgres restarted = %d %s; want 201 (503 while reconnecting)", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// presenceSettles reads c's events until each user of want was last
// announced with the status want gives it, and returns the types of the
// other events it read.
func presenceSettles(t *testing.T, c *streamtest.Client, want map[string]string) (others map[string]bool) {
	t.Helper()
	return presenceSettlesRefetching(t, c, want, nil)
}

// presenceSettlesRefetching is presenceSettles for a stream that may be
// told presence:stale: like the browser client it then takes the users'
// presence from refetch (GET /v1/presence), since the changes it missed
// will not be announced again.
func presenceSettlesRefetching(t *testing.T, c *streamtest.Client, want map[string]string, refetch func(users ...string) []presenceInfo) (others map[string]bool) {
	t.Helper()
	last, others := map[string]string{}, map[string]bool{}
	for {
		done := true
		for user, status := range want {
			done = done && last[user] == status
		}
		if done {
			return others
		}
		f := c.Next()
		if f.Event != "presence:changed" {
			others[f.Event] = true
			if f.Event == event.PresenceStale && refetch != nil {
				for _, p := range refetch(slices.Collect(maps.Keys(want))...) {
					last[p.User] = p.Status
				}
			}
			continue
		}
		var p struct{ User, Status string }
		if err := json.Unmarshal([]byte(f.Data), &p); err != nil {
			t.Fatalf("presence:changed data %q: %v", f.Data, err)
		}
		last[p.User] = p.Status
	}
}

// TestClusterInstanceTakenForDead: an instance that lives but missed its
// heartbeats (a pause longer than --instance-timeout) has its streams
// removed by another, and its users go offline; its next heartbeat
// records its streams again, and they come back online for everyone,
// counted right: they go offline when their streams close.
func TestClusterInstanceTakenForDead(t *testing.T) {
	c := startCluster(t, 2, false, false, map[string]string{
		"HERALD_PRESENCE_GRACE": "200ms", "HERALD_INSTANCE_TIMEOUT": "3s",
	})
	n0, n1 := c.nodes[0], c.nodes[1]
	_, alice := c.lobby(n1, "alice", "bob")
	bob := n0.open("bob", "")
	presenceSettles(t, alice, map[string]string{"bob": "online"})

	// n0's last heartbeat looks ancient until n1 buries it: XX leaves
	// the set alone once n0 is out of it, so n0's next heartbeat stays.
	rdb, err := stream.NewRedisClient(c.env["HERALD_REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			rdb.ZAddXX(context.Background(), c.env["HERALD_REDIS_PREFIX"]+"instances", redis.Z{Score: 1, Member: "n0"})
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	presenceSettles(t, alice, map[string]string{"bob": "offline"})
	close(stop)
	<-stopped

	presenceSettles(t, alice, map[string]string{"bob": "online"})
	if p := getPresence(t, n1.testServer, n1.tok("alice"), "bob")[0]; p.Status != "online" {
		t.Fatalf("GET /v1/presence bob = %s after n0 came back; want online", p.Status)
	}
	bob.Close()
	presenceSettles(t, alice, map[string]string{"bob": "offline"})
}

// TestClusterPresenceAcrossRedisOutage: streams that close or open while
// Redis is down are counted once it is back, with its data or without: a
// user whose last stream closed meanwhile goes offline, one whose first
// stream opened meanwhile comes online, for everyone; and the streams of
// an instance that lost the feed of ephemeral events are told so.
func TestClusterPresenceAcrossRedisOutage(t *testing.T) {
	forRedisRestarts(t, func(t *testing.T, persist bool) {
		c := startCluster(t, 2, true, persist, map[string]string{"HERALD_PRESENCE_GRACE": "200ms"})
		n0, n1 := c.nodes[0], c.nodes[1]
		_, alice := c.lobby(n1, "alice", "bob", "dave")
		bob := n0.open("bob", "")
		presenceSettles(t, alice, map[string]string{"bob": "online"})

		c.redis.Kill()
		bob.Close()
		n0.open("dave", "")
		waitStreamsOpen(t, n0.testServer, 1)
		// n0 tries to record both changes, and fails, before Redis is
		// back; a change recorded after it is back proves nothing.
		time.Sleep(300 * time.Millisecond)
		if err := c.redis.Start(); err != nil {
			t.Fatal(err)
		}
		// The cluster's record comes back to the truth: n0 records its
		// streams again at its next heartbeat, and bob's grace, which
		// that starts, runs out.
		for _, n := range []*streamScene{n0, n1} {
			for deadline := time.Now().Add(streamtest.Timeout); ; {
				got := getPresence(t, n.testServer, n.tok("alice"), "bob", "dave")
				if got[0].Status == "offline" && got[1].Status == "online" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET /v1/presence bob, dave on %s = %s, %s; want offline, online within %v", n.URL, got[0].Status, got[1].Status, streamtest.Timeout)
				}
				time.Sleep(20 * time.Millisecond) // polling a condition, not guessing a delay
			}
		}
		// alice's instance lost the feed while Redis was down: her
		// stream is told to refetch presence. What n0 announced before
		// her instance subscribed again never reaches her; the refetch,
		// and what is announced after it, bring her view to the truth.
		refetch := func(users ...string) []presenceInfo { return getPresence(t, n1.testServer, n1.tok("alice"), users...) }
		if seen := presenceSettlesRefetching(t, alice, map[string]string{"bob": "offline", "dave": "online"}, refetch); !seen[event.PresenceStale] {
			alice.WaitFor(event.PresenceStale)
		}
	})
}
