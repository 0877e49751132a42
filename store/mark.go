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
// what matters; after a power loss it may be behind, never ahead.
type markFile struct {
	f    *os.File
	path string
	buf  []byte
}

// markFormat is fixed in width, so that each write replaces the whole.
const markFormat = "%-16s %020d\n"

func openMark(path string) (*markFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &markFile{f: f, path: path}, nil
}

// read returns the epoch and position recorded; ok is false for a new or
// unreadable file.
func (m *markFile) read() (epoch string, pos int64, ok bool) {
	b := make([]byte, 64)
	n, _ := m.f.ReadAt(b, 0)
	fields := strings.Fields(string(b[:n]))
	if len(fields) != 2 {
		return "", 0, false
	}
	pos, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return fields[0], pos, true
}

func (m *markFile) record(epoch string, pos int64) error {
	m.buf = fmt.Appendf(m.buf[:0], markFormat, epoch, pos)
	_, err := m.f.WriteAt(m.buf, 0)
	return err
}

func (m *markFile) close() error { return m.f.Close() }

// checkMark compares the log with the position the mark file says was
// handed out, and gives the log a new epoch when it is behind: the
// database was restored from a backup, or replaced by an older copy.
func (s *Store) checkMark(ctx context.Context) error {
	head, err := s.Head(ctx)
	if err != nil {
		return err
	}
	if epoch, pos, ok := s.mark.read(); ok && epoch == s.epoch && head < pos {
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
		s.opts.Logger.Warn("the database's log is behind the position it had handed out (restored from a backup?): the log gets a new epoch, and clients resync",
			"database_head", head, "handed_out", pos, "file", s.mark.path, "old_epoch", old, "epoch", s.epoch)
	}
	if err := s.mark.record(s.epoch, head); err != nil {
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
