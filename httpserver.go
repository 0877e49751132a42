package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// newHTTPServer is the http.Server of every listener (the main one, the
// server API's, the debug one). Each bounds what a client may take to send
// a request: its headers' size (net/http answers 431 past it) and the time
// to send headers and body (the handler answers 408 for a body that did not
// come in time), so that no client holds a connection, and its file
// descriptor, by sending slowly or not at all.
func newHTTPServer(cfg Config, h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           bodyDeadline(h, cfg.ReadTimeout),
		ReadHeaderTimeout: min(cfg.ReadTimeout, 10*time.Second),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// bodyDeadline gives a request that has a body d, from when its handler
// starts, to send it. http.Server's ReadTimeout would do that too, but it
// also cuts every answer that takes longer (on HTTP/1 a read deadline that
// passes cancels the request's context); here the deadline ends with the
// body, so an answer, or a stream, lasts as long as it needs. A handler
// that reads no body leaves the deadline on, which also bounds net/http's
// discarding of that body before the connection's next request.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline once the body was
// read to its end.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// serveApart serves h on a listener of its own at addr (the value of the
// flag named), for what is kept off the main listener; ready, set by
// tests, receives the address it listens on.
func serveApart(cfg Config, addr, flag, what string, h http.Handler, ready chan<- string, logger *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--%s): %w", addr, flag, err)
	}
	s := newHTTPServer(cfg, h, logger)
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(what+" listener", "err", err)
		}
	}()
	logger.Info(what+" listening", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	return s, nil
}
