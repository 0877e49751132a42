package main

import (
	"log/slog"
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
	s, err := serveApart(cfg, cfg.ServerAddr, "server-addr", "server API", srv.ServerAPIHandler(), cfg.serverReady, logger)
	if err != nil {
		return nil, nil, err
	}
	return s, srv.PublicHandler(), nil
}
