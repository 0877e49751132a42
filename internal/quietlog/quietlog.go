// Package quietlog logs the failures of a dependency that is down at most
// once per interval: while Redis is unreachable every call to it fails,
// and a line per call would bury the rest of the log.
package quietlog

import (
	"log/slog"
	"time"

	"golang.org/x/time/rate"
)

// Interval is the least time between two lines of one Logger.
const Interval = 10 * time.Second

// Logger writes its first warning at once and then at most one per
// Interval, dropping the rest. Safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every rate.Sometimes
}

// New returns a Logger that writes to log (nil: nowhere).
func New(log *slog.Logger) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logger{log: log, every: rate.Sometimes{First: 1, Interval: Interval}}
}

// Warn logs msg at warning level unless a warning was logged less than
// Interval ago.
func (q *Logger) Warn(msg string, args ...any) {
	q.every.Do(func() { q.log.Warn(msg, args...) })
}
