package store

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/heraldchat/herald/internal/event"
)

// markSuffix names the file beside an embedded database that holds the
// highest log position handed out (markFile).
const markSuffix = ".head"

// markFile holds the log's epoch and the highest position it handed out,
// in a file beside the database. A database restored from a backup comes
// back with a shorter log under the same epoch: positions that clients
// hold would name other events, and a client resuming from one would
// silently skip what was written since. This file is not the database, so
// restoring the database alone leaves it ahead, and Open then gives the
// log a new epoch: such clients get resync.
//
// It is written by the writer goroutine, its only user once Open returns,
// after each commit and before the commit's events are published, in
// place and without fsync: it survives a crash of the process, which is
// what matters for a position; after a power loss it may be behind.
//
// A power loss can also take back commits whose events streams already
// heard of: with NORMAL, and with FULL, whose writer publishes a commit's
// events before its fsync. So the file also says whether the server was
// running, and on which boot of the machine (fsynced when the store opens
// and when it closes): a server that was running when the machine went
// down left positions behind that the log may have lost, and Open gives
// the log a new epoch. A crash of the process alone loses nothing that
// was written, so it keeps the epoch.
type markFile struct {
	f    *os.File
	path string
	buf  []byte
	mark // as last recorded
}

type mark struct {
	epoch   string
	pos     int64
	boot    string // the machine's boot id, "" where unknown
	running bool   // the store was open: not stopped cleanly
}

// markFormat is fixed in width, so that each write replaces the whole:
// epoch, position, boot id ("-" where unknown), running or stopped.
const markFormat = "%-16s %020d %-36s %-7s\n"

func openMark(path string) (*markFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &markFile{f: f, path: path}, nil
}

// read returns what was recorded; ok is false for a new or unreadable
// file. A file of an older server (epoch and position only) reads as
// stopped.
func (m *markFile) read() (rec mark, ok bool) {
	b := make([]byte, 128)
	n, _ := m.f.ReadAt(b, 0)
	fields := strings.Fields(string(b[:n]))
	if len(fields) != 2 && len(fields) != 4 {
		return mark{}, false
	}
	pos, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return mark{}, false
	}
	rec = mark{epoch: fields[0], pos: pos}
	if len(fields) == 4 {
		if fields[2] != "-" {
			rec.boot = fields[2]
		}
		rec.running = fields[3] == "running"
	}
	return rec, true
}

// record writes the newest position, without fsync.
func (m *markFile) record(epoch string, pos int64) error {
	m.epoch, m.pos = epoch, pos
	boot, state := m.boot, "stopped"
	if boot == "" {
		boot = "-"
	}
	if m.running {
		state = "running"
	}
	m.buf = fmt.Appendf(m.buf[:0], markFormat, epoch, pos, boot, state)
	_, err := m.f.WriteAt(m.buf, 0)
	return err
}

// setRunning records whether the store is open, on this boot, and makes
// it durable.
func (m *markFile) setRunning(running bool, epoch string, pos int64) error {
	m.running, m.boot = running, bootID()
	if err := m.record(epoch, pos); err != nil {
		return err
	}
	return m.f.Sync()
}

func (m *markFile) close() error { return m.f.Close() }

// bootID names this boot of the machine: Linux gives each boot a random
// id. Elsewhere it is "", and any start after a server that did not stop
// cleanly is taken for one after a power loss.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// checkMark compares the log with the position the mark file says was
// handed out, and gives the log a new epoch when it is behind: the
// database was restored from a backup, or replaced by an older copy.
func (s *Store) checkMark(ctx context.Context) error {
	head, err := s.Head(ctx)
	if err != nil {
		return err
	}
	prev, ok := s.mark.read()
	var why string
	switch boot := bootID(); {
	case !ok:
	case prev.running && (prev.boot == "" || boot == "" || prev.boot != boot):
		// Whatever epoch the log has now: a power loss may also have
		// taken back the commit that gave it a new one.
		why = "the machine restarted while the server was running: the last commits streams heard of may be lost"
	case prev.epoch == s.epoch && head < prev.pos:
		why = "the database's log is behind the position it had handed out (restored from a backup?)"
	}
	if why != "" {
		old := s.epoch
		err := s.write(ctx, func(t *Tx) error {
			_, err := t.exec(`UPDATE meta SET value = ? WHERE key = 'epoch' AND value = ?`, newEpoch(), old)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: rotate epoch: %w", err)
		}
		if err := s.loadMeta(ctx); err != nil {
			return err
		}
		s.opts.Logger.Warn(why+": the log gets a new epoch, and clients resync",
			"database_head", head, "handed_out", prev.pos, "file", s.mark.path, "old_epoch", old, "epoch", s.epoch)
	}
	if err := s.mark.setRunning(true, s.epoch, head); err != nil {
		return fmt.Errorf("store: write %s: %w", s.mark.path, err)
	}
	return nil
}

// committed records the newest position of a commit in the mark file, then
// publishes its events: no client sees a position the file does not cover.
func (s *Store) committed(evs []event.Event) {
	if err := s.mark.record(s.epoch, evs[len(evs)-1].Seq); err != nil {
		s.opts.Logger.Warn("could not record the log's head", "file", s.mark.path, "err", err)
	}
	s.live.publish(evs)
}
