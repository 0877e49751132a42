package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/heraldchat/herald/api"
)

// listenServerAPI starts the server API's own listener when --server-addr
// asks for one, and returns it with the handler of the main listener,
// which then leaves the server API out. Without --server-addr, the main
// listener serves everything and the server is nil.
func listenServerAPI(cfg Config, srv *api.Server, logger *slog.Logger) (*http.Server, http.Handler, error) {
	if len(cfg.APIKeys) == 0 {
		logger.Info("the server API is off: no --api-keys (HERALD_API_KEYS)")
	}
	if cfg.ServerAddr == "" {
		return nil, srv.Handler(), nil
	}
	ln, err := net.Listen("tcp", cfg.ServerAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s (--server-addr): %w", cfg.ServerAddr, err)
	}
	s := newHTTPServer(cfg, srv.ServerAPIHandler(), logger)
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("server API listener", "err", err)
		}
	}()
	logger.Info("server API listening", "addr", ln.Addr().String())
	if cfg.serverReady != nil {
		cfg.serverReady <- ln.Addr().String()
	}
	return s, srv.PublicHandler(), nil
}
