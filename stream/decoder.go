package stream

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
)

// Frame is one dispatched SSE event as a client sees it.
type Frame struct {
	ID      string // the id: field of this frame, "" when it had none
	HasID   bool
	Event   string // "message" when the frame named none
	Data    string // data: lines joined with "\n"
	HasData bool   // at least one data: line; EventSource dispatches only these
	Retry   int    // retry: in ms, 0 when absent
	Comment string // the last comment line seen before this frame (e.g. "ping")
}

// Decoder reads SSE frames as the EventSource parsing rules define them:
// lines end in \n, \r\n or \r; a blank line dispatches; comments start
// with ':'. Frames with neither data nor an event name are still returned,
// so callers can see retry: and comments.
type Decoder struct {
	r       *bufio.Reader
	long    []byte   // a line longer than the buffer, being assembled
	pending [][]byte // further lines already split off a chunk (lone \r)
	event   string   // the last event name read, reused while frames repeat it
	data    []byte   // the data lines of the frame being read, reused
	id      []byte   // the id of the frame being read, reused
	comment []byte   // its last comment line, reused
}

// NewDecoder reads frames from r with a 16 KiB buffer.
func NewDecoder(r io.Reader) *Decoder { return NewDecoderSize(r, 16<<10) }

// NewDecoderSize reads frames from r with a buffer of size bytes; lines
// longer than the buffer are still read whole. Load generators holding many
// streams use small buffers.
func NewDecoderSize(r io.Reader, size int) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, size)}
}

// Next returns the next frame, or io.EOF at the end of the stream.
func (d *Decoder) Next() (Frame, error) {
	r, err := d.NextRaw()
	if err != nil {
		return Frame{}, err
	}
	f := Frame{HasID: r.HasID, Event: r.Event, HasData: r.HasData, Retry: r.Retry}
	if r.HasID {
		f.ID = string(r.ID)
	}
	if r.HasData {
		f.Data = string(r.Data)
	}
	if r.Comment != nil {
		f.Comment = string(r.Comment)
	}
	return f, nil
}

// RawFrame is a Frame whose id, data and comment are the decoder's own
// buffers, valid until its next call: a reader that only looks at them
// allocates nothing per frame.
type RawFrame struct {
	ID      []byte
	HasID   bool
	Event   string
	Data    []byte
	HasData bool
	Retry   int
	Comment []byte // the last comment line before the frame, empty when none
}

// NextRaw returns the next frame like Next, without copying its fields into
// strings.
func (d *Decoder) NextRaw() (RawFrame, error) {
	var f RawFrame
	data := d.data[:0]
	seen := false
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && seen {
				return RawFrame{}, io.ErrUnexpectedEOF
			}
			return RawFrame{}, err
		}
		if len(line) == 0 {
			if !seen {
				continue
			}
			if len(data) > 0 {
				f.Data = data[:len(data)-1]
			}
			if cap(data) <= 64<<10 { // a rare huge frame's buffer is not kept
				d.data = data[:0]
			}
			if f.Event == "" {
				f.Event = "message"
			}
			return f, nil
		}
		seen = true
		if line[0] == ':' {
			// The line is the reader's buffer, which the next lines reuse.
			d.comment = append(d.comment[:0], bytes.TrimPrefix(line[1:], []byte(" "))...)
			f.Comment = d.comment
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			d.id = append(d.id[:0], value...)
			f.ID, f.HasID = d.id, true
		case "event":
			// Comparing converts without allocating; a load generator reads
			// hundreds of thousands of frames a second, nearly all of one type.
			if string(value) != d.event {
				d.event = string(value)
			}
			f.Event = d.event
		case "data":
			f.HasData = true
			data = append(data, value...)
			data = append(data, '\n')
		case "retry":
			f.Retry, _ = strconv.Atoi(string(value))
		}
	}
}

// readLine returns one line without its terminator. The slice is valid
// until the next call.
func (d *Decoder) readLine() ([]byte, error) {
	if len(d.pending) > 0 {
		line := d.pending[0]
		d.pending = d.pending[1:]
		return line, nil
	}
	for {
		chunk, err := d.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			d.long = append(d.long, chunk...)
			continue
		}
		if d.long != nil {
			chunk = append(d.long, chunk...)
			d.long = nil
		}
		if err != nil && (err != io.EOF || len(chunk) == 0) {
			return nil, err
		}
		chunk = bytes.TrimSuffix(chunk, []byte("\n"))
		chunk = bytes.TrimSuffix(chunk, []byte("\r"))
		if bytes.IndexByte(chunk, '\r') < 0 {
			return chunk, nil
		}
		// Lone carriage returns end lines too.
		parts := bytes.Split(chunk, []byte("\r"))
		for _, p := range parts[1:] {
			d.pending = append(d.pending, append([]byte(nil), p...))
		}
		return parts[0], nil
	}
}
