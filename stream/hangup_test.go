package stream

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (server *net.TCPConn, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// hungUp reports whether c was told its client hung up within d.
func hungUp(c *conn, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		n := c.notes
		c.mu.Unlock()
		if n&noteHungUp != 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func newTestHangups(t *testing.T) *hangups {
	t.Helper()
	w, err := newHangups()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	return w
}

// A client that closes, or resets, is reported; bytes it sends are not a
// hang-up. Each case uses real TCP connections on loopback. Absence is
// shown by a marker, never by a wait: the watcher reports in the order
// things happened, so once a later hang-up is reported, a report of
// something that came before it would have been made.
func TestHangupsReportLeavingClients(t *testing.T) {
	w := newTestHangups(t)

	server, client := tcpPair(t)
	c := newConn("closes", 8)
	defer w.watch(server, c)()
	if _, err := client.Write([]byte("stray bytes")); err != nil {
		t.Fatal(err)
	}
	peek(t, server) // the bytes have arrived, and are still unread

	server2, client2 := tcpPair(t)
	c2 := newConn("resets", 8)
	defer w.watch(server2, c2)()
	client2.SetLinger(0)
	client2.Close()
	if !hungUp(c2, 10*time.Second) {
		t.Fatal("a client that reset was not reported")
	}
	if hungUp(c, 0) {
		t.Fatal("bytes from the client were taken for a hang-up")
	}
	client.Close()
	if !hungUp(c, 10*time.Second) {
		t.Fatal("a client that closed was not reported")
	}

	// Gone before the watch began: reported all the same.
	server3, client3 := tcpPair(t)
	client3.Close()
	if _, err := server3.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a closed client = %v; want EOF", err)
	}
	c3 := newConn("gone", 8)
	defer w.watch(server3, c3)()
	if !hungUp(c3, 10*time.Second) {
		t.Fatal("a client gone before the watch was not reported")
	}
}

// After its watch ends a connection is not reported; the watcher goes on
// serving the others.
func TestHangupsStop(t *testing.T) {
	w := newTestHangups(t)
	server, client := tcpPair(t)
	old := newConn("old", 8)
	w.watch(server, old)() // the watch ends before the client leaves
	client.Close()
	if _, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a closed client = %v; want EOF", err)
	}

	server2, client2 := tcpPair(t)
	c := newConn("new", 8)
	defer w.watch(server2, c)()
	client2.Close()
	if !hungUp(c, 10*time.Second) {
		t.Fatal("a later connection's hang-up was not reported")
	}
	if hungUp(old, 0) {
		t.Fatal("a connection whose watch ended was reported")
	}
}

// Connections without a descriptor are watched by a reading goroutine,
// which close waits for.
func TestHangupsFallbackReader(t *testing.T) {
	w := newTestHangups(t)
	server, client := net.Pipe()
	c := newConn("pipe", 8)
	stop := w.watch(server, c)
	// A pipe is synchronous: the second write returns once the reader has
	// taken the first and is reading again, so a report of the bytes, or of
	// the watch starting, would have been made.
	client.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for _, b := range []string{"stray", "bytes"} {
		if _, err := client.Write([]byte(b)); err != nil {
			t.Fatalf("write %q: %v; want the watcher to read it", b, err)
		}
	}
	if hungUp(c, 0) {
		t.Fatal("reported before the client left")
	}
	client.Close()
	if !hungUp(c, 10*time.Second) {
		t.Fatal("a pipe's hang-up was not reported")
	}
	stop()
	server.Close()
	done := make(chan struct{})
	go func() { w.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return")
	}
}
