// Package streamtest is a real SSE client for tests: it opens a stream over
// HTTP and hands its frames over a channel.
package streamtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/heraldchat/herald/stream"
)

// Timeout bounds every wait of a Client. Tests wait on events, never on
// sleeps; this only keeps a broken test from hanging.
var Timeout = 10 * time.Second

// Client reads one SSE stream. Its reader goroutine is stopped by Close,
// which t.Cleanup also calls.
type Client struct {
	t      testing.TB
	Resp   *http.Response
	frames chan stream.Frame // every frame, comments and retry-only ones too
	errc   chan error        // the reader's final error (io.EOF on a clean end)
	cancel context.CancelFunc
	LastID string // id of the last frame that carried one
}

// Connect opens a stream at url with the given headers and fails the test
// unless it answers 200 text/event-stream.
func Connect(t testing.TB, url string, header http.Header) *Client {
	t.Helper()
	return ConnectWith(t, http.DefaultClient, url, header)
}

// ConnectWith is Connect through client (an HTTP/2 one, say).
func ConnectWith(t testing.TB, client *http.Client, url string, header http.Header) *Client {
	t.Helper()
	c, err := DialWith(client, url, header)
	if err != nil {
		t.Fatalf("open stream %s: %v", url, err)
	}
	c.t = t
	t.Cleanup(c.Close)
	return c
}

// Dial opens a stream without a test; the caller must Close it.
func Dial(url string, header http.Header) (*Client, error) {
	return DialWith(http.DefaultClient, url, header)
}

// DialWith is Dial through client.
func DialWith(client *http.Client, url string, header http.Header) (*Client, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("Content-Type = %q; want text/event-stream", ct)
	}
	c := &Client{Resp: resp, frames: make(chan stream.Frame, 4096), errc: make(chan error, 1), cancel: cancel}
	go c.read()
	return c, nil
}

func (c *Client) read() {
	defer c.Resp.Body.Close()
	dec := stream.NewDecoder(c.Resp.Body)
	for {
		f, err := dec.Next()
		if err != nil {
			// errc is filled before frames closes: Ended reads it as soon
			// as it sees the close.
			c.errc <- err
			close(c.frames)
			return
		}
		c.frames <- f
	}
}

// Close ends the stream.
func (c *Client) Close() { c.cancel() }

// Frame returns the next frame of any kind, or ok false when the stream
// ended or Timeout passed.
func (c *Client) Frame() (f stream.Frame, ok bool) {
	select {
	case f, ok = <-c.frames:
		if ok && f.HasID {
			c.LastID = f.ID
		}
		return f, ok
	case <-time.After(Timeout):
		return f, false
	}
}

// Next returns the next frame that EventSource would dispatch (it has
// data), skipping comments and retry-only frames. It fails the test when the
// stream ends or nothing comes within Timeout.
func (c *Client) Next() stream.Frame {
	c.t.Helper()
	for {
		f, ok := c.Frame()
		if !ok {
			c.t.Fatalf("stream ended or timed out waiting for an event (last id %q)", c.LastID)
		}
		if f.HasData {
			return f
		}
	}
}

// Expect returns the next event and fails unless its type is typ.
func (c *Client) Expect(typ string) stream.Frame {
	c.t.Helper()
	f := c.Next()
	if f.Event != typ {
		c.t.Fatalf("next event = %s %s; want %s", f.Event, f.Data, typ)
	}
	return f
}

// ExpectData is Expect that also decodes the event's JSON data into v.
func (c *Client) ExpectData(typ string, v any) stream.Frame {
	c.t.Helper()
	f := c.Expect(typ)
	if err := json.Unmarshal([]byte(f.Data), v); err != nil {
		c.t.Fatalf("decode %s data %q: %v", typ, f.Data, err)
	}
	return f
}

// WaitFor skips events until one of type typ arrives and returns it.
func (c *Client) WaitFor(typ string) stream.Frame {
	c.t.Helper()
	for {
		if f := c.Next(); f.Event == typ {
			return f
		}
	}
}

// Ended waits for the server to end the stream and returns the frames that
// came before the end (comments included).
func (c *Client) Ended() []stream.Frame {
	c.t.Helper()
	var out []stream.Frame
	for {
		f, ok := c.Frame()
		if !ok {
			select {
			case <-c.errc:
				return out
			default:
				c.t.Fatalf("stream did not end within %v", Timeout)
			}
		}
		out = append(out, f)
	}
}

// Quiet reports whether no event arrives within d. Use it only after a
// later marker event proved delivery happened, never as the only check.
func (c *Client) Quiet(d time.Duration) (stream.Frame, bool) {
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return stream.Frame{}, true
			}
			if f.HasData {
				return f, false
			}
		case <-deadline:
			return stream.Frame{}, true
		}
	}
}
