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
	r *bufio.Reader
}

// NewDecoder reads frames from r.
func NewDecoder(r io.Reader) *Decoder { return &Decoder{r: bufio.NewReaderSize(r, 16<<10)} }

// Next returns the next frame, or io.EOF at the end of the stream.
func (d *Decoder) Next() (Frame, error) {
	var f Frame
	var data bytes.Buffer
	seen := false
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && seen {
				return Frame{}, io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		if len(line) == 0 {
			if !seen {
				continue
			}
			f.Data = data.String()
			if len(f.Data) > 0 {
				f.Data = f.Data[:len(f.Data)-1]
			}
			if f.Event == "" {
				f.Event = "message"
			}
			return f, nil
		}
		seen = true
		if line[0] == ':' {
			f.Comment = string(bytes.TrimPrefix(line[1:], []byte(" ")))
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			f.ID, f.HasID = string(value), true
		case "event":
			f.Event = string(value)
		case "data":
			f.HasData = true
			data.Write(value)
			data.WriteByte('\n')
		case "retry":
			f.Retry, _ = strconv.Atoi(string(value))
		}
	}
}

// readLine returns one line without its terminator (\n, \r\n or \r).
func (d *Decoder) readLine() ([]byte, error) {
	var line []byte
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return line, nil
			}
			return nil, err
		}
		switch b {
		case '\n':
			return line, nil
		case '\r':
			if next, err := d.r.Peek(1); err == nil && next[0] == '\n' {
				d.r.ReadByte()
			}
			return line, nil
		}
		line = append(line, b)
	}
}
