package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/store/storetest"
)

// TestDataDirLocked: a second server on the data dir of one that runs is
// refused at once, with a message that says why and what to do, and
// starts once the first one is gone, also when the first one was killed.
func TestDataDirLocked(t *testing.T) {
	dir := t.TempDir()
	first := startProc(t, map[string]string{"HERALD_DATA_DIR": dir})

	second := func() (string, error) {
		port, err := storetest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		// A server that is not refused would run until the deadline.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, buildHerald(t), "serve")
		cmd.Env = append(os.Environ(), "HERALD_ADDR=127.0.0.1:"+strconv.Itoa(port), "HERALD_DATA_DIR="+dir,
			"HERALD_JWT_SECRET="+testSecret, "HERALD_LOG_LEVEL=warn")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err = cmd.Run()
		return stderr.String(), err
	}
	out, err := second()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("a second herald serve on the same data dir = %v, stderr %q; want exit status 1", err, out)
	}
	db := filepath.Join(dir, "herald.db")
	for _, want := range []string{"another herald serves the database " + db, "process " + strconv.Itoa(first.cmd.Process.Pid), "--data-dir (HERALD_DATA_DIR)"} {
		if !strings.Contains(out, want) {
			t.Errorf("second server's stderr = %q; want it to say %q", out, want)
		}
	}

	// A killed server leaves no lock behind: the kernel releases it.
	first.kill()
	startProc(t, map[string]string{"HERALD_DATA_DIR": dir})
}

// TestDataDirLockedInProcess: the lock holds between two servers of one
// process too (each opens the lock file anew), and is released when serve
// returns.
func TestDataDirLockedInProcess(t *testing.T) {
	s := startServer(t, nil)
	env := envOf(s.cfg)
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "another herald serves the database") {
		t.Fatalf("serve on a data dir in use = %v; want it refused", err)
	}
	s.stop()
	s.restart()
}

// TestClusterSharedDataDir: in a cluster the data dir holds nothing
// (the database is PostgreSQL's, the secret is given), so instances that
// share one all start.
func TestClusterSharedDataDir(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, 1, false, false, map[string]string{"HERALD_DATA_DIR": dir})
	c.add("n1")
	if _, err := os.Stat(filepath.Join(dir, "herald.db.lock")); !os.IsNotExist(err) {
		t.Errorf("a cluster instance made a lock in its data dir (stat: %v); want the data dir untouched", err)
	}
}
