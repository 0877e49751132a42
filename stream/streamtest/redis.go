package streamtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server that a test started on 127.0.0.1, on a random
// port, in a temporary folder. A test process that dies takes it along.
type Redis struct {
	Port   int
	dir    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

var (
	sharedRedis     *Redis
	sharedRedisErr  error
	sharedRedisOnce sync.Once
)

// RedisURL returns the URL of the package's shared redis-server, started on
// first use, and a key prefix of the test's own. The test fails, never
// skips, when redis-server cannot be started.
func RedisURL(t testing.TB) (url, prefix string) {
	t.Helper()
	sharedRedisOnce.Do(func() { sharedRedis, sharedRedisErr = newRedis(false) })
	if sharedRedisErr != nil {
		t.Fatalf("start redis: %v", sharedRedisErr)
	}
	var b [6]byte
	rand.Read(b[:])
	return sharedRedis.URL(), "t" + hex.EncodeToString(b[:]) + ":"
}

// StopSharedRedis stops the shared server, if one was started. Call it
// from TestMain after the tests ran.
func StopSharedRedis() {
	if sharedRedis != nil {
		sharedRedis.Stop()
	}
}

// StartRedis starts a redis-server of the test's own, which the test may
// stop, restart or kill; it is stopped when the test ends. With persist it
// keeps its data across restarts (an append-only file), as a production
// server would; without, a restart comes back empty.
func StartRedis(t testing.TB, persist bool) *Redis {
	t.Helper()
	r, err := newRedis(persist)
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

func newRedis(persist bool) (*Redis, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server not found on the PATH (apt-get install redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "herald-redis-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &Redis{Port: port, dir: dir, args: []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"),
	}}
	if persist {
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if err := r.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// Start starts the server again after Stop or Kill, on the same port.
func (r *Redis) Start() error {
	r.cmd = exec.Command("redis-server", r.args...)
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.exited = make(chan struct{})
	cmd, exited := r.cmd, r.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.Port), time.Second)
		if err == nil {
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return nil
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %s", log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.cmd.Process.Kill()
			return fmt.Errorf("redis-server did not answer within 30s")
		}
	}
}

// Kill ends the server at once, as a crash would.
func (r *Redis) Kill() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// Stop ends the server and removes its folder.
func (r *Redis) Stop() {
	r.Kill()
	os.RemoveAll(r.dir)
}
