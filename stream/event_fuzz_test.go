package stream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// sseEvent is an event as an EventSource dispatches it.
type sseEvent struct{ id, typ, data string }

// parseSSE parses a stream as the WHATWG rules for EventSource say
// (HTML, "Interpreting an event stream"), and nothing more: a leading
// BOM is dropped; lines end at CRLF, LF or CR; an empty line dispatches
// the event, unless its data is empty; a line starting with a colon is a
// comment; a field's name is what precedes the first colon, its value
// what follows it, less one leading space; data lines are joined with LF;
// an id containing NUL is ignored; the last event id carries over to the
// next events; a type left empty is "message"; an event not ended by an
// empty line when the stream ends is discarded.
func parseSSE(stream string) []sseEvent {
	var (
		out             []sseEvent
		data, typ       strings.Builder
		lastID, idField string
	)
	stream = strings.TrimPrefix(stream, "\ufeff")
	for {
		i := strings.IndexAny(stream, "\r\n")
		if i < 0 {
			return out
		}
		line := stream[:i]
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]
		switch {
		case line == "":
			lastID = idField
			if data.Len() > 0 {
				t := typ.String()
				if t == "" {
					t = "message"
				}
				out = append(out, sseEvent{id: lastID, typ: t, data: strings.TrimSuffix(data.String(), "\n")})
			}
			data.Reset()
			typ.Reset()
		case line[0] == ':':
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				typ.Reset()
				typ.WriteString(value)
			case "data":
				data.WriteString(value)
				data.WriteByte('\n')
			case "id":
				if !strings.Contains(value, "\x00") {
					idField = value
				}
			}
		}
	}
}

// FuzzFrame checks that a frame as the hub writes it (AppendFrame) is
// read back by an EventSource as the same event: the same id, type and
// data, line breaks in the data (LF, CR, CRLF) arriving as LF, and that
// the frame ends where it should, so that the next one is read whole. The
// hub's ids and types are one line each (positions and constant names)
// and its data is UTF-8 (JSON): inputs outside that are not frames the hub
// writes. The seeds are in testdata/fuzz/FuzzFrame.
func FuzzFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, id, typ string, data []byte) {
		if strings.ContainsAny(id+typ, "\r\n\x00") || !utf8.Valid(data) {
			return
		}
		stream := AppendFrame(AppendFrame(nil, id, typ, data), "e-2", "next", []byte(`{"n":2}`))
		want := sseEvent{id: id, typ: typ, data: strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))}
		if typ == "" {
			want.typ = "message"
		}
		got := parseSSE(string(stream))
		if len(got) != 2 || got[0] != want || got[1] != (sseEvent{"e-2", "next", `{"n":2}`}) {
			t.Fatalf("AppendFrame(%q, %q, %q) then another frame = %q\nparsed as %+v; want %+v and the next", id, typ, data, stream, got, want)
		}
	})
}

// FuzzLastEventID checks that parsing a client's Last-Event-ID never
// panics, and that what it accepts is a position written exactly so:
// one id names one position, and a position one id. The seeds are in
// testdata/fuzz/FuzzLastEventID.
func FuzzLastEventID(f *testing.F) {
	f.Fuzz(func(t *testing.T, id string) {
		p, err := ParsePosition(id)
		if err != nil {
			return
		}
		if p.String() != id || p.Epoch == "" || p.Seq < 0 {
			t.Fatalf("ParsePosition(%q) = %+v, written %q; want it written as it was read", id, p, p.String())
		}
	})
}
