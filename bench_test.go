package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBenchCommand runs `herald bench` through run() against a real server
// and checks its JSON report: messages flowed, none lost or duplicated.
func TestBenchCommand(t *testing.T) {
	s := startServer(t, nil)
	r := runBenchJSON(t, s.URL, s.secret, "--streams", "50", "--rooms", "2", "--publishers", "2", "--duration", "1s")
	if r.Posts <= 0 {
		t.Errorf("posts = %d; want > 0", r.Posts)
	}
	if r.Deliveries <= 0 {
		t.Errorf("deliveries = %d; want > 0", r.Deliveries)
	}
	if r.Lost != 0 {
		t.Errorf("lost = %d; want 0", r.Lost)
	}
	if r.Duplicated != 0 {
		t.Errorf("duplicated = %d; want 0", r.Duplicated)
	}
	// Every post reaches the 25 streams of its room.
	if r.Deliveries != r.Expected || r.Expected != 25*r.Posts {
		t.Errorf("deliveries = %d, expected = %d; want both 25 × posts = %d", r.Deliveries, r.Expected, 25*r.Posts)
	}
	if r.Latency.Count != uint64(r.Deliveries) {
		t.Errorf("latency samples = %d; want one per delivery, %d", r.Latency.Count, r.Deliveries)
	}
}

// runBenchJSON runs `herald bench` against url with args and returns its
// --json report; the run must succeed.
func runBenchJSON(t *testing.T, url string, secret []byte, args ...string) benchReport {
	t.Helper()
	file := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	args = append([]string{"bench", "--url", url, "--jwt-secret", string(secret), "--json", file}, args...)
	err := run(ctx, args, func(string) string { return "" }, &stdout, t.Output())
	t.Logf("report:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("run(bench) = %v; want nil", err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var r benchReport
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return r
}

// TestBenchCommandDroppedStreams cuts every stream's connection in the
// middle of the run, as a network failure would: bench must count the drops
// and resume each stream with Last-Event-ID, with nothing lost and nothing
// received twice.
func TestBenchCommandDroppedStreams(t *testing.T) {
	s := startServer(t, nil)
	proxyURL, cuts := startCutProxy(t, strings.TrimPrefix(s.URL, "http://"), 5)
	r := runBenchJSON(t, proxyURL, s.secret, "--streams", "20", "--rooms", "2", "--publishers", "2", "--duration", "1s")
	if r.Deliveries <= 0 || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("deliveries, lost, duplicated = %d, %d, %d; want > 0, 0, 0 (errors %v)", r.Deliveries, r.Lost, r.Duplicated, r.Errors)
	}
	if n := cuts.Load(); n == 0 || r.Errors["stream_dropped"] != n {
		t.Errorf("errors[stream_dropped] = %d after %d cut connections; want as many, and more than 0", r.Errors["stream_dropped"], n)
	}
}

// TestBenchHTTPS runs bench through a TLS-terminating reverse proxy, as a
// deployment behind one would be measured: streams then arrive chunked.
func TestBenchHTTPS(t *testing.T) {
	s := startServer(t, nil)
	target, _ := url.Parse(s.URL)
	proxy := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		FlushInterval: -1,
	})
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	roots := x509.NewCertPool()
	roots.AddCert(proxy.Certificate())

	o := benchOptions{URL: proxy.URL, Streams: 10, Rooms: 2, Publishers: 2, Size: 100, Duration: 500 * time.Millisecond, secret: s.secret, roots: roots}
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := runBench(ctx, o, t.Output())
	if err != nil {
		t.Fatalf("runBench over https = %v; want nil", err)
	}
	if r.Deliveries <= 0 || r.Deliveries != r.Expected || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("deliveries, expected, lost, duplicated = %d, %d, %d, %d; want all expected, > 0, none lost or twice (errors %v)",
			r.Deliveries, r.Expected, r.Lost, r.Duplicated, r.Errors)
	}
}

// startCutProxy relays TCP connections to target and cuts each stream
// connection once it has carried after message:created events, unless the
// stream resumes (its request has a Last-Event-ID): every stream is cut
// once. It returns the proxy's URL and the count of cuts; the test's
// cleanup stops it.
func startCutProxy(t *testing.T, target string, after int) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		cuts  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = map[net.Conn]bool{}
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns[c] = true
		mu.Unlock()
	}
	relay := func(client net.Conn) {
		defer client.Close()
		server, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		track(server)
		defer server.Close()
		// The request's head tells a fresh stream from everything else.
		var head []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(head, []byte("\r\n\r\n")) {
			n, err := client.Read(buf)
			if err != nil {
				return
			}
			head = append(head, buf[:n]...)
		}
		cut := bytes.HasPrefix(head, []byte("GET /v1/stream")) && !bytes.Contains(head, []byte("Last-Event-Id:"))
		if _, err := server.Write(head); err != nil {
			return
		}
		wg.Go(func() { io.Copy(server, client) })
		if !cut {
			io.Copy(client, server)
			return
		}
		// Count events as they pass, carrying the tail of each read over
		// so that an event split between two reads still counts.
		marker := []byte("event: message:created")
		var seen int
		var tail []byte
		for seen < after {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			if _, err := client.Write(buf[:n]); err != nil {
				return
			}
			window := append(tail, buf[:n]...)
			seen += bytes.Count(window, marker)
			tail = append([]byte(nil), window[max(0, len(window)-len(marker)+1):]...)
		}
		cuts.Add(1)
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Go(func() { relay(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String(), &cuts
}

// TestBenchRateLimited checks that a server with rate limits on stops the
// run with advice rather than skewing the figures.
func TestBenchRateLimited(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_RATE_LIMITS": "on", "HERALD_RATE_WRITES": "1"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, []string{"bench", "--url", s.URL, "--jwt-secret", string(s.secret),
		"--streams", "5", "--rooms", "5", "--duration", "1s"},
		func(string) string { return "" }, &bytes.Buffer{}, t.Output())
	if err == nil || !strings.Contains(err.Error(), "HERALD_RATE_LIMITS=off") {
		t.Fatalf("run(bench) against rate limits = %v; want advice to set HERALD_RATE_LIMITS=off", err)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	// Exact percentiles of the data, sorted, by the same rank rule.
	exact := func(sorted []int64, q float64) int64 {
		rank := int(math.Ceil(q * float64(len(sorted))))
		return sorted[max(rank, 1)-1]
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		data []int64
	}{
		{"uniform 1µs..100ms", func() []int64 {
			var d []int64
			for i := int64(1); i <= 100_000; i++ {
				d = append(d, i*1000)
			}
			return d
		}()},
		{"log-normal around 1ms", func() []int64 {
			var d []int64
			for range 200_000 {
				d = append(d, int64(math.Exp(rng.NormFloat64()*1.5)*1e6))
			}
			return d
		}()},
		{"small integers", []int64{0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h histogram
			for _, v := range c.data {
				h.Record(v)
			}
			sorted := slices.Clone(c.data)
			slices.Sort(sorted)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.Quantile(q), exact(sorted, q)
				if diff := math.Abs(float64(got - want)); diff > 0.01*float64(want) {
					t.Errorf("Quantile(%v) = %d; want %d within 1%%", q, got, want)
				}
			}
			if h.Count() != uint64(len(c.data)) || h.Max() != sorted[len(sorted)-1] {
				t.Errorf("Count, Max = %d, %d; want %d, %d", h.Count(), h.Max(), len(c.data), sorted[len(sorted)-1])
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var all, a, b histogram
	for i := int64(0); i < 10_000; i++ {
		v := i * i
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var merged histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&histogram{}) // empty: no change
	if merged != all {
		t.Errorf("Merge(a, b) differs from recording everything in one histogram: count %d, max %d; want %d, %d",
			merged.Count(), merged.Max(), all.Count(), all.Max())
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Bucket indexes are contiguous and each value falls in its bucket.
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := histIndex(v)
		lower, width := histBounds(i)
		if i < 0 || i >= histBuckets || v < lower || v-lower >= width {
			t.Errorf("histIndex(%d) = %d, bucket [%d, +%d); want a bucket holding it", v, i, lower, width)
		}
	}
	for i := 1; i < histBuckets; i++ {
		lo, w := histBounds(i - 1)
		next, _ := histBounds(i)
		if lo+w != next {
			t.Fatalf("histBounds(%d) ends at %d; bucket %d starts at %d", i-1, lo+w, i, next)
		}
	}
}

func TestPayload(t *testing.T) {
	cases := []struct {
		name          string
		pub           int
		seq, sent     int64
		size, wantLen int
	}{
		{"padded", 3, 17, 1_700_000_000_123_456_789, 100, 100},
		{"header longer than size", 0, 1, 1_700_000_000_000_000_000, 10, 36},
		{"one byte of padding", 12, 999, 1_700_000_000_000_000_000, 40, 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := string(appendPayload(nil, "abcd1234", c.pub, c.seq, c.sent, c.size))
			if len(text) != c.wantLen {
				t.Errorf("len(appendPayload(size %d)) = %d; want %d (%q)", c.size, len(text), c.wantLen, text)
			}
			// The subscriber reads it out of the event's JSON data.
			data, _ := json.Marshal(map[string]any{"id": 5, "room": "r1", "user": "u", "text": text, "created_at": 1})
			run, pub, seq, sent, ok := parsePayload(messageText(string(data)))
			if !ok || run != "abcd1234" || pub != c.pub || seq != c.seq || sent != c.sent {
				t.Errorf("parsePayload(%q) = %q, %d, %d, %d, %v; want abcd1234, %d, %d, %d, true",
					text, run, pub, seq, sent, ok, c.pub, c.seq, c.sent)
			}
		})
	}
	for _, bad := range []string{"", "hello", "hb1 ", "hb1 run x 1 2", "hb1 run 1 0 2", "hb1 run 1 2 now"} {
		if _, _, _, _, ok := parsePayload(bad); ok {
			t.Errorf("parsePayload(%q) ok = true; want false", bad)
		}
	}
}

func TestBenchSeqSet(t *testing.T) {
	var s seqSet
	var gaps int64
	for _, n := range []int64{1, 2, 5, 3, 4, 200} {
		if s.has(n) {
			t.Fatalf("has(%d) before add = true", n)
		}
		gaps += s.add(n)
	}
	if gaps != 194 || s.count != 6 || !s.has(200) || s.has(6) {
		t.Errorf("after 1,2,5,3,4,200: gaps %d, count %d; want 194, 6", gaps, s.count)
	}
}

// Streams spread over one loopback source address per 5,000 by default;
// a server elsewhere is reached from one address only.
func TestBenchSourcesDefault(t *testing.T) {
	tests := []struct {
		url     string
		streams int
		sources int // as given; 0 is the default
		want    int // -1: refused
	}{
		{"http://127.0.0.1:8080", 1000, 0, 1},
		{"http://127.0.0.1:8080", 5000, 0, 1},
		{"http://127.0.0.1:8080", 19800, 0, 4},
		{"http://localhost:8080", 19800, 0, 4},
		{"http://127.0.0.1:8080", 19800, 2, 2},
		{"http://chat.example:8080", 19800, 0, 1},
		{"http://chat.example:8080", 19800, 2, -1},
	}
	for _, tt := range tests {
		o := benchOptions{URL: tt.url, Streams: tt.streams, Rooms: 1, Publishers: 1, Size: 100, Duration: time.Second, Sources: tt.sources}
		err := o.check()
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("%s, %d streams, --sources %d: accepted; want refused", tt.url, tt.streams, tt.sources)
		case tt.want >= 0 && err != nil:
			t.Errorf("%s, %d streams, --sources %d: %v", tt.url, tt.streams, tt.sources, err)
		case tt.want >= 0 && o.Sources != tt.want:
			t.Errorf("%s, %d streams, --sources %d: %d sources; want %d", tt.url, tt.streams, tt.sources, o.Sources, tt.want)
		}
	}
}
