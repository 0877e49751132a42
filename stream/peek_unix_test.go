//go:build unix

package stream

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// peek waits until bytes are in nc's receive queue, and leaves them there.
func peek(t *testing.T, nc *net.TCPConn) {
	t.Helper()
	rc, err := nc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, peekErr = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK)
		return !errors.Is(peekErr, syscall.EAGAIN)
	})
	if err = errors.Join(err, peekErr); err != nil || n == 0 {
		t.Fatalf("peek = %d bytes, %v; want some", n, err)
	}
}
