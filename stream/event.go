// Package stream delivers Herald's events over Server-Sent Events.
//
// The Hub tails one ordered Log, keeps its recent part in memory indexed by
// room, and routes each event to the local connections of the room's members
// at the time of the event. A connection that comes back with a
// Last-Event-ID gets what it missed from that tail, or from the Log's range,
// before live events.
package stream

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/heraldchat/herald/internal/event"
)

// entry is a log event with its SSE frame, encoded once: the same bytes go
// to every recipient, and to every replay from memory.
type entry struct {
	event.Event
	frame []byte
}

// Position is a place in one epoch of the log. Its text form, used as the SSE
// id, is "<epoch>-<seq>".
type Position struct {
	Epoch string
	Seq   int64
}

func (p Position) String() string { return p.Epoch + "-" + strconv.FormatInt(p.Seq, 10) }

var errBadPosition = errors.New("stream: malformed event id")

// ParsePosition reads an SSE id written by Position.String, and nothing
// else: the position is decimal digits without a sign or leading zeros,
// so that one id names one position and a position has one id.
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return Position{}, errBadPosition
	}
	digits := s[i+1:]
	if digits[0] < '0' || digits[0] > '9' || digits[0] == '0' && len(digits) > 1 {
		return Position{}, errBadPosition
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || seq < 0 {
		return Position{}, errBadPosition
	}
	return Position{Epoch: s[:i], Seq: seq}, nil
}

// AppendFrame appends one SSE frame to b. id may be empty (no id: line).
// Data is split on line breaks so that every line is its own data: field,
// as the EventSource parser requires; JSON never contains a raw one, but the
// encoder does not rely on it.
func AppendFrame(b []byte, id, typ string, data []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	if typ != "" {
		b = append(b, "event: "...)
		b = append(b, typ...)
		b = append(b, '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		b = append(b, "data: "...)
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, '\n', '\n')
}
