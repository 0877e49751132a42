package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/stream/streamtest"
)

// BenchmarkClusterTakeover measures how long a cluster goes without a
// sequencer when the one it has is killed: from SIGKILL of the leading
// instance to a message, posted on a survivor right after, reaching a
// stream on that survivor. Each round starts a new instance first, which
// takes its place in the queue for the lock.
func BenchmarkClusterTakeover(b *testing.B) {
	b.StopTimer()
	url, prefix := streamtest.RedisURL(b)
	env := clusterEnv(b, url, prefix)
	leader := startProc(b, withEnv(env, "HERALD_INSTANCE_ID", "first"))
	token := func(user string) string {
		s := &testServer{t: b, secret: []byte(testSecret)}
		return s.token(user)
	}
	alice := token("alice")
	var room struct{ ID string }
	(&testServer{t: b, URL: leader.URL}).must(http.StatusCreated, "POST", "/v1/rooms", alice, map[string]any{"name": "r"}, &room)
	// Each round's set-up (an instance to start) is not timed; b.Loop
	// times all of a round, so the old loop form is used.
	var total time.Duration
	b.ResetTimer()
	for n := 1; n <= b.N; n++ {
		next := startProc(b, withEnv(env, "HERALD_INSTANCE_ID", "next"+itoa(n)))
		c := streamtest.Connect(b, next.URL+"/v1/stream", http.Header{"Authorization": {"Bearer " + alice}})
		c.Expect("ready")
		marker := "takeover-" + itoa(n)
		b.StartTimer()
		start := time.Now()
		leader.kill()
		if _, err := ssePostFrom(next.URL, alice, room.ID, marker); err != nil {
			b.Fatal(err)
		}
		for {
			f := c.Next()
			if f.Event == "message:created" && strings.Contains(f.Data, `"text":"`+marker+`"`) {
				break
			}
		}
		total += time.Since(start)
		b.StopTimer()
		c.Close()
		leader = next
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/takeover")
}
