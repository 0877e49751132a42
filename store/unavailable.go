package store

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// Kinds of ErrUnavailable that an operator acts on differently: each is
// also ErrUnavailable.
var (
	// ErrDiskFull: the database's disk (or quota) is full. Writes fail
	// until space is freed; reads still work.
	ErrDiskFull = fmt.Errorf("%w: disk full", ErrUnavailable)
	// ErrLocked: another process holds the database's write lock (an
	// embedded database opened by a tool, or by a second server started
	// on a copy of its files).
	ErrLocked = fmt.Errorf("%w: locked by another process", ErrUnavailable)
)

// unavailable marks errors that say the database cannot serve now, as
// opposed to a statement it refused: those become ErrUnavailable (or one
// of its kinds), which a client may retry. It is the one place that
// reads the drivers' error codes.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch {
		case se.Code == sqlite3.ErrFull,
			se.SystemErrno == syscall.ENOSPC, se.SystemErrno == syscall.EDQUOT:
			return errors.Join(ErrDiskFull, err)
		case se.Code == sqlite3.ErrBusy, se.Code == sqlite3.ErrLocked:
			return errors.Join(ErrLocked, err)
		case se.Code == sqlite3.ErrIoErr, se.Code == sqlite3.ErrCantOpen, se.Code == sqlite3.ErrReadonly:
			// The file cannot be read or written: a disk that failed or
			// was remounted read-only, a file removed or made unreadable.
			return errors.Join(ErrUnavailable, err)
		}
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "53100":
			return errors.Join(ErrDiskFull, err)
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"),
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03":
			// Connection exceptions; insufficient resources (out of
			// memory, too many connections); a server shutting down or
			// starting.
			return errors.Join(ErrUnavailable, err)
		}
		return err
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ne) || errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return errors.Join(ErrUnavailable, err)
	}
	return err
}
