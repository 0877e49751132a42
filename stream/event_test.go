package stream

import (
	"io"
	"strings"
	"testing"
)

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name    string
		id, typ string
		data    string
		want    string
	}{
		{"full", "e-1", "message:created", `{"a":1}`, "id: e-1\nevent: message:created\ndata: {\"a\":1}\n\n"},
		{"no id", "", "typing:started", `{}`, "event: typing:started\ndata: {}\n\n"},
		{"no type", "e-2", "", `x`, "id: e-2\ndata: x\n\n"},
		{"newline", "", "t", "a\nb", "event: t\ndata: a\ndata: b\n\n"},
		{"carriage return", "", "t", "a\rb", "event: t\ndata: a\ndata: b\n\n"},
		{"crlf", "", "t", "a\r\nb", "event: t\ndata: a\ndata: b\n\n"},
		{"trailing newline", "", "t", "a\n", "event: t\ndata: a\ndata: \n\n"},
		{"empty", "", "t", "", "event: t\ndata: \n\n"},
		{"unicode", "", "t", "héllo 👋 \u2028", "event: t\ndata: héllo 👋 \u2028\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendFrame(nil, tt.id, tt.typ, []byte(tt.data)))
			if got != tt.want {
				t.Errorf("AppendFrame(%q, %q, %q) = %q; want %q", tt.id, tt.typ, tt.data, got, tt.want)
			}
		})
	}
}

// TestFrameRoundTrip checks that what AppendFrame writes, the decoder (which
// follows the EventSource parsing rules) reads back as the same data, with
// line breaks normalised to \n as EventSource does.
func TestFrameRoundTrip(t *testing.T) {
	for _, data := range []string{"plain", "a\nb", "a\rb", "a\r\nb\r\n", "", "  leading spaces", "colon: inside", "👋"} {
		frame := AppendFrame(nil, "ep-7", "x", []byte(data))
		f, err := NewDecoder(strings.NewReader(string(frame))).Next()
		if err != nil {
			t.Fatalf("decode %q: %v", frame, err)
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		if f.Data != want || f.ID != "ep-7" || f.Event != "x" || !f.HasData {
			t.Errorf("round trip of %q = %+v; want data %q id ep-7 event x", data, f, want)
		}
	}
}

func TestDecoder(t *testing.T) {
	in := "retry: 2000\r\n\r\n: ping\n\nid: a-1\nevent: ready\ndata: {}\n\ndata: one\rdata: two\r\r" +
		// The decoder reuses its buffers and the last event name: frames
		// that follow must not see those of earlier ones.
		"event: x\ndata: a longer one\n\nevent: x\ndata: b\n\ndata: c\n\nevent: y\n\n"
	dec := NewDecoder(strings.NewReader(in))
	want := []Frame{
		{Event: "message", Retry: 2000},
		{Event: "message", Comment: "ping"},
		{ID: "a-1", HasID: true, Event: "ready", Data: "{}", HasData: true},
		{Event: "message", Data: "one\ntwo", HasData: true},
		{Event: "x", Data: "a longer one", HasData: true},
		{Event: "x", Data: "b", HasData: true},
		{Event: "message", Data: "c", HasData: true},
		{Event: "y"},
	}
	for i, w := range want {
		got, err := dec.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got != w {
			t.Errorf("frame %d = %+v; want %+v", i, got, w)
		}
	}
	if _, err := dec.Next(); err != io.EOF {
		t.Errorf("Next after the last frame = %v; want EOF", err)
	}
	// A stream cut inside a frame is not a clean end: the frame is lost.
	for _, cut := range []string{"data: half", "data: half\n", "event: x\ndata: y\n"} {
		if _, err := NewDecoder(strings.NewReader(cut)).Next(); err != io.ErrUnexpectedEOF {
			t.Errorf("Next on %q = %v; want unexpected EOF", cut, err)
		}
	}
}

// TestDecoderRaw checks that NextRaw reads what Next reads, with buffers so
// small that the lines after an id or a comment reuse the reader's storage.
func TestDecoderRaw(t *testing.T) {
	in := "retry: 2000\r\n\r\n: ping\n\nid: a-1\nevent: ready\ndata: {}\n\ndata: one\rdata: two\r\r" +
		"id: b-22\n: note\nevent: x\ndata: " + strings.Repeat("long ", 20) + "\n\nevent: x\ndata: b\n\ndata: c\n\nevent: y\n\n"
	for _, size := range []int{16, 64, 4096} {
		want := NewDecoderSize(strings.NewReader(in), size)
		got := NewDecoderSize(strings.NewReader(in), size)
		for i := 0; ; i++ {
			w, werr := want.Next()
			r, rerr := got.NextRaw()
			if (werr == nil) != (rerr == nil) {
				t.Fatalf("size %d, frame %d: Next error %v, NextRaw error %v", size, i, werr, rerr)
			}
			if werr != nil {
				break
			}
			g := Frame{ID: string(r.ID), HasID: r.HasID, Event: r.Event, Data: string(r.Data), HasData: r.HasData, Retry: r.Retry, Comment: string(r.Comment)}
			if g != w {
				t.Errorf("size %d, frame %d: NextRaw = %+v; want %+v", size, i, g, w)
			}
		}
	}
}

func TestParsePosition(t *testing.T) {
	tests := []struct {
		in      string
		want    Position
		wantErr bool
	}{
		{"abc-12", Position{"abc", 12}, false},
		{"a-b-3", Position{"a-b", 3}, false},
		{"abc-0", Position{"abc", 0}, false},
		{"", Position{}, true},
		{"abc", Position{}, true},
		{"-5", Position{}, true},
		{"abc-", Position{}, true},
		{"abc--1", Position{"abc-", 1}, false},
		{"abc-x", Position{}, true},
		{"abc-99999999999999999999", Position{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePosition(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParsePosition(%q).String() = %q", tt.in, got.String())
		}
	}
}

// BenchmarkDecoderRaw reads the same frames without copying them out: no
// allocation per frame.
func BenchmarkDecoderRaw(b *testing.B) {
	benchmarkDecode(b, func(d *Decoder) error { _, err := d.NextRaw(); return err })
}

// BenchmarkDecoder reads message:created frames as a load generator does,
// 1,000 per op: the allocations per frame are the Data and ID strings.
func BenchmarkDecoder(b *testing.B) {
	benchmarkDecode(b, func(d *Decoder) error { _, err := d.Next(); return err })
}

// benchmarkDecode reads 1,000 message:created frames per op with next.
func benchmarkDecode(b *testing.B, next func(*Decoder) error) {
	frame := AppendFrame(nil, "abcd-12345", "message:created", []byte(`{"id":5,"room":"r_x","text":"`+strings.Repeat("x", 100)+`"}`))
	raw := strings.Repeat(string(frame), 1000)
	b.ReportAllocs()
	for b.Loop() {
		dec := NewDecoderSize(strings.NewReader(raw), 2048)
		for next(dec) == nil {
		}
	}
}
