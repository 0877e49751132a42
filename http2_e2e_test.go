package main

// HTTP/2: over TLS (--tls-cert, --tls-key) and in plain text by prior
// knowledge (h2c), beside HTTP/1.1 on the same listener. A stream behaves
// the same on each: retry: and ready first, heartbeats, events, the cap's
// refusal and the shutdown's closing frame.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
)

// testCert writes a self-signed certificate for 127.0.0.1 and localhost,
// and its key, to dir; pool trusts it.
func testCert(t testing.TB, dir, serial string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := new(big.Int).SetString(serial, 10)
	tmpl := &x509.Certificate{
		SerialNumber:          n,
		Subject:               pkix.Name{CommonName: "herald test " + serial},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// protoClient is an HTTP client that speaks only the protocol named:
// HTTP/1.1 or h2c in plain text, HTTP/1.1 or h2 over TLS trusting pool.
func protoClient(t testing.TB, proto string, pool *x509.CertPool) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	switch proto {
	case "HTTP/1.1", "HTTP/1.1 over TLS":
		tr.Protocols.SetHTTP1(true)
	case "h2c":
		tr.Protocols.SetUnencryptedHTTP2(true)
	case "h2":
		tr.Protocols.SetHTTP2(true)
	default:
		t.Fatalf("protoClient(%q): no such protocol", proto)
	}
	if pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 0}
}

// get sends a GET with a token through client and returns the status and
// the protocol it was answered in.
func get(t *testing.T, client *http.Client, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Proto
}

func TestHTTP2Stream(t *testing.T) {
	certFile, keyFile, pool := testCert(t, t.TempDir(), "1")
	tests := []struct {
		proto string
		tls   bool
		want  string // resp.Proto
	}{
		{"HTTP/1.1", false, "HTTP/1.1"},
		{"h2c", false, "HTTP/2.0"},
		{"h2", true, "HTTP/2.0"},
		{"HTTP/1.1 over TLS", true, "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			env := map[string]string{"HERALD_HEARTBEAT": "20ms", "HERALD_MAX_STREAMS_PER_USER": "1"}
			if tt.tls {
				env["HERALD_TLS_CERT"], env["HERALD_TLS_KEY"] = certFile, keyFile
			}
			s := startServer(t, env)
			url := s.URL
			client := protoClient(t, tt.proto, pool)
			alice, bob := s.token("alice"), s.token("bob")
			room := s.createRoom(bob, "h2", false)
			s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", alice, nil, nil)

			c := streamtest.ConnectWith(t, client, url+"/v1/stream", http.Header{"Authorization": {"Bearer " + alice}})
			if c.Resp.Proto != tt.want {
				t.Fatalf("stream answered in %s; want %s", c.Resp.Proto, tt.want)
			}
			// On HTTP/1.1 the hub takes the connection over; the body ends
			// when the connection closes.
			if hijacked := c.Resp.ProtoMajor == 1; c.Resp.Close != hijacked {
				t.Errorf("stream over %s: Close = %v; want %v", tt.proto, c.Resp.Close, hijacked)
			}
			first, ok := c.Frame()
			if !ok || first.Retry != 50 {
				t.Fatalf("first frame = %+v; want retry: 50", first)
			}
			c.Expect("ready")

			// A heartbeat comes on an idle stream.
			for f, ok := c.Frame(); f.Comment != "ping"; f, ok = c.Frame() {
				if !ok {
					t.Fatal("stream ended or timed out before a heartbeat")
				}
			}
			// REST goes through the same client (on HTTP/2, the same
			// connection) while the stream is open.
			if status, proto := get(t, client, url+"/v1/rooms", alice); status != http.StatusOK || proto != tt.want {
				t.Errorf("GET /v1/rooms beside the stream = %d over %s; want 200 over %s", status, proto, tt.want)
			}
			id := s.post(bob, room, "over "+tt.proto)
			var msg struct {
				ID   int64
				Text string
			}
			c.ExpectData("message:created", &msg)
			if msg.ID != id || msg.Text != "over "+tt.proto {
				t.Errorf("message:created = %+v; want id %d", msg, id)
			}

			// The cap refuses a second stream with 200 and a closing frame.
			refused := streamtest.ConnectWith(t, client, url+"/v1/stream", http.Header{"Authorization": {"Bearer " + alice}})
			if refused.Resp.StatusCode != http.StatusOK {
				t.Fatalf("stream over the cap = %d; want 200", refused.Resp.StatusCode)
			}
			if !hasComment(refused.Ended(), "closing too_many_streams") {
				t.Errorf("stream over the cap did not end with : closing too_many_streams")
			}

			// Shutdown ends the stream with a closing frame.
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				s.stop()
			}()
			if !hasComment(c.Ended(), "closing shutdown") {
				t.Errorf("stream at shutdown did not end with : closing shutdown")
			}
			<-stopped
		})
	}
}

func hasComment(frames []stream.Frame, comment string) bool {
	for _, f := range frames {
		if f.Comment == comment {
			return true
		}
	}
	return false
}

// TestCurlHTTP2PriorKnowledge: curl --http2-prior-knowledge -N gets a
// stream from the plain listener, and the events posted to it.
func TestCurlHTTP2PriorKnowledge(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (Debian: apt-get install curl): %v", err)
	}
	s := startServer(t, nil)
	alice := s.token("alice")
	room := s.createRoom(alice, "curl", false)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, curl, "-sS", "-i", "-N", "--http2-prior-knowledge", "-H", "Authorization: Bearer "+alice, s.URL+"/v1/stream")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want func(string) bool, what string) string {
		t.Helper()
		timeout := time.After(streamtest.Timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("curl's output ended before %s", what)
				}
				if want(l) {
					return l
				}
			case <-timeout:
				t.Fatalf("curl printed no %s within %v", what, streamtest.Timeout)
			}
		}
	}
	status := next(func(l string) bool { return strings.HasPrefix(l, "HTTP/") }, "status line")
	if strings.TrimSpace(status) != "HTTP/2 200" {
		t.Fatalf("curl --http2-prior-knowledge status = %q; want HTTP/2 200", status)
	}
	next(func(l string) bool { return l == "event: ready" }, "ready event")
	s.post(alice, room, "hello h2c")
	next(func(l string) bool { return l == "event: message:created" }, "message:created")
	if l := next(func(l string) bool { return strings.HasPrefix(l, "data: ") }, "data line"); !strings.Contains(l, `"text":"hello h2c"`) {
		t.Errorf("curl got %s; want the message posted", l)
	}
}

// TestCertReload: a certificate renewed in place is served from the next
// handshake after the files change; a pair that does not load keeps the
// previous one.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testCert(t, dir, "1")
	var logs strings.Builder
	c, err := newCertFiles(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.interval = 0
	serial := func() string {
		t.Helper()
		cert, err := c.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	if got := serial(); got != "1" {
		t.Fatalf("certificate serial = %s; want 1", got)
	}
	// A renewal writes both files: their times change.
	testCert(t, dir, "2")
	later := time.Now().Add(time.Minute)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if got := serial(); got != "2" {
		t.Fatalf("after renewal, certificate serial = %s; want 2", got)
	}
	// Half a renewal: a new certificate beside the old key.
	other := t.TempDir()
	newCert, _, _ := testCert(t, other, "3")
	if err := os.WriteFile(certFile, mustRead(t, newCert), 0o600); err != nil {
		t.Fatal(err)
	}
	evenLater := later.Add(time.Minute)
	os.Chtimes(certFile, evenLater, evenLater)
	if got := serial(); got != "2" {
		t.Fatalf("with a certificate that does not match its key, serial = %s; want the previous, 2", got)
	}
	if !strings.Contains(logs.String(), "not reloaded") {
		t.Errorf("logs = %q; want a warning that the certificate was not reloaded", logs.String())
	}
}

// TestStreamCookieOverTLS: served over TLS, the stream cookie that a
// fresh ticket sets is Secure; over plain HTTP it cannot be.
func TestStreamCookieOverTLS(t *testing.T) {
	certFile, keyFile, _ := testCert(t, t.TempDir(), "1")
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls %v", tls), func(t *testing.T) {
			env := map[string]string{}
			if tls {
				env["HERALD_TLS_CERT"], env["HERALD_TLS_KEY"] = certFile, keyFile
			}
			s := startServer(t, env)
			var ticket struct{ Ticket string }
			s.must(http.StatusCreated, "POST", "/v1/stream/tickets", s.token("alice"), nil, &ticket)
			c := streamtest.ConnectWith(t, s.httpClient(), s.URL+"/v1/stream?ticket="+ticket.Ticket, nil)
			c.Expect("ready")
			cookies := c.Resp.Cookies()
			if len(cookies) != 1 || cookies[0].Name != "herald_stream" || cookies[0].Secure != tls || !cookies[0].HttpOnly {
				t.Errorf("stream cookies over TLS %v = %+v; want one herald_stream, HttpOnly, Secure %v", tls, cookies, tls)
			}
		})
	}
}

// Over HTTP/2 a stream's write deadline is a timer that resets the stream
// when it fires, whether a write is under way or not: an idle stream, its
// heartbeat due after the write timeout, must outlive it and keep
// delivering.
func TestHTTP2IdleStreamOutlivesWriteTimeout(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_HEARTBEAT": "1s", "HERALD_WRITE_TIMEOUT": "250ms"})
	client := protoClient(t, "h2c", nil)
	alice := s.token("alice")
	room := s.createRoom(alice, "idle", false)
	c := streamtest.ConnectWith(t, client, s.URL+"/v1/stream", http.Header{"Authorization": {"Bearer " + alice}})
	if c.Resp.Proto != "HTTP/2.0" {
		t.Fatalf("stream answered in %s; want HTTP/2.0", c.Resp.Proto)
	}
	c.Expect("ready")
	// Idle for a heartbeat interval, several write timeouts long.
	for f, ok := c.Frame(); f.Comment != "ping"; f, ok = c.Frame() {
		if !ok {
			t.Fatal("an idle HTTP/2 stream ended before its heartbeat; want it open")
		}
	}
	id := s.post(alice, room, "still here")
	var msg struct{ ID int64 }
	c.ExpectData("message:created", &msg)
	if msg.ID != id {
		t.Errorf("message:created id = %d; want %d", msg.ID, id)
	}
	if n := sample(t, s, "herald_streams_dropped_total"); n != 0 {
		t.Errorf("herald_streams_dropped_total = %v; want 0", n)
	}
}
