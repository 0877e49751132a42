package stream

import "net"

// Hang-up watching. A hijacked stream's client sends nothing after its
// request, so the only thing to notice on the way in is that it went away:
// then the stream ends at once (presence, typing) rather than at its next
// write. On Linux one goroutine watches every connection with epoll
// (hangup_linux.go); elsewhere, or for a connection without a descriptor,
// a goroutine per stream waits in a read (readUntilHangUp).

// readUntilHangUp watches nc with a goroutine blocked in a read, which
// returns only when the client hangs up or nc is closed. Bytes the client
// sends mean nothing to a stream and are dropped.
func (w *hangups) readUntilHangUp(nc net.Conn, c *conn) {
	w.readers.Add(1)
	go func() {
		defer w.readers.Done()
		defer c.hangUp()
		var b [64]byte
		for {
			if _, err := nc.Read(b[:]); err != nil {
				return
			}
		}
	}()
}
