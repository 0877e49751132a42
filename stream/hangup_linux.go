package stream

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// hangups tells streams when their clients hang up, with one epoll set
// and one goroutine for all of them: a goroutine per stream would cost its
// stack (2 KB or more) on every idle connection.
//
// Each connection is registered for EPOLLRDHUP (the client closed) and,
// implicitly, EPOLLHUP and EPOLLERR (reset), once: the first report is the
// only one needed. Registrations carry an id, not the descriptor, because a
// descriptor number is reused as soon as it is closed.
type hangups struct {
	epfd int
	wake [2]int // a pipe: writing to it ends the watcher's wait, for close

	mu     sync.Mutex
	conns  map[uint64]*conn // watched connections by id; guarded by mu
	next   uint64           // the last id given; guarded by mu
	closed bool             // guarded by mu

	done    chan struct{}  // closed when the watcher exits
	once    sync.Once      // close
	readers sync.WaitGroup // fallback reading goroutines
}

// wakeID marks the pipe's registration; connection ids start at 1.
const wakeID = 0

func newHangups() (*hangups, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("stream: epoll: %w", err)
	}
	w := &hangups{epfd: epfd, conns: map[uint64]*conn{}, done: make(chan struct{})}
	if err := syscall.Pipe2(w.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("stream: pipe: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeID}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.wake[0], &ev); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("stream: epoll: %w", err)
	}
	go w.run()
	return w, nil
}

// watch calls c.hangUp when the client behind nc goes away. The returned
// function ends the watch; call it before closing nc.
func (w *hangups) watch(nc net.Conn, c *conn) (stop func()) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		w.readUntilHangUp(nc, c)
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		w.readUntilHangUp(nc, c)
		return func() {}
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.readUntilHangUp(nc, c)
		return func() {}
	}
	w.next++
	id := w.next
	w.conns[id] = c
	// Registering under mu keeps close from closing epfd meanwhile. A
	// client that is already gone is reported all the same: epoll checks
	// the state as the descriptor is added.
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		ctlErr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err = errors.Join(err, ctlErr); err != nil {
		delete(w.conns, id)
		w.mu.Unlock()
		w.readUntilHangUp(nc, c)
		return func() {}
	}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.conns, id)
		if !w.closed {
			rc.Control(func(fd uintptr) {
				syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
			})
		}
	}
}

// run is the watcher: it waits for reports and passes each to its stream.
func (w *hangups) run() {
	defer close(w.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			// Nothing else can fail here short of a bad descriptor; the
			// streams still end at their next write or heartbeat.
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == wakeID {
				return
			}
			w.mu.Lock()
			c := w.conns[id]
			delete(w.conns, id)
			w.mu.Unlock()
			if c != nil {
				c.hangUp()
			}
		}
	}
}

// close stops the watcher and waits for it and for any reading goroutines,
// which end as their connections close. Streams still watched are not told
// of hang-ups any more; they end at their next write.
func (w *hangups) close() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		syscall.Write(w.wake[1], []byte{0})
		<-w.done
		w.closeFDs()
	})
	w.readers.Wait()
}

func (w *hangups) closeFDs() {
	syscall.Close(w.wake[0])
	syscall.Close(w.wake[1])
	syscall.Close(w.epfd)
}
