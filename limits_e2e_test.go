package main

// Clients that send slowly, not at all, or too much: every listener bounds
// the time to send a request's body and the size of its headers, so no
// client holds a connection (and its file descriptor) for long, and a
// server at its file limit serves again once such connections are cut.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldchat/herald/stream/streamtest"
)

// rawRequest sends head (a request line and headers, without the blank
// line) and body on a new connection to the server at url, and returns the
// connection with its reader, the client's wait bounded by a minute.
func rawRequest(t *testing.T, url, head, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(conn, head+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readAnswer reads one response from br.
func readAnswer(t *testing.T, what string, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", what, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", what, err)
	}
	return resp, data
}

// checkClosed fails the test unless the server closes the connection.
func checkClosed(t *testing.T, what string, br *bufio.Reader) {
	t.Helper()
	if b, err := br.ReadByte(); err != io.EOF {
		t.Errorf("%s: the connection is still open (read %q, %v); want it closed", what, b, err)
	}
}

// limitsServer starts a server with the server API on a listener of its
// own, the read timeout short, and returns it with that listener's URL.
func limitsServer(t *testing.T, env map[string]string) (*testServer, string) {
	t.Helper()
	env = testEnv(t, env)
	env["HERALD_API_KEYS"] = apiKeyOld
	env["HERALD_SERVER_ADDR"] = "127.0.0.1:0"
	return startApart(t, env, func(cfg *Config, addr chan<- string) { cfg.serverReady = addr })
}

// startApart starts a server with env (complete: see testEnv) whose second
// listener, the server API's or the metrics' as wire says, tells its
// address; it returns the server and that listener's URL.
func startApart(t *testing.T, env map[string]string, wire func(*Config, chan<- string)) (*testServer, string) {
	t.Helper()
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	wire(&cfg, addr)
	s := startConfig(t, cfg)
	return s, "http://" + <-addr
}

// A body declared and never sent answers 408 once --read-timeout passes,
// changes nothing, and its connection is closed; on the server API's
// listener too. A request refused before its body is read (no token) has
// its connection closed as well, instead of waiting for that body forever.
func TestStalledBodyAnswers408(t *testing.T) {
	s, serverAPI := limitsServer(t, map[string]string{"HERALD_READ_TIMEOUT": "300ms"})
	alice := s.token("alice")
	room := s.createRoom(alice, "stalled", false)
	host := strings.TrimPrefix(s.URL, "http://")

	tests := []struct {
		name, url, head string
	}{
		{"a post", s.URL, "POST /v1/rooms/" + room + "/messages HTTP/1.1\r\nHost: " + host +
			"\r\nAuthorization: Bearer " + alice + "\r\nContent-Type: application/json\r\nContent-Length: 100"},
		{"a chunked post", s.URL, "POST /v1/rooms/" + room + "/messages HTTP/1.1\r\nHost: " + host +
			"\r\nAuthorization: Bearer " + alice + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"},
		{"a server API post", serverAPI, "POST /v1/server/rooms/" + room + "/messages HTTP/1.1\r\nHost: " + host +
			"\r\nX-API-Key: " + apiKeyOld + "\r\nContent-Type: application/json\r\nContent-Length: 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"text":"nev`
			if strings.Contains(tt.head, "chunked") {
				body = fmt.Sprintf("%x\r\n%s\r\n", len(body), body)
			}
			_, br := rawRequest(t, tt.url, tt.head, body)
			resp, data := readAnswer(t, tt.name+" whose body never ends", br)
			restCheckError(t, tt.name+" whose body never ends", resp, data, http.StatusRequestTimeout, "timeout")
			checkClosed(t, tt.name+" after 408", br)
		})
	}
	var page struct{ Messages []json.RawMessage }
	s.must(http.StatusOK, "GET", "/v1/rooms/"+room+"/messages", alice, nil, &page)
	if len(page.Messages) != 0 {
		t.Errorf("history after posts whose bodies never came = %d messages; want none", len(page.Messages))
	}

	_, br := rawRequest(t, s.URL, "POST /v1/rooms HTTP/1.1\r\nHost: "+host+"\r\nContent-Length: 100", "")
	resp, data := readAnswer(t, "a post without a token whose body never comes", br)
	restCheckError(t, "a post without a token whose body never comes", resp, data, http.StatusUnauthorized, "unauthenticated")
	checkClosed(t, "a post without a token whose body never comes", br)
}

// Headers beyond --max-header-bytes answer 431 on every listener; headers
// within it are served.
func TestOversizedHeadersAnswer431(t *testing.T) {
	s, serverAPI := limitsServer(t, map[string]string{"HERALD_MAX_HEADER_BYTES": "8192"})
	for _, url := range []string{s.URL, serverAPI} {
		for _, tt := range []struct {
			size int
			want int
		}{{4000, http.StatusOK}, {64 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
			req, _ := http.NewRequest("GET", url+"/healthz", nil)
			req.Header.Set("X-Padding", strings.Repeat("p", tt.size))
			resp, err := restClient.Do(req)
			if err != nil {
				t.Fatalf("GET %s/healthz with a header of %d bytes: %v", url, tt.size, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s/healthz with a header of %d bytes = %d; want %d", url, tt.size, resp.StatusCode, tt.want)
			}
		}
	}
}

// Streams, over HTTP/1.1 and HTTP/2, last far beyond --read-timeout: it
// bounds sending a request, not the answer.
func TestStreamsOutliveReadTimeout(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_READ_TIMEOUT": "100ms", "HERALD_HEARTBEAT": "500ms"})
	alice := s.token("alice")
	room := s.createRoom(alice, "long", false)
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		c := streamtest.ConnectWith(t, protoClient(t, proto, nil), s.URL+"/v1/stream", http.Header{"Authorization": {"Bearer " + alice}})
		c.Expect("ready")
		for range 2 {
			for f, ok := c.Frame(); f.Comment != "ping"; f, ok = c.Frame() {
				if !ok {
					t.Fatalf("a stream over %s ended before its heartbeat; want it open", proto)
				}
			}
		}
		id := s.post(alice, room, "still here over "+proto)
		var msg struct{ ID int64 }
		c.ExpectData("message:created", &msg)
		if msg.ID != id {
			t.Errorf("message:created over %s id = %d; want %d", proto, msg.ID, id)
		}
		c.Close()
	}
}

// serveLimitedEnv makes the test binary a helper process: a server whose
// file descriptors are limited to those it holds once started plus the
// number this variable gives (serveLimited).
const serveLimitedEnv = "HERALD_TEST_SPARE_FDS"

// serveLimited runs a server configured by the HERALD_* environment,
// prints its address on stdout once it listens, then lowers its file
// limit to what it holds plus spare, and serves until SIGTERM.
func serveLimited(spare string) int {
	n, err := strconv.Atoi(spare)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := parseConfig(nil, os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, os.Stderr, ready) }()
	select {
	case addr := <-ready:
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		lim.Cur = uint64(len(fds) + n)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(addr)
	case err := <-done:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// syncBuffer is a bytes.Buffer that a process's output and a test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A server at its file limit, every descriptor held by a client that
// declared a body and never sends it (before any authentication), answers
// /healthz again once --read-timeout cuts those connections, and serves
// on. The server runs in a process of its own, whose file limit is low.
func TestFileLimitRecovers(t *testing.T) {
	env := testEnv(t, map[string]string{"HERALD_READ_TIMEOUT": "1s"})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveLimitedEnv+"=40")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var logs syncBuffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("the server at its file limit exited with %v; want 0", err)
		}
		t.Logf("the server's log:\n%s", logs.String())
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the server did not say where it listens: %v", err)
	}
	url := "http://" + strings.TrimSpace(line)

	// Three times as many stalled requests as the server has descriptors
	// to spare: the first ones take them all, the rest wait in the
	// listen queue before /healthz.
	for range 120 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		io.WriteString(conn, "POST /v1/rooms HTTP/1.1\r\nHost: herald\r\nContent-Length: 100\r\n\r\n")
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz with the server at its file limit: %v; want an answer once the stalled requests are cut", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz with the server at its file limit = %d; want 200", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "too many open files") {
		t.Errorf("the server never ran out of file descriptors; the test proves nothing (log:\n%s)", logs.String())
	}
	// It serves on: a token-bearing request that reads the database.
	s := &testServer{t: t, URL: url, secret: []byte(env["HERALD_JWT_SECRET"]), client: client}
	s.createRoom(s.token("alice"), "after", false)
}
