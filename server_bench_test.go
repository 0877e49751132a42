package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldchat/herald/api"
)

// End-to-end benchmarks over real loopback HTTP against a real server.
// Each reports its own rate metric beside ns/op.

// benchServer starts a server with durable (FULL) commits and no limits.
func benchServer(b *testing.B, env map[string]string) *testServer {
	base := map[string]string{"HERALD_SQLITE_SYNC": "FULL", "HERALD_LOG_LEVEL": "error", "HERALD_QUEUE_SIZE": "4096"}
	for k, v := range env {
		base[k] = v
	}
	return startServer(b, base)
}

// countingStream reads a stream and counts message:created events.
type countingStream struct {
	body io.ReadCloser
	n    atomic.Int64
}

func openCounting(b *testing.B, url, token, lastID string) *countingStream {
	req, _ := http.NewRequest("GET", url+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := benchClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("open stream: %v %v", resp, err)
	}
	cs := &countingStream{body: resp.Body}
	r := bufio.NewReaderSize(resp.Body, 4096)
	// Wait for ready so the stream is registered before posting.
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			b.Fatalf("read ready: %v", err)
		}
		if bytes.HasPrefix(line, []byte("event: ready")) {
			break
		}
	}
	go func() {
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
			if bytes.HasPrefix(line, []byte("event: message:created")) {
				cs.n.Add(1)
			}
		}
	}()
	return cs
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}}

func waitCount(b *testing.B, streams []*countingStream, want int64) {
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range streams {
		for s.n.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("stream got %d events; want %d", s.n.Load(), want)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func benchPost(b *testing.B, url, token, room, text string) {
	req, _ := http.NewRequest("POST", url+"/v1/rooms/"+room+"/messages", strings.NewReader(`{"text":"`+text+`"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("post = %d", resp.StatusCode)
	}
}

// BenchmarkFanout_1000Streams posts one message per op to a room with 1,000
// open streams and waits until every stream has received it.
func BenchmarkFanout_1000Streams(b *testing.B) {
	const n = 1000
	s := benchServer(b, nil)
	owner := s.token("owner")
	room := s.createRoom(owner, "fanout", false)
	streams := make([]*countingStream, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			tok, _ := api.Mint(s.secret, fmt.Sprint("u", i), "", time.Hour)
			s.must(200, "POST", "/v1/rooms/"+room+"/join", tok, nil, nil)
			streams[i] = openCounting(b, s.URL, tok, "")
		}()
	}
	wg.Wait()
	defer func() {
		for _, st := range streams {
			st.body.Close()
		}
	}()
	text := strings.Repeat("x", 100)
	b.ReportAllocs()
	b.ResetTimer()
	var sent int64
	for b.Loop() {
		benchPost(b, s.URL, owner, room, text)
		sent++
		waitCount(b, streams, sent)
	}
	b.ReportMetric(float64(sent*n)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkReplay_10000Events measures a reconnecting stream that missed
// 10,000 events: from the request until the last missed event is read.
func BenchmarkReplay_10000Events(b *testing.B) {
	const n = 10000
	s := benchServer(b, map[string]string{"HERALD_SQLITE_SYNC": "NORMAL"})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "replay", false)
	s.must(200, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	c := s.stream(bob, "")
	start := c.LastID
	c.Close()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				benchPost(b, s.URL, alice, room, fmt.Sprint("m", i))
			}
		}()
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cs := openCounting(b, s.URL, bob, start)
		waitCount(b, []*countingStream{cs}, n)
		cs.body.Close()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPost_64Clients posts durable messages from 64 concurrent clients
// (SQLite synchronous=FULL, group commit).
func BenchmarkPost_64Clients(b *testing.B) {
	s := benchServer(b, nil)
	owner := s.token("owner")
	room := s.createRoom(owner, "posts", false)
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = s.token(fmt.Sprint("p", i))
		s.must(200, "POST", "/v1/rooms/"+room+"/join", tokens[i], nil, nil)
	}
	var next atomic.Int64
	b.SetParallelism((64 + 1) / 2) // GOMAXPROCS is 2 here: 64 goroutines
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := tokens[int(next.Add(1)-1)%len(tokens)]
		for pb.Next() {
			benchPost(b, s.URL, tok, room, "durable hello")
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
}

// BenchmarkReplayLoop_OthersLatency measures what a user who loops stream
// opens with an old Last-Event-ID (each a replay of --max-replay events)
// costs everyone else: the latency of posts to another user's stream,
// alone, beside the loop with the default --rate-streams, and beside it
// without that limit. Each op is one post, from post to delivery.
func BenchmarkReplayLoop_OthersLatency(b *testing.B) {
	for _, tc := range []struct {
		name    string
		loop    bool
		streams string // --rate-streams
	}{
		{"alone", false, "5"},
		{"beside_a_replay_loop", true, "5"},
		{"beside_a_replay_loop_unlimited", true, "0"},
	} {
		loop := tc.loop
		b.Run(tc.name, func(b *testing.B) {
			s := benchServer(b, map[string]string{"HERALD_RATE_LIMITS": "on", "HERALD_SQLITE_SYNC": "NORMAL",
				"HERALD_RATE_MESSAGES": "0", "HERALD_RATE_WRITES": "0", "HERALD_RATE_STREAMS": tc.streams})
			alice, bob, mallory := s.token("alice"), s.token("bob"), s.token("mallory")
			busy := s.createRoom(mallory, "busy", false)
			start := s.stream(mallory, "").LastID
			// A history longer than --max-replay (10,000): every open of
			// mallory's replays that much, then gets resync too_far.
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := range 1500 {
						if _, err := ssePostFrom(s.URL, mallory, busy, fmt.Sprintf("history %d/%d", w, i)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			room := s.createRoom(alice, "quiet", false)
			s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
			c := s.stream(bob, "")

			stop := make(chan struct{})
			var loops sync.WaitGroup
			var replayed, refused atomic.Int64
			loopStart := time.Now()
			if loop {
				for range 2 {
					loops.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
							req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/v1/stream", nil)
							req.Header.Set("Authorization", "Bearer "+mallory)
							req.Header.Set("Last-Event-ID", start)
							resp, err := benchClient.Do(req)
							if err != nil {
								cancel()
								continue
							}
							// Read the replay to its end (resync too_far), or
							// the refusal of a rate-limited open.
							r := bufio.NewReader(resp.Body)
							for {
								line, err := r.ReadSlice('\n')
								if err != nil {
									break
								}
								if bytes.HasPrefix(line, []byte("event: resync")) {
									replayed.Add(1)
									break
								}
								if bytes.HasPrefix(line, []byte(": closing")) {
									refused.Add(1)
									break
								}
							}
							resp.Body.Close()
							cancel()
						}
					})
				}
			}
			latencies := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				text := fmt.Sprintf("quiet %d", i)
				sent := time.Now()
				if _, err := ssePostFrom(s.URL, alice, room, text); err != nil {
					b.Fatal(err)
				}
				for {
					f := c.Next()
					if f.Event == "message:created" && strings.Contains(f.Data, `"text":"`+text+`"`) {
						break
					}
				}
				latencies = append(latencies, time.Since(sent))
			}
			b.StopTimer()
			close(stop)
			loops.Wait()
			looped := time.Since(loopStart).Seconds()
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(replayed.Load())/looped, "replays/s")
			b.ReportMetric(float64(refused.Load())/looped, "refused/s")
		})
	}
}
