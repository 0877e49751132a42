// Package storetest starts the real databases that store tests run
// against: a PostgreSQL server on 127.0.0.1, on a random port, in a
// temporary folder, shared by the tests of one package, with a fresh
// database for each test.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// Postgres is a PostgreSQL server that a test process started. Stop ends
// it; a test process that dies takes it along (its parent-death signal).
type Postgres struct {
	dir, bin, data, log string
	cred                *syscall.Credential
	port                int
	cmd                 *exec.Cmd
	exited              chan struct{} // closed when cmd has been waited for
}

var (
	shared     *Postgres
	sharedErr  error
	sharedOnce sync.Once
)

// DatabaseURL returns the URL of a new, empty database on the package's
// shared server, starting the server on first use. The test fails, never
// skips, when PostgreSQL cannot be started.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = StartPostgres() })
	if sharedErr != nil {
		t.Fatalf("start postgres: %v", sharedErr)
	}
	return shared.NewDatabase(t)
}

// StopShared stops the shared server, if one was started. Call it from
// TestMain after the tests ran.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// binDir finds the directory of PostgreSQL's server binaries: on the PATH,
// or where Debian's packages put them.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", errors.New("initdb not found on the PATH nor in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

// StartPostgres initialises a cluster in a temporary folder and starts a
// server on a free loopback port. PostgreSQL refuses to run as root, so as
// root it runs as the postgres user.
func StartPostgres() (*Postgres, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herald-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, bin: bin, data: filepath.Join(dir, "data"), log: filepath.Join(dir, "server.log")}
	if p.cred, err = credential(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale", "C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	if p.port, err = FreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// Start starts the server on its port and data, after Stop or Kill.
func (p *Postgres) Start() error {
	bin, data, cred := p.bin, p.data, p.cred
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	if cred != nil {
		os.Chown(p.log, int(cred.Uid), int(cred.Gid))
	}
	// fsync off: the tests prove behaviour, not durability against power
	// loss, and 2 cores are shared by many servers.
	p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+p.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=32MB")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// SIGINT is PostgreSQL's fast shutdown: when the test process dies, so
	// does its server.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("pgx", p.url("postgres"))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(p.log)
			return fmt.Errorf("postgres exited: %s", log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			log, _ := os.ReadFile(p.log)
			return fmt.Errorf("postgres did not answer within 60s: %v: %s", err, log)
		}
	}
}

// credential returns who the server runs as (nil: this process's user),
// and gives dir to that user.
func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to: no postgres user to run it as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (p *Postgres) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// NewDatabase creates a database for one test and returns its URL; it is
// dropped when the test ends.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	return p.newDatabase(t, "")
}

func (p *Postgres) newDatabase(t testing.TB, options string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", p.url("postgres"))
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name + options); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", p.url("postgres"))
		if err != nil {
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return p.url(name)
}

// Port is the server's port on 127.0.0.1.
func (p *Postgres) Port() int { return p.port }

// Halt shuts the server down (fast shutdown: clients are disconnected),
// keeping its data for Start.
func (p *Postgres) Halt() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// CopyDatabase creates a database as a copy of the one at url, on the
// shared server, as a backup restored elsewhere would be; nobody may be
// connected to the original meanwhile. It is dropped when the test ends.
func CopyDatabase(t testing.TB, url string) string {
	t.Helper()
	name := url[strings.LastIndexByte(url, '/')+1:]
	name, _, _ = strings.Cut(name, "?")
	return shared.newDatabase(t, " TEMPLATE "+name)
}

// Stop shuts the server down and removes its folder.
func (p *Postgres) Stop() {
	p.Halt()
	os.RemoveAll(p.dir)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
