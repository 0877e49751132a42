package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/bench"
)

// The runs below post at a fixed rate rather than flat out: a loaded
// machine then has as much to deliver as an idle one, and what is still on
// its way when posting ends arrives well within bench's drain time, so
// lost is 0 for the right reason, not by luck.
const benchTestRate = "100"

// TestBenchCommand runs `herald bench` through run() against a real server
// and checks its JSON report: messages flowed, none lost or duplicated.
func TestBenchCommand(t *testing.T) {
	s := startServer(t, nil)
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	r := runBenchJSON(t, s.URL, s.secret, "--streams", "50", "--rooms", "2", "--publishers", "2", "--rate", benchTestRate, "--duration", "1s", "--cpuprofile", profile)
	if fi, err := os.Stat(profile); err != nil || fi.Size() == 0 {
		t.Errorf("--cpuprofile %s: %v; want a profile written", profile, err)
	}
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

// TestBenchCommandTwoURLs gives bench one server under two names, as it
// would give it the instances of a cluster: streams and posts spread over
// both, and every message still reaches each stream of its room once.
// The test process is the server, so its PID stands for both instances.
func TestBenchCommandTwoURLs(t *testing.T) {
	s := startServer(t, nil)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	urls := s.URL + ",http://localhost:" + u.Port()
	pid := strconv.Itoa(os.Getpid())
	r := runBenchJSON(t, urls, s.secret, "--streams", "30", "--rooms", "3", "--publishers", "4", "--rate", benchTestRate, "--duration", "1s", "--pid", pid+","+pid)
	if r.Scenario.URL != urls {
		t.Errorf("scenario url = %q; want %q", r.Scenario.URL, urls)
	}
	if r.Posts <= 0 || r.Deliveries != r.Expected || r.Expected != 10*r.Posts || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("posts, deliveries, expected, lost, duplicated = %d, %d, %d, %d, %d; want > 0, 10 × posts twice, 0, 0 (errors %v)",
			r.Posts, r.Deliveries, r.Expected, r.Lost, r.Duplicated, r.Errors)
	}
	if r.Server == nil || r.Server.PID != 0 || len(r.Server.Processes) != 2 || r.Server.Processes[1].PID != os.Getpid() {
		t.Errorf("server = %+v; want the sum of two processes, each listed with PID %d", r.Server, os.Getpid())
	}
}

// runBenchJSON runs `herald bench` against url with args and returns its
// --json report; the run must succeed.
func runBenchJSON(t *testing.T, url string, secret []byte, args ...string) bench.Report {
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
	var r bench.Report
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
	r := runBenchJSON(t, proxyURL, s.secret, "--streams", "20", "--rooms", "2", "--publishers", "2", "--rate", benchTestRate, "--duration", "1s")
	if r.Deliveries <= 0 || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("deliveries, lost, duplicated = %d, %d, %d; want > 0, 0, 0 (errors %v)", r.Deliveries, r.Lost, r.Duplicated, r.Errors)
	}
	if n := cuts.Load(); n == 0 || r.Errors["stream_dropped"] != n {
		t.Errorf("errors[stream_dropped] = %d after %d cut connections; want as many, and more than 0", r.Errors["stream_dropped"], n)
	}
}

// TestBenchRoomsOverTheCap: a scenario with more rooms than the server
// lets one user be in (a room per stream, as the connect scenarios have)
// sets up and runs: no user of bench's is in more rooms than it needs,
// idle or posting.
func TestBenchRoomsOverTheCap(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_MAX_ROOMS_PER_USER": "2"})
	r := runBenchJSON(t, s.URL, s.secret, "--streams", "6", "--rooms", "6", "--idle", "--duration", "100ms")
	if r.ConnectSeconds <= 0 || len(r.Errors) > 0 {
		t.Errorf("idle: connected in %vs, errors %v; want every stream connected, no error", r.ConnectSeconds, r.Errors)
	}
	r = runBenchJSON(t, s.URL, s.secret, "--streams", "6", "--rooms", "6", "--publishers", "6", "--rate", benchTestRate, "--duration", "1s")
	if r.Deliveries <= 0 || r.Deliveries != r.Expected || r.Lost != 0 {
		t.Errorf("posting: deliveries, expected, lost = %d, %d, %d; want deliveries = expected > 0, none lost", r.Deliveries, r.Expected, r.Lost)
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

	o := bench.Options{URLs: []string{proxy.URL}, Streams: 10, Rooms: 2, Publishers: 2, Rate: 100, Size: 100, Duration: 500 * time.Millisecond,
		Secret: s.secret, Roots: roots, Progress: t.Output()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := bench.Run(ctx, o)
	if err != nil {
		t.Fatalf("bench.Run over https = %v; want nil", err)
	}
	if r.Deliveries <= 0 || r.Deliveries != r.Expected || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("deliveries, expected, lost, duplicated = %d, %d, %d, %d; want all expected, > 0, none lost or twice (errors %v)",
			r.Deliveries, r.Expected, r.Lost, r.Duplicated, r.Errors)
	}
}

// startCutProxy relays TCP connections to target and cuts each stream
// connection when the after-th message:created event comes, unless the
// stream resumes (its request has a Last-Event-ID): every stream is cut
// once. The read that completes that event is not relayed, so the client
// can only get it by resuming: a cut is never lost in the end of a run,
// and the client counts every one. It returns the proxy's URL and the
// count of cuts; the test's cleanup stops it.
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
		for {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			window := append(tail, buf[:n]...)
			if seen += bytes.Count(window, marker); seen >= after {
				break
			}
			if _, err := client.Write(buf[:n]); err != nil {
				return
			}
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
