package main

// The database failing under the server: a disk that fills up, another
// process that holds the write lock, a client that leaves while its
// request waits. Each answers 503 with Retry-After at once, flips
// readiness while it lasts, is counted, and ends by itself.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logSink keeps a server's JSON log lines for a test to read, and copies
// them to the test's output.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return l.out.Write(p)
}

// entries returns the lines logged so far, decoded.
func (l *logSink) entries(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// noErrors fails the test for every line logged at ERROR.
func (l *logSink) noErrors(t *testing.T) {
	t.Helper()
	for _, e := range l.entries(t) {
		if e["level"] == "ERROR" {
			t.Errorf("logged at ERROR: %v", e)
		}
	}
}

// startServerLog is startServer with the log in JSON, kept for the test.
func startServerLog(t *testing.T, env map[string]string) (*testServer, *logSink) {
	t.Helper()
	env = testEnv(t, env)
	env["HERALD_LOG_FORMAT"] = "json"
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	logs := &logSink{out: t.Output()}
	return startConfigTo(t, cfg, logs), logs
}

// holdLockEnv makes the test binary a helper process that holds the
// write lock of the SQLite database it names (holdLock).
const holdLockEnv = "HERALD_TEST_HOLD_LOCK"

// holdLock takes the write lock of the database at path, says "locked" on
// stdout, and keeps it until stdin closes.
func holdLock(path string) int {
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=30000")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	conn.ExecContext(ctx, "ROLLBACK")
	return 0
}

// lockDatabaseElsewhere starts another process that holds the write lock
// of the SQLite database at path, as a tool that opened it would, and
// returns once it holds it. release ends that process.
func lockDatabaseElsewhere(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+path)
	cmd.Stderr = t.Output()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			cmd.Wait()
		})
	}
	t.Cleanup(release)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("the process that locks %s said %q (%v); want locked", path, line, err)
	}
	return release
}

// mountTmpfs mounts a tmpfs of size (such as 8m) for the test, a disk that
// fills up for real. It needs root, or CAP_SYS_ADMIN.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v: %s (a test of a full disk mounts one: it needs root, or CAP_SYS_ADMIN)", dir, err, out)
	}
	// Cleanups run last in, first out: after the server's, which was
	// started later.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes a file into dir until its disk is full, to the last
// byte it takes, and returns the function that removes it.
func fillDisk(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for n := len(buf); n > 0; n /= 2 {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", dir, err)
				}
				break
			}
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// readiness is what /readyz answers.
func readiness(t *testing.T, s *testServer) (int, map[string]string) {
	t.Helper()
	status, body := s.do("GET", "/readyz", "", nil)
	var r struct {
		Status string
		Checks map[string]string
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET /readyz = %d %s: %v", status, body, err)
	}
	return status, r.Checks
}

// waitReady waits until /readyz answers 200, for up to a minute.
func waitReady(t *testing.T, s *testServer) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		status, checks := readiness(t, s)
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d %v a minute after the failure ended; want 200", status, checks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sample reads one sample of /metrics, labels and all, such as
// herald_store_unavailable_total{reason="locked"}; 0 when it is missing.
func sample(t *testing.T, s *testServer, name string) float64 {
	t.Helper()
	status, body := s.do("GET", "/metrics", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d; want 200", status)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metric %s = %q: %v", name, v, err)
			}
			return f
		}
	}
	return 0
}

// checkUnavailable fails the test unless an answer is 503 unavailable
// with Retry-After.
func checkUnavailable(t *testing.T, what string, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || errorCode(t, body) != "unavailable" {
		t.Fatalf("%s = %d %s (Retry-After %q); want 503 unavailable with Retry-After", what, resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
}

// TestStoreDiskFull fills the disk of an embedded database for real: a
// post that finds it full answers 503 and changes nothing, readiness says
// disk_full while it lasts, the metric counts it, and once space is freed
// the server serves again by itself, every post answered 201 kept.
func TestStoreDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "8m")
	s, logs := startServerLog(t, map[string]string{"HERALD_DATA_DIR": dir})
	alice := s.token("alice")
	room := s.createRoom(alice, "full", false)
	free := fillDisk(t, dir)

	var stored []string
	text := strings.Repeat("x", 3900)
	post := func(i int) (*http.Response, []byte, string) {
		body := fmt.Sprintf("%d %s", i, text)
		resp, data := s.doResp("POST", "/v1/rooms/"+room+"/messages", alice, map[string]string{"text": body}, nil)
		return resp, data, body
	}
	var refused []string
	i := 0
	fill := func() {
		t.Helper()
		for {
			// The disk holds 8 MiB: far fewer posts of 4 KB fill what is left.
			if i == 2000 {
				t.Fatalf("%d posts of 4 KB on a full 8 MiB disk all answered 201", i)
			}
			resp, data, body := post(i)
			i++
			if resp.StatusCode == http.StatusCreated {
				stored = append(stored, body)
				continue
			}
			checkUnavailable(t, "a post on a full disk", resp, data)
			refused = append(refused, body)
			return
		}
	}
	fill()
	resp, data, body := post(-1)
	checkUnavailable(t, "another post on a full disk", resp, data)
	refused = append(refused, body)
	// Readiness writes a little to find out. Once SQLite has checkpointed,
	// its write-ahead log's space is reused, so a write may fit again for
	// a while: then so do posts, and they take that space.
	status, checks := readiness(t, s)
	for round := 0; status == http.StatusOK; round++ {
		if round == 20 {
			t.Fatalf("GET /readyz on a full disk still %d %v after %d rounds of filling it again", status, checks, round)
		}
		fill()
		status, checks = readiness(t, s)
	}
	if status != http.StatusServiceUnavailable || checks["store"] != "disk_full" {
		t.Errorf("GET /readyz on a full disk = %d %v; want 503 with store disk_full", status, checks)
	}
	if n := sample(t, s, `herald_store_unavailable_total{reason="disk_full"}`); n < float64(len(refused)) {
		t.Errorf("herald_store_unavailable_total{reason=\"disk_full\"} = %v after %d posts refused; want at least that", n, len(refused))
	}

	free()
	waitReady(t, s)
	after := s.post(alice, room, "after")
	var page struct {
		Messages []struct {
			ID   int64
			Text string
		}
	}
	s.must(http.StatusOK, "GET", fmt.Sprintf("/v1/rooms/%s/messages?limit=200&before=%d", room, after+1), alice, nil, &page)
	var texts []string
	for _, m := range page.Messages {
		texts = append(texts, m.Text)
	}
	for _, want := range append(stored, "after") {
		if !slices.Contains(texts, want) {
			t.Errorf("a post answered 201 is missing from history: %.20q", want)
		}
	}
	for _, r := range refused {
		if slices.Contains(texts, r) {
			t.Errorf("a post answered 503 is in history (%.20q); a refused post changes nothing", r)
		}
	}
	logs.noErrors(t)
}

// TestStoreLocked: another process holds the database's write lock. The
// posts meanwhile answer 503 (after the first, at once rather than after a
// busy timeout each), readiness says locked, and all recovers when the
// lock is released.
func TestStoreLocked(t *testing.T) {
	s, logs := startServerLog(t, nil)
	alice := s.token("alice")
	room := s.createRoom(alice, "locked", false)
	release := lockDatabaseElsewhere(t, s.cfg.dbPath())

	for i := range 3 {
		start := time.Now()
		resp, data := s.doResp("POST", "/v1/rooms/"+room+"/messages", alice, map[string]string{"text": "locked out"}, nil)
		checkUnavailable(t, "a post with the database locked", resp, data)
		t.Logf("post %d with the database locked answered 503 in %v", i+1, time.Since(start).Round(time.Millisecond))
	}
	if status, checks := readiness(t, s); status != http.StatusServiceUnavailable || checks["store"] != "locked" {
		t.Errorf("GET /readyz with the database locked = %d %v; want 503 with store locked", status, checks)
	}
	if n := sample(t, s, `herald_store_unavailable_total{reason="locked"}`); n < 3 {
		t.Errorf("herald_store_unavailable_total{reason=\"locked\"} = %v after three posts refused; want at least 3", n)
	}

	release()
	waitReady(t, s)
	s.post(alice, room, "unlocked")
	logs.noErrors(t)
}

// TestClientGoneIsNotAnError: a client that gives up while its request
// waits (here for another process's database lock) is not the server's
// failure: it is logged at debug, with its request id, and counted as 499.
func TestClientGoneIsNotAnError(t *testing.T) {
	s, logs := startServerLog(t, map[string]string{"HERALD_LOG_LEVEL": "debug"})
	alice := s.token("alice")
	room := s.createRoom(alice, "gone", false)
	release := lockDatabaseElsewhere(t, s.cfg.dbPath())

	// This post waits for the lock; its client does not.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", s.URL+"/v1/rooms/"+room+"/messages", strings.NewReader(`{"text":"gone"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("X-Request-Id", "left-early")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a post with the database locked answered %d within 100ms; want it to wait for the lock", resp.StatusCode)
	}
	release()
	waitReady(t, s)

	deadline := time.Now().Add(time.Minute)
	for !slices.ContainsFunc(logs.entries(t), func(e map[string]any) bool {
		return e["msg"] == "client went away" && e["request_id"] == "left-early" && e["level"] == "DEBUG"
	}) {
		if time.Now().After(deadline) {
			t.Fatalf("the post whose client left is not logged at debug as client went away, with its request id")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := sample(t, s, `herald_http_requests_total{method="POST",route="/v1/rooms/:room/messages",status="499"}`); n != 1 {
		t.Errorf("posts counted with status 499 = %v; want 1, the one whose client left", n)
	}
	logs.noErrors(t)
}
