package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/store/storetest"
	"github.com/heraldchat/herald/stream/streamtest"
)

// TestMain stops the PostgreSQL and Redis servers that tests started.
func TestMain(m *testing.M) {
	if path := os.Getenv(holdLockEnv); path != "" {
		// This process is a test's helper: another process that holds
		// a database's write lock.
		os.Exit(holdLock(path))
	}
	if spare := os.Getenv(serveLimitedEnv); spare != "" {
		// This process is a test's helper: a server with few files.
		os.Exit(serveLimited(spare))
	}
	code := m.Run()
	stopBrowser()
	storetest.StopShared()
	streamtest.StopSharedRedis()
	os.Exit(code)
}

// testServer is a real Herald started through serve() on 127.0.0.1 with a
// random port and its own data dir.
type testServer struct {
	t       testing.TB
	URL     string
	cfg     Config
	secret  []byte
	cancel  context.CancelFunc
	stopped chan error
	client  *http.Client // REST calls; restClient, or one that trusts --tls-cert
}

// startServer starts Herald with test-friendly settings; env entries
// override them (HERALD_* names, as a user would set them).
func startServer(t testing.TB, env map[string]string) *testServer {
	t.Helper()
	return startWith(t, testEnv(t, env))
}

// testEnv is startServer's settings: env's entries over the defaults.
func testEnv(t testing.TB, env map[string]string) map[string]string {
	base := map[string]string{
		"HERALD_ADDR":        "127.0.0.1:0",
		"HERALD_DATA_DIR":    t.TempDir(),
		"HERALD_JWT_SECRET":  "test-secret-test-secret-test-secret-0123",
		"HERALD_RATE_LIMITS": "off",
		"HERALD_LOG_LEVEL":   "warn",
		"HERALD_SQLITE_SYNC": "NORMAL",
		"HERALD_RETRY":       "50ms",
		// Shutdown drains for a moment in production; tests stop at once.
		"HERALD_DRAIN_DELAY": "0s",
		// Presence changes are batched for throughput; tests wait on them.
		"HERALD_PRESENCE_BATCH": "5ms",
	}
	for k, v := range env {
		base[k] = v
	}
	return base
}

func startWith(t testing.TB, env map[string]string) *testServer {
	t.Helper()
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	return startConfig(t, cfg)
}

// startConfig starts Herald with cfg.
func startConfig(t testing.TB, cfg Config) *testServer {
	t.Helper()
	return startConfigTo(t, cfg, nil)
}

// startConfigTo starts Herald with cfg, logging to logw, or to the test's
// output when logw is nil.
func startConfigTo(t testing.TB, cfg Config, logw io.Writer) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	s := &testServer{t: t, cfg: cfg, secret: []byte(cfg.JWTSecret), cancel: cancel, stopped: make(chan error, 1), client: restClient}
	scheme := "http://"
	if cfg.TLSCert != "" {
		scheme = "https://"
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(cfg.TLSCert)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("%s holds no certificate", cfg.TLSCert)
		}
		s.client = &http.Client{Timeout: restClient.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	if logw == nil {
		logw = os.Stderr
		if tt, ok := t.(*testing.T); ok {
			logw = tt.Output()
		}
	}
	go func() { s.stopped <- serve(ctx, cfg, logw, ready) }()
	select {
	case addr := <-ready:
		s.URL = scheme + addr
	case err := <-s.stopped:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// stop shuts the server down and waits for it; it is safe to call twice.
func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	// A client's spare connection that never carried a request holds up
	// Shutdown for seconds; close those first.
	http.DefaultClient.CloseIdleConnections()
	restClient.CloseIdleConnections()
	s.httpClient().CloseIdleConnections()
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.stopped:
		if err != nil {
			s.t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		s.t.Errorf("server did not stop within 30s")
	}
}

// restart stops the server and starts a new one on the same data dir.
func (s *testServer) restart() *testServer {
	s.t.Helper()
	s.stop()
	env := map[string]string{}
	for k, v := range envOf(s.cfg) {
		env[k] = v
	}
	return startWith(s.t, env)
}

func envOf(c Config) map[string]string {
	return map[string]string{
		"HERALD_ADDR": "127.0.0.1:0", "HERALD_DATA_DIR": c.DataDir, "HERALD_JWT_SECRET": c.JWTSecret,
		"HERALD_RATE_LIMITS": "off", "HERALD_LOG_LEVEL": "warn", "HERALD_SQLITE_SYNC": c.SQLiteSync,
		"HERALD_RETRY": c.Retry.String(), "HERALD_HEARTBEAT": c.Heartbeat.String(),
		"HERALD_QUEUE_SIZE": itoa(c.QueueSize), "HERALD_REPLAY_BUFFER": itoa(c.ReplayBuffer),
		"HERALD_PRESENCE_BATCH": c.PresenceBatch.String(), "HERALD_PRESENCE_GRACE": c.PresenceGrace.String(),
		"HERALD_TYPING_TIMEOUT": c.TypingTimeout.String(), "HERALD_MAX_STREAMS_PER_USER": itoa(c.MaxStreamsPerUser),
		"HERALD_API_KEYS": strings.Join(c.APIKeys, ","), "HERALD_EDIT_WINDOW": c.EditWindow.String(),
		"HERALD_DRAIN_DELAY":  c.DrainDelay.String(),
		"HERALD_METRICS_ADDR": c.MetricsAddr, "HERALD_MEMBER_ADDS": c.MemberAdds, "HERALD_MAX_ROOMS_PER_USER": itoa(c.MaxRoomsPerUser), "HERALD_MAX_ROOM_MEMBERS": itoa(c.MaxRoomMembers),
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func (s *testServer) httpClient() *http.Client {
	if s.client == nil {
		return restClient
	}
	return s.client
}

// restClient bounds every REST call of the tests, so that a server that
// stops answering fails a test instead of hanging it.
var restClient = &http.Client{Timeout: 30 * time.Second}

// token mints a valid token for user.
func (s *testServer) token(user string) string {
	s.t.Helper()
	tok, err := api.Mint(s.secret, user, strings.ToUpper(user[:1])+user[1:], time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// do sends a request with an optional bearer token and JSON body (a string
// or []byte is sent as is) and returns the status and body.
func (s *testServer) do(method, path, token string, body any) (int, []byte) {
	s.t.Helper()
	resp, data := s.doResp(method, path, token, body, nil)
	return resp.StatusCode, data
}

func (s *testServer) doResp(method, path, token string, body any, header http.Header) (*http.Response, []byte) {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.httpClient().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, data
}

// must sends a request and fails the test unless the status is want; it
// decodes the JSON answer into out when out is not nil.
func (s *testServer) must(want int, method, path, token string, body, out any) {
	s.t.Helper()
	status, data := s.do(method, path, token, body)
	if status != want {
		s.t.Fatalf("%s %s = %d %s; want %d", method, path, status, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

// createRoom creates a room owned by token's user and returns its id.
func (s *testServer) createRoom(token, name string, private bool) string {
	s.t.Helper()
	var room struct{ ID string }
	s.must(http.StatusCreated, "POST", "/v1/rooms", token, map[string]any{"name": name, "private": private}, &room)
	return room.ID
}

// post sends a message and returns its id.
func (s *testServer) post(token, room, text string) int64 {
	s.t.Helper()
	var msg struct{ ID int64 }
	s.must(http.StatusCreated, "POST", "/v1/rooms/"+room+"/messages", token, map[string]any{"text": text}, &msg)
	return msg.ID
}

// stream opens an SSE stream with a bearer token, resuming after lastID
// when it is not empty, and reads its ready event.
func (s *testServer) stream(token, lastID string) *streamtest.Client {
	s.t.Helper()
	h := http.Header{"Authorization": {"Bearer " + token}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	c := streamtest.Connect(s.t, s.URL+"/v1/stream", h)
	c.Expect("ready")
	return c
}

// streamQuery opens a stream with raw query parameters and headers, without
// reading anything.
func (s *testServer) streamQuery(q url.Values, h http.Header) *streamtest.Client {
	s.t.Helper()
	return streamtest.Connect(s.t, s.URL+"/v1/stream?"+q.Encode(), h)
}

func TestServeSmoke(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "general", false)
	sb := s.stream(bob, "")
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	// Presence events (bob coming online) may come in between: they are
	// ephemeral and not ordered with the room's log.
	sb.WaitFor("member:joined")
	id := s.post(alice, room, "hello")
	var msg struct {
		ID   int64
		Text string
		Room string
	}
	f := sb.WaitFor("message:created")
	if err := json.Unmarshal([]byte(f.Data), &msg); err != nil {
		t.Fatal(err)
	}
	if msg.ID != id || msg.Text != "hello" || msg.Room != room {
		t.Fatalf("message:created = %+v; want id %d text hello room %s", msg, id, room)
	}
}

// TestGeneratedSecretAnnounced checks that whichever command generates the
// secret says so on stderr, with the file's absolute path and how to make
// the server and the commands share it; and that one already there is
// used without a word.
func TestGeneratedSecretAnnounced(t *testing.T) {
	noenv := func(string) string { return "" }
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()
	tests := []struct {
		name string
		run  func(dataDir string, stderr io.Writer)
	}{
		{"token", func(dir string, stderr io.Writer) {
			if err := run(context.Background(), []string{"token", "alice", "--data-dir", dir}, noenv, io.Discard, stderr); err != nil {
				t.Fatalf("herald token: %v", err)
			}
		}},
		{"bench", func(dir string, stderr io.Writer) {
			// No server answers: the run fails after the secret is resolved.
			run(context.Background(), []string{"bench", "--url", closed, "--streams", "1", "--duration", "1s", "--data-dir", dir}, noenv, io.Discard, stderr)
		}},
		{"serve", func(dir string, stderr io.Writer) {
			// At log level warn, which hides the rest of the start-up.
			cfg, err := parseConfig([]string{"--addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, noenv, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan string, 1)
			done := make(chan error, 1)
			go func() { done <- serve(ctx, cfg, stderr, ready) }()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("serve: %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("serve: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A relative data dir, as ./data is: the message gives its
			// absolute path.
			t.Chdir(t.TempDir())
			abs, err := filepath.Abs("data")
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			tt.run("data", &stderr)
			if _, err := os.Stat(filepath.Join(abs, "jwt-secret")); err != nil {
				t.Fatalf("herald %s generated no secret: %v", tt.name, err)
			}
			for _, want := range []string{"generated a new JWT secret", filepath.Join(abs, "jwt-secret"), "--data-dir " + abs, "HERALD_JWT_SECRET"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("herald %s, generating the secret, wrote %q on stderr; want it to say %q", tt.name, stderr.String(), want)
				}
			}
			stderr.Reset()
			tt.run("data", &stderr)
			if strings.Contains(stderr.String(), "secret") {
				t.Errorf("herald %s, with the secret already there, wrote %q on stderr; want nothing about it", tt.name, stderr.String())
			}
		})
	}
}
