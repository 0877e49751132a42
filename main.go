// Command herald is a real-time chat backend: REST actions in, one
// Server-Sent Events stream out.
//
//	herald [serve] [flags]              run the server (the default)
//	herald token USER [--name N] [--ttl D]  print a token signed with the configured secret
//	herald bench [flags]                load-test a running server
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/web"
)

//go:embed openapi.yaml
var openapiDoc []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// The flags were printed, as asked: not a failure.
			return
		}
		// Settings are validated together, an error a line.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "herald:", line)
		}
		os.Exit(1)
	}
}

// run dispatches the subcommand.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig(args, getenv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stderr, nil)
	case "token":
		return tokenCmd(args, getenv, stdout, stderr)
	case "bench":
		return benchCmd(ctx, args, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: herald [serve|token|bench] [flags]; herald COMMAND -h for the flags")
		return nil
	}
	return fmt.Errorf("unknown command %q (want serve, token or bench)", cmd)
}

// serve runs Herald until ctx ends, then drains: stop accepting, tell
// streams to reconnect, finish queued writes, close the store. When ready
// is not nil it receives the listening address.
func serve(ctx context.Context, cfg Config, logw io.Writer, ready chan<- string) error {
	logger := newLogger(cfg, logw)
	secret, generated, err := loadSecret(cfg)
	if err != nil {
		return err
	}
	publicKey, err := loadPublicKey(cfg.JWTPublicKey)
	if err != nil {
		return fmt.Errorf("--jwt-public-key (%s): %w", envName("jwt-public-key"), err)
	}
	authOpts := api.AuthOptions{PublicKey: publicKey, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	if cfg.JWKSURL != "" {
		keysCtx, stopKeys := context.WithCancel(context.Background())
		defer stopKeys()
		if authOpts.Keys, err = jwks(keysCtx, cfg.JWKSURL, logger); err != nil {
			return fmt.Errorf("--jwks-url (%s): %w", envName("jwks-url"), err)
		}
	}
	var certs *certFiles
	if cfg.TLSCert != "" {
		if certs, err = newCertFiles(cfg.TLSCert, cfg.TLSKey, logger); err != nil {
			return err
		}
	}

	open := embedded
	if cfg.cluster() {
		open = clustered
	}
	b, err := open(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer b.close()
	st, hub := b.store, b.hub

	reg := prometheus.NewRegistry()
	srv := api.New(st, hub, api.NewAuthWith(secret, authOpts), api.Config{
		MaxBody:      cfg.MaxBody,
		MaxText:      cfg.MaxText,
		EditWindow:   cfg.EditWindow,
		DirectAdds:   cfg.MemberAdds == "direct",
		APIKeys:      cfg.APIKeys,
		TicketTTL:    cfg.TicketTTL,
		CORSOrigins:  cfg.CORSOrigins,
		Limits:       cfg.rateLimits(),
		OpenAPI:      openapiDoc,
		Client:       web.Client,
		Dev:          cfg.Dev,
		Page:         web.Page,
		Logger:       logger,
		Registry:     reg,
		MetricsApart: cfg.MetricsAddr != "",
		Presence:     b.presence,
		Typing:       b.typing,
		Buckets:      b.shared.Buckets,
		Tickets:      b.shared.Tickets,
		Checks:       b.shared.Checks,
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		hub.Close(context.Background())
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	serverAPI, handler, err := listenServerAPI(cfg, srv, logger)
	if err != nil {
		ln.Close()
		hub.Close(context.Background())
		return err
	}
	metricsSrv, err := listenMetrics(cfg, srv, logger)
	if err != nil {
		ln.Close()
		if serverAPI != nil {
			serverAPI.Close()
		}
		hub.Close(context.Background())
		return err
	}
	httpSrv := newHTTPServer(cfg, handler, logger)
	httpSrv.Protocols = protocols(certs != nil)
	scheme := "http"
	served := make(chan error, 1)
	if certs != nil {
		scheme = "https"
		httpSrv.TLSConfig = tlsConfig(certs)
		go func() { served <- httpSrv.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- httpSrv.Serve(ln) }()
	}

	debugSrv := startDebug(cfg, logger)

	if b.mode == "cluster" {
		logger.Info("herald listening", "addr", ln.Addr().String(), "scheme", scheme, "mode", b.mode, "instance", cfg.InstanceID,
			"database", redactURL(cfg.DatabaseURL), "redis", redactURL(cfg.RedisURL), "epoch", st.Epoch())
	} else {
		logger.Info("herald listening", "addr", ln.Addr().String(), "scheme", scheme, "mode", b.mode, "database", cfg.dbPath(), "epoch", st.Epoch())
	}
	if certs != nil {
		if exp := leafNotAfter(certs.cert); time.Until(exp) < 0 {
			logger.Warn("the TLS certificate has expired; browsers will refuse it", "file", cfg.TLSCert, "not_after", exp)
		}
	}
	if cfg.Dev {
		logger.Warn("dev mode: the chat page is served at / and POST /dev/token signs a token for any name, so anyone who reaches this server can act as any user; never use --dev in production",
			"url", scheme+"://"+browsable(ln.Addr().String()))
	}
	if generated {
		dir := absDir(cfg.DataDir)
		logger.Warn("generated a new JWT secret", "file", filepath.Join(dir, secretFile),
			"hint", "herald token and herald bench sign with it only when given --data-dir "+dir+
				" (HERALD_DATA_DIR); or set HERALD_JWT_SECRET for the server and the commands alike")
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-served:
		hub.Close(context.Background())
		if serverAPI != nil {
			serverAPI.Close()
		}
		if metricsSrv != nil {
			metricsSrv.Close()
		}
		return fmt.Errorf("http server: %w", err)
	}

	return shutdown(cfg, logger, srv, httpSrv, serverAPI, debugSrv, metricsSrv, b, served)
}

// shutdown drains the server once its context ended. /readyz answers 503
// for --drain-delay first, while everything else is still served, so that
// a load balancer stops sending; then the listeners stop accepting, every
// stream ends with its closing frame, and requests in flight get until
// --shutdown-timeout to finish. Connections still busy then (a client that
// stopped sending or reading) are closed: that is the drain doing its job,
// not a failure. It fails only when the server could not close cleanly.
func shutdown(cfg Config, logger *slog.Logger, srv *api.Server, httpSrv, serverAPI, debugSrv, metricsSrv *http.Server, b *backend, served <-chan error) error {
	srv.Drain()
	logger.Info("draining: /readyz answers 503", "drain_delay", cfg.DrainDelay)
	time.Sleep(cfg.DrainDelay)

	logger.Info("shutting down", "shutdown_timeout", cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	servers := []*http.Server{httpSrv}
	if serverAPI != nil {
		servers = append(servers, serverAPI)
	}
	stopped := make(chan error, len(servers))
	for _, s := range servers {
		go func() { stopped <- s.Shutdown(ctx) }() // stops accepting at once
	}
	hubErr := b.hub.Close(ctx) // streams end with a retry hint
	var httpErr error
	for range servers {
		httpErr = errors.Join(httpErr, <-stopped)
	}
	if errors.Is(httpErr, context.DeadlineExceeded) {
		logger.Warn("closing the connections still busy at the shutdown deadline", "shutdown_timeout", cfg.ShutdownTimeout)
		for _, s := range servers {
			s.Close()
		}
		httpErr = nil
	}
	if hubErr != nil {
		// Streams whose last write is stuck on a client that stopped
		// reading: each ends within its write timeout.
		logger.Warn("waiting for streams still writing at the shutdown deadline", "write_timeout", cfg.WriteTimeout)
		hubCtx, cancel := context.WithTimeout(context.Background(), cfg.WriteTimeout+time.Second)
		defer cancel()
		hubErr = b.hub.Close(hubCtx)
	}
	if debugSrv != nil {
		debugSrv.Close()
	}
	if metricsSrv != nil {
		metricsSrv.Close() // a scrape is short; nothing to drain
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		httpErr = errors.Join(httpErr, err)
	}
	return errors.Join(hubErr, httpErr, b.close())
}

// browsable is a listening address as a browser would be pointed at it:
// localhost for an unspecified host.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// listenMetrics serves /metrics on a listener of its own when
// --metrics-addr asks for one (nil otherwise), so that the main listener,
// which faces the internet, does not show them.
func listenMetrics(cfg Config, srv *api.Server, logger *slog.Logger) (*http.Server, error) {
	if cfg.MetricsAddr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	return serveApart(cfg, cfg.MetricsAddr, "metrics-addr", "metrics", mux, cfg.metricsReady, logger)
}

// startDebug serves pprof on a separate, opt-in listener.
func startDebug(cfg Config, logger *slog.Logger) *http.Server {
	addr := cfg.DebugAddr
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := newHTTPServer(cfg, mux, logger)
	srv.Addr = addr
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("debug listener", "err", err)
		}
	}()
	logger.Info("pprof listening", "addr", addr)
	return srv
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

const secretFile = "jwt-secret"

// loadSecret returns the configured HS256 secret, or the one kept in the
// data dir, generating it on first use.
func loadSecret(cfg Config) (secret []byte, generated bool, err error) {
	if cfg.JWTSecret != "" {
		return []byte(cfg.JWTSecret), false, nil
	}
	path := filepath.Join(cfg.DataDir, secretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, false, fmt.Errorf("%s holds a secret shorter than 32 characters", path)
		}
		return []byte(s), false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("read secret: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data dir: %w", err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	s := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("write secret: %w", err)
	}
	return []byte(s), true, nil
}

// absDir is dir as an absolute path where it can be had: a message that
// says ./data does not say which directory's.
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// announceSecret tells on stderr that cmd generated a secret, and how the
// server comes to verify with it. Silently, a token minted from another
// directory than the server's would be signed with a secret the server
// never sees, and refused.
func announceSecret(w io.Writer, cmd string, cfg Config) {
	dir := absDir(cfg.DataDir)
	fmt.Fprintf(w, "herald %s: generated a new JWT secret in %s\n", cmd, filepath.Join(dir, secretFile))
	fmt.Fprintf(w, "herald %s: a server verifies with it only if started with --data-dir %s (HERALD_DATA_DIR); or set HERALD_JWT_SECRET for both\n", cmd, dir)
}

// secretFlags are the settings that find the secret, which token and bench
// share with the server.
var secretFlags = []string{"jwt-secret", "data-dir"}

// tokenCmd prints a token for USER signed with the configured secret.
func tokenCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, cfg, err := configFlags("token", getenv, stderr, secretFlags...)
	if err != nil {
		return err
	}
	name := fs.String("name", "", "display name (the token's name claim)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	const usage = "usage: herald token USER [--name N] [--ttl D] [--data-dir DIR | --jwt-secret S]"
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), usage)
		fmt.Fprintln(fs.Output(), "Prints a token for USER signed with the server's secret, found like the server finds it:")
		fmt.Fprintln(fs.Output(), "--jwt-secret, HERALD_JWT_SECRET, or DATA_DIR/jwt-secret (generated there if missing).")
		printFlags(fs.Output(), fs)
	}
	users, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(users) != 1 {
		return errors.New(usage)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if *ttl <= 0 {
		return badSetting("ttl", "", ttl.String(), "a positive duration such as 24h")
	}
	secret, generated, err := loadSecret(*cfg)
	if err != nil {
		return err
	}
	if generated {
		announceSecret(stderr, "token", *cfg)
	}
	token, err := api.Mint(secret, users[0], *name, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}
