// Package api is Herald's HTTP surface: the REST actions, the SSE stream
// route, authentication, and the mapping of errors to HTTP answers.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/heraldchat/herald/internal/quietlog"
	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/stream"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// Config holds the API's settings. Zero values take the documented defaults.
type Config struct {
	// MaxBody caps request bodies in bytes (default 64 KiB); larger get 413.
	MaxBody int64
	// MaxText caps a message's length in characters (default 4,000).
	MaxText int
	// MaxName caps a room's name in characters (default 100).
	MaxName int
	// MaxTopic caps a room's topic in characters (default 250).
	MaxTopic int
	// EditWindow is how long after posting an author may edit a message
	// (0: no limit).
	EditWindow time.Duration
	// DirectAdds lets a room's owner add members without asking them, and
	// a DM take in its peer at once (--member-adds direct). By default
	// both invite, and the user joins by accepting.
	DirectAdds bool
	// APIKeys are the keys the server API accepts, several during a
	// rotation; none turns the server API off.
	APIKeys []string
	// HistoryLimit is the default page size of history (default 50); MaxHistory
	// its maximum (default 200).
	HistoryLimit, MaxHistory int
	// TicketTTL is how long a stream ticket may be redeemed (default 60s).
	TicketTTL time.Duration
	// CookieTTL bounds the stream cookie (default 12h, never past the token).
	CookieTTL time.Duration
	// CORSOrigins lists the browser origins allowed to call the API; empty
	// means same origin only.
	CORSOrigins []string
	// Limits are the per-user rate limits; zero rates disable a limit.
	Limits RateLimits
	// OpenAPI is the document served at /openapi.yaml.
	OpenAPI []byte
	// Client is the browser client, an ES module served at /client.js.
	Client []byte
	// Dev serves Page, the chat page, at / and signs tokens for any name
	// at POST /dev/token, valid for DevTokenTTL (default 12h). Without it
	// both answer 404.
	Dev         bool
	Page        []byte
	DevTokenTTL time.Duration
	// Logger receives request logs and internal errors.
	Logger *slog.Logger
	// Registry, when set, receives the server's metrics and is served at
	// /metrics, unless MetricsApart.
	Registry *prometheus.Registry
	// MetricsApart leaves /metrics out of Handler: the metrics are served
	// by a listener of their own (MetricsHandler), kept off the internet.
	MetricsApart bool
	// Presence and Typing track the ephemeral state of streams. Required.
	Presence Presence
	Typing   Typing
	// Buckets, when set, keeps rate limits where every instance of a
	// cluster sees them; Tickets keeps spent stream tickets where they last
	// (the store, or Redis). Without them, memory keeps both.
	Buckets Buckets
	Tickets Tickets
	// Checks are the components besides the store that readiness reports
	// on, by name (a cluster's Redis). One that fails makes the instance
	// degraded, not unready: it still serves.
	Checks map[string]func(context.Context) error
}

// Server is the HTTP API over a store and a stream hub.
type Server struct {
	cfg     Config
	store   *store.Store
	hub     *stream.Hub
	auth    *Auth
	logger  *slog.Logger
	quiet   *quietlog.Logger // for the shared ticket record's failures
	limiter *limiter
	echo    *echo.Echo
	metrics *metrics
	keys    apiKeys // the server API's

	clientTag string // the ETag of Client

	typingLocks typingLocks

	// draining is set by Drain, when shutdown begins: /readyz answers
	// 503 from then on while everything else is still served.
	draining atomic.Bool
}

// Drain makes /readyz answer 503 "shutting down" from now on, so that a
// load balancer stops sending requests before the server stops taking
// them. Everything else is served as before.
func (s *Server) Drain() { s.draining.Store(true) }

// New builds the API. The caller owns st and hub and closes them after the
// HTTP server has shut down.
func New(st *store.Store, hub *stream.Hub, auth *Auth, cfg Config) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.MaxText <= 0 {
		cfg.MaxText = 4000
	}
	if cfg.MaxName <= 0 {
		cfg.MaxName = 100
	}
	if cfg.MaxTopic <= 0 {
		cfg.MaxTopic = 250
	}
	if cfg.HistoryLimit <= 0 {
		cfg.HistoryLimit = 50
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = 200
	}
	if cfg.TicketTTL <= 0 {
		cfg.TicketTTL = time.Minute
	}
	if cfg.CookieTTL <= 0 {
		cfg.CookieTTL = 12 * time.Hour
	}
	if cfg.DevTokenTTL <= 0 {
		cfg.DevTokenTTL = 12 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, store: st, hub: hub, auth: auth, logger: cfg.Logger, quiet: quietlog.New(cfg.Logger), limiter: newLimiter(cfg.Limits, cfg.Buckets, cfg.Logger),
		keys: newAPIKeys(cfg.APIKeys)}
	sum := sha256.Sum256(cfg.Client)
	s.clientTag = `"` + hex.EncodeToString(sum[:12]) + `"`
	s.metrics = newMetrics(cfg.Registry, st, hub)
	s.echo = s.routes()
	s.metrics.routes = map[string]bool{}
	for _, r := range s.echo.Routes() {
		s.metrics.routes[r.Path] = true
	}
	return s
}

// Handler returns the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// MetricsHandler serves the metrics in Prometheus' text format (nil
// without a Registry), for a listener of their own.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler }

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(requestID)
	e.Use(middleware.Recover())
	e.Use(s.requestLogger())
	if len(s.cfg.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:     s.cfg.CORSOrigins,
			AllowMethods:     []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete},
			AllowHeaders:     []string{echo.HeaderAuthorization, echo.HeaderContentType, "Last-Event-ID"},
			AllowCredentials: true,
			MaxAge:           600,
		}))
	}
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", s.openapi)
	e.GET("/client.js", s.clientModule)
	e.GET("/", s.chatPage)
	e.POST("/dev/token", s.devToken)
	if s.metrics.handler != nil && !s.cfg.MetricsApart {
		e.GET("/metrics", echo.WrapHandler(s.metrics.handler))
	}

	// The stream authenticates itself: by header, ticket or stream cookie.
	e.GET("/v1/stream", s.streamHandler)

	// Authentication is attached per route rather than to a group: a group
	// with middleware catches every unknown path under it, which would turn
	// 404 and 405 answers into 401.
	v1 := func(method, path string, h echo.HandlerFunc) { e.Add(method, "/v1"+path, h, s.authenticate) }
	v1(http.MethodPost, "/stream/tickets", s.createTicket)
	v1(http.MethodPost, "/rooms", s.createRoom)
	v1(http.MethodGet, "/rooms", s.listRooms)
	v1(http.MethodPost, "/rooms/:room/join", s.joinRoom)
	v1(http.MethodPost, "/rooms/:room/leave", s.leaveRoom)
	v1(http.MethodGet, "/rooms/:room/members", s.listMembers)
	v1(http.MethodPost, "/rooms/:room/members", s.addMember)
	v1(http.MethodDelete, "/rooms/:room/members/:user", s.removeMember)
	v1(http.MethodPost, "/rooms/:room/messages", s.postMessage)
	v1(http.MethodGet, "/rooms/:room/messages", s.listMessages)
	v1(http.MethodPost, "/rooms/:room/typing", s.setTyping)
	v1(http.MethodPost, "/rooms/:room/read", s.markRead)
	v1(http.MethodGet, "/rooms/:room/receipts", s.listReceipts)
	v1(http.MethodGet, "/presence", s.getPresence)
	v1(http.MethodPost, "/presence", s.setStatus)
	v1(http.MethodGet, "/rooms/:room", s.getRoom)
	v1(http.MethodPatch, "/rooms/:room", s.updateRoom)
	v1(http.MethodDelete, "/rooms/:room", s.deleteRoom)
	v1(http.MethodPatch, "/rooms/:room/messages/:id", s.editMessage)
	v1(http.MethodDelete, "/rooms/:room/messages/:id", s.deleteMessage)
	v1(http.MethodPost, "/dms", s.openDM)
	v1(http.MethodGet, "/invitations", s.listInvitations)
	v1(http.MethodDelete, "/invitations/:room", s.declineInvitation)
	s.serverRoutes(e)
	return e
}

// Routes lists the method and path of every route, with OpenAPI-style
// {param} segments; the contract test compares it with openapi.yaml.
func (s *Server) Routes() [][2]string {
	var out [][2]string
	for _, r := range s.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		out = append(out, [2]string{r.Method, echoToOpenAPI(r.Path)})
	}
	return out
}

func echoToOpenAPI(p string) string {
	b := []byte{}
	for i := 0; i < len(p); i++ {
		if p[i] != ':' {
			b = append(b, p[i])
			continue
		}
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		b = append(b, '{')
		b = append(b, p[i+1:j]...)
		b = append(b, '}')
		i = j - 1
	}
	return string(b)
}

// requestID gives every request an id, sent back in X-Request-Id and
// repeated in the logs. A client's own id (a proxy's, say) is kept when it
// is at most maxRequestID characters of safe ones; any other would put
// what a client chose, unbounded, in every answer's headers and in log
// lines, so the request gets a fresh one instead. The request's header is
// rewritten too, so that the request logger, which reads it first, logs
// the id that was answered.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		id := req.Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		req.Header[echo.HeaderXRequestID] = []string{id}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// maxRequestID is the longest request id a client may choose: a UUID, a
// W3C traceparent or a proxy's id all fit.
const maxRequestID = 128

// validRequestID reports whether a client's request id is kept: 1 to
// maxRequestID ASCII letters, digits and - _ . : / + =.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '-', b == '_', b == '.', b == ':', b == '/', b == '+', b == '=':
		default:
			return false
		}
	}
	return true
}

// newRequestID is 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) requestLogger() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogURIPath: true, LogMethod: true, LogLatency: true, LogRequestID: true, LogRoutePath: true,
		// The error handler answers first, so that the status logged and
		// counted is the one sent, not the 200 the response starts with.
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			s.metrics.observe(v.Method, v.RoutePath, v.Status, v.Latency)
			if !s.logger.Enabled(c.Request().Context(), slog.LevelDebug) {
				return nil
			}
			s.logger.LogAttrs(c.Request().Context(), slog.LevelDebug, "request",
				slog.String("method", v.Method), slog.String("path", v.URIPath), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency), slog.String("request_id", v.RequestID))
			return nil
		},
	})
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readiness is the body of /readyz.
type readiness struct {
	Status string            `json:"status"` // ready, degraded, store unavailable, shutting down
	Checks map[string]string `json:"checks,omitempty"`
}

// readyz answers 200 while the store answers and the hub accepts streams,
// so a load balancer stops sending traffic to an instance that drains or
// lost its database. A failing check (Redis) answers 200 "degraded": the
// instance still serves, and so would every other one.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	r := readiness{Status: "ready", Checks: map[string]string{"store": "ok"}}
	status := http.StatusOK
	if err := s.store.Ping(ctx); err != nil {
		r.Status, r.Checks["store"], status = "store unavailable", unavailableReason(err), http.StatusServiceUnavailable
	}
	for name, check := range s.cfg.Checks {
		r.Checks[name] = "ok"
		if err := check(ctx); err != nil {
			r.Checks[name] = "unavailable"
			if status == http.StatusOK {
				r.Status = "degraded"
			}
		}
	}
	if s.draining.Load() || s.hub.Closed() {
		r.Status, status = "shutting down", http.StatusServiceUnavailable
	}
	return c.JSON(status, r)
}

func (s *Server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", s.cfg.OpenAPI)
}
