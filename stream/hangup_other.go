//go:build !linux

package stream

import (
	"net"
	"sync"
)

// hangups tells streams when their clients hang up: here, with a reading
// goroutine per stream.
type hangups struct {
	readers sync.WaitGroup
}

func newHangups() (*hangups, error) { return &hangups{}, nil }

// watch calls c.hangUp when the client behind nc goes away. The returned
// function ends the watch; call it before closing nc.
func (w *hangups) watch(nc net.Conn, c *conn) (stop func()) {
	w.readUntilHangUp(nc, c)
	return func() {}
}

// close waits for the reading goroutines, which end as their connections
// close.
func (w *hangups) close() { w.readers.Wait() }
