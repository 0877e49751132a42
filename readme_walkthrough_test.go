package main

// The README's walk-throughs, with curl and of the server API, and its
// Errors examples, run as written against a real herald serve with the
// defaults a user has: each sh block in one bash session, in order, and
// each output block compared with what the commands print or with what the
// stream shows. Ids, times and the epoch differ from run to run and are
// compared as such.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldchat/herald/store/storetest"
)

// readmeBlock is a fenced block of the README and the prose before it.
type readmeBlock struct {
	lang, text, prose string
}

// readmeBlocks returns the fenced blocks of the README between the lines
// from and to (exclusive).
func readmeBlocks(t *testing.T, readme, from, to string) []readmeBlock {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n"+from+"\n")
	if !ok {
		t.Fatalf("README.md has no %q", from)
	}
	rest, _, ok = strings.Cut(rest, "\n"+to+"\n")
	if !ok {
		t.Fatalf("README.md has no %q after %q", to, from)
	}
	var blocks []readmeBlock
	for {
		prose, after, ok := strings.Cut(rest, "```")
		if !ok {
			return blocks
		}
		lang, after, _ := strings.Cut(after, "\n")
		text, after, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatalf("README.md: an unclosed block after %q", from)
		}
		blocks = append(blocks, readmeBlock{lang: lang, text: text, prose: prose})
		rest = after
	}
}

var (
	readmeTime  = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	readmeRoom  = regexp.MustCompile(`\br_[a-z0-9]+\b`)
	readmeID    = regexp.MustCompile(`\b[a-z0-9]{8}-(\d+)\b`)
	readmeEpoch = regexp.MustCompile(`id: ([a-z0-9]{8})-\d+`)
)

// normalize makes what changes from run to run comparable: times, room
// ids and the epoch of event ids.
func normalize(s string) string {
	s = readmeTime.ReplaceAllString(s, "TIME")
	s = readmeRoom.ReplaceAllString(s, "ROOM")
	s = readmeID.ReplaceAllString(s, "EPOCH-$1")
	return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
}

// frames splits an event stream into its frames, without heartbeats.
func frames(s string) []string {
	var out []string
	for _, f := range strings.Split(normalize(s), "\n\n") {
		if f = strings.TrimSpace(f); f != "" && f != ": ping" {
			out = append(out, f)
		}
	}
	return out
}

// shell is a bash session that runs blocks one after the other.
type shell struct {
	t      *testing.T
	stdin  io.WriteCloser
	lines  chan string
	stderr *strings.Builder
	n      int
}

func startShell(t *testing.T, dir string, env []string) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir = dir
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sh := &shell{t: t, stdin: stdin, lines: make(chan string, 1024), stderr: &strings.Builder{}}
	cmd.Stderr = sh.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			sh.lines <- sc.Text()
		}
		close(sh.lines)
	}()
	t.Cleanup(func() {
		io.WriteString(stdin, "kill $(jobs -p) 2>/dev/null; exit\n")
		stdin.Close()
		cmd.Wait()
	})
	return sh
}

// run runs a block and returns what it printed; it fails the test when
// the block's last command fails.
func (sh *shell) run(block string) string {
	sh.t.Helper()
	sh.n++
	marker := fmt.Sprintf("__block_%d_done__", sh.n)
	io.WriteString(sh.stdin, block+"\necho; echo "+marker+" $?\n")
	var out []string
	timeout := time.After(browserTimeout)
	for {
		select {
		case l, ok := <-sh.lines:
			if !ok {
				sh.t.Fatalf("bash ended running:\n%s\nstderr: %s", block, sh.stderr)
			}
			if rest, found := strings.CutPrefix(l, marker+" "); found {
				if rest != "0" {
					sh.t.Fatalf("block exited %s:\n%s\noutput: %s\nstderr: %s", rest, block, strings.Join(out, "\n"), sh.stderr)
				}
				return strings.TrimSuffix(strings.Join(out, "\n"), "\n")
			}
			out = append(out, l)
		case <-timeout:
			sh.t.Fatalf("block did not finish within %v:\n%s", browserTimeout, block)
		}
	}
}

func TestREADMEWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's walk-throughs need %s (make test installs it: .ci/deps): %v", tool, err)
		}
	}
	readme := string(mustRead(t, "README.md"))
	t.Run("curl", func(t *testing.T) {
		var blocks []readmeBlock
		blocks = append(blocks, readmeBlocks(t, readme, "## A walk-through with curl", "### From a browser")...)
		blocks = append(blocks, readmeBlocks(t, readme, "### Errors", "## The server API")...)
		walkthrough(t, blocks)
	})
	t.Run("server API", func(t *testing.T) {
		walkthrough(t, readmeBlocks(t, readme, "## The server API", "## Configuration"))
	})
}

// walkthrough runs blocks in a bash session against a herald serve of its
// own, with the defaults a user has. The server starts before the first
// block, or, when a block starts it with make run, where that block does,
// with the HERALD_ variables that block gives it.
func walkthrough(t *testing.T, blocks []readmeBlock) {
	bin := buildHerald(t)
	dir := t.TempDir()
	port, err := storetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	serve := func(env map[string]string) {
		// The defaults a user has, the secret generated into ./data.
		for k, v := range map[string]string{
			"HERALD_ADDR": addr, "HERALD_DATA_DIR": filepath.Join(dir, "data"), "HERALD_JWT_SECRET": "",
			"HERALD_RETRY": "2s", "HERALD_PRESENCE_BATCH": "200ms", "HERALD_RATE_LIMITS": "on",
		} {
			env[k] = v
		}
		startProc(t, env)
	}
	serving := false
	for _, b := range blocks {
		if b.lang == "sh" && strings.Contains(b.text, "make run") {
			serving = true // by that block
		}
	}
	if !serving {
		serve(map[string]string{})
	}

	// The README's example epoch, which its commands repeat.
	var exampleEpoch string
	for _, b := range blocks {
		if m := readmeEpoch.FindStringSubmatch(b.text); m != nil {
			exampleEpoch = m[1]
			break
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C"}
	sh := startShell(t, dir, env)
	epoch := ""
	streams := 0
	stream := ""  // the file the current stream writes to
	streamed := 0 // frames of it matched so far
	last := ""    // what the last block printed
	lastCmd := "" // the last block
	for _, b := range blocks {
		switch b.lang {
		case "sh":
			cmd := strings.ReplaceAll(b.text, "go run . token", bin+" token")
			cmd = strings.ReplaceAll(cmd, "localhost:8080", addr)
			if epoch != "" && exampleEpoch != "" {
				cmd = strings.ReplaceAll(cmd, exampleEpoch, epoch)
			}
			var lines []string
			starts := false
			for _, l := range strings.Split(cmd, "\n") {
				if strings.HasPrefix(l, "curl -N ") {
					// A stream, in its own terminal: it runs on, into a
					// file. A new one replaces the last, as Ctrl-C does.
					if stream != "" {
						lines = append(lines, "kill %1 2>/dev/null; wait 2>/dev/null")
					}
					streams++
					stream = filepath.Join(dir, fmt.Sprintf("stream%d.txt", streams))
					streamed = 0
					l = strings.Replace(l, "curl -N ", "curl -sN ", 1) + " > " + stream + " 2>/dev/null &"
				}
				if strings.HasSuffix(l, "make run") {
					// The server, in its own terminal: the test starts
					// it, with the variables the line sets.
					starts = true
					l = strings.TrimSuffix(l, "make run") + "env | grep ^HERALD_"
				}
				lines = append(lines, l)
			}
			lastCmd = b.text
			last = sh.run(strings.Join(lines, "\n"))
			if strings.Contains(b.text, "curl -N ") {
				// The reader has the stream open before the next command,
				// as in a terminal: its ready comes first.
				waitStreamOpen(t, stream)
			}
			if starts {
				vars := map[string]string{}
				for _, l := range strings.Split(last, "\n") {
					if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "HERALD_") {
						vars[k] = v
					}
				}
				serve(vars)
			}
		case "":
			if strings.Contains(lastCmd, "curl -N ") || strings.Contains(strings.ToLower(lastProse(b.prose)), "stream") {
				streamed = waitFrames(t, stream, streamed, b.text)
				if epoch == "" {
					if m := readmeEpoch.FindStringSubmatch(string(mustRead(t, stream))); m != nil {
						epoch = m[1]
					}
				}
				continue
			}
			if got, want := normalize(last), normalize(b.text); got != want {
				t.Errorf("README block\n%s\nprinted\n%s\nwant\n%s", lastCmd, got, want)
			}
		}
	}
	if streams == 0 || epoch == "" {
		t.Fatalf("the walk-through opened %d streams, epoch %q; want a stream read", streams, epoch)
	}
}

// lastProse is the last paragraph of prose.
func lastProse(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n\n"); i >= 0 {
		return s[i+2:]
	}
	return s
}

// waitFrames waits until the stream in file has shown the frames of want,
// in order, after the first from frames, and returns how many it has
// shown up to the last of them.
// waitStreamOpen waits until the stream being written to file has opened: its
// ready event is there.
func waitStreamOpen(t *testing.T, file string) {
	t.Helper()
	deadline := time.Now().Add(browserTimeout)
	for b, _ := os.ReadFile(file); !strings.Contains(string(b), "event: ready\n"); b, _ = os.ReadFile(file) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream into %s has not opened: it holds %q", file, b)
		}
		time.Sleep(20 * time.Millisecond) // polling a file, not guessing a delay
	}
}

// waitFrames waits until the stream in file shows the frames of want, in
// a row, after its first from frames, and returns where they end. A
// presence:changed frame that want does not show may come between them:
// presence is gathered for --presence-batch before it is sent, so where it
// lands among the log's events depends on timing, not on the README.
func waitFrames(t *testing.T, file string, from int, want string) int {
	t.Helper()
	expected := frames(want)
	if len(expected) == 0 {
		return from
	}
	presence := func(f string) bool { return strings.Contains(f, "event: presence:changed\n") }
	deadline := time.Now().Add(browserTimeout)
	for {
		b, _ := os.ReadFile(file)
		got := frames(string(b))
	search:
		for i := from; i < len(got); i++ {
			k := i
			for _, f := range expected {
				for k < len(got) && got[k] != f && presence(got[k]) && !presence(f) {
					k++
				}
				if k == len(got) || got[k] != f {
					continue search
				}
				k++
			}
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream showed\n%s\nwant, after its first %d frames,\n%s", strings.Join(got, "\n\n"), from, strings.Join(expected, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling a file, not guessing a delay
	}
}
