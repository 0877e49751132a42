package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/heraldchat/herald/store"
	"github.com/labstack/echo/v4"
)

// Error is a failure the client caused or must act on, with its HTTP status
// and a stable snake_case code.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter int // seconds, for 429

	// Challenge is the WWW-Authenticate header of a 401; when empty, the
	// bare challenge, Bearer realm="herald".
	Challenge string
}

func (e *Error) Error() string { return e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errors used by several handlers.
var (
	errUnauthenticated = errorf(http.StatusUnauthorized, "unauthenticated", "a valid bearer token is required")
	errBearerFormat    = errorf(http.StatusUnauthorized, "unauthenticated", "the Authorization header must be the word Bearer, a space and the token, as in Authorization: Bearer eyJhbGciOi...")
)

// challenge is the WWW-Authenticate of every 401 (RFC 6750): the realm,
// and for a bearer token that was refused, why.
const challenge = `Bearer realm="herald"`

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// createdOr200 is the status of a request that is safe to repeat: 201 when
// it created what it names, 200 when that already existed (a retry, or
// someone else's earlier call), with the same body either way.
func createdOr200(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// statusOf maps the store's kinds of error to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, store.ErrInvalid):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// StatusClientClosedRequest is the status recorded for a request whose
// client went away before its answer: nginx's 499, which HTTP lacks.
const StatusClientClosedRequest = 499

// handleError is the one place where errors become HTTP answers. Internal
// failures are logged with the request id; the client gets a generic message.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var (
		apiErr   *Error
		storeErr *store.Error
		httpErr  *echo.HTTPError
		body     errorDetail
		status   int
	)
	switch {
	case errors.As(err, &apiErr):
		status, body = apiErr.Status, errorDetail{apiErr.Code, apiErr.Message}
		if apiErr.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(apiErr.RetryAfter))
		}
	case errors.As(err, &storeErr) && statusOf(storeErr) != http.StatusInternalServerError:
		status, body = statusOf(storeErr), errorDetail{storeErr.Code, storeErr.Message}
	case c.Request().Context().Err() != nil:
		// The client went away while its request ran, and what failed
		// was the work it no longer waits for: not the server's failure.
		// Nobody reads the answer; it is counted as 499, the status
		// proxies log for a client that closed its request.
		s.logger.LogAttrs(c.Request().Context(), slog.LevelDebug, "client went away",
			slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.String("method", c.Request().Method),
			slog.String("path", c.Path()),
			slog.String("err", err.Error()))
		c.NoContent(StatusClientClosedRequest)
		return
	case errors.Is(err, store.ErrUnavailable):
		// The database is down or restarting, its disk is full, another
		// process holds its lock: nothing was changed, and the client may
		// retry. Each of these ends by itself or by an operator's hand,
		// never by the client's.
		status, body = http.StatusServiceUnavailable, errorDetail{"unavailable", "the service is briefly unavailable; retry shortly"}
		c.Response().Header().Set("Retry-After", "1")
		reason := unavailableReason(err)
		s.metrics.storeUnavailable(reason)
		s.logger.LogAttrs(c.Request().Context(), slog.LevelWarn, "database unavailable",
			slog.String("reason", reason),
			slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.String("method", c.Request().Method),
			slog.String("path", c.Path()),
			slog.String("err", err.Error()))
	case errors.As(err, &httpErr) && httpErr.Code < 500:
		// The router's own answers: unknown route, wrong method.
		status = httpErr.Code
		body = errorDetail{codeForStatus(status), strings.ToLower(http.StatusText(status))}
	default:
		status = http.StatusInternalServerError
		body = errorDetail{"internal", "internal server error"}
		s.logger.LogAttrs(c.Request().Context(), slog.LevelError, "request failed",
			slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			slog.String("method", c.Request().Method),
			slog.String("path", c.Path()),
			slog.String("err", err.Error()))
	}
	if status == http.StatusUnauthorized {
		ch := challenge
		if apiErr != nil && apiErr.Challenge != "" {
			ch = apiErr.Challenge
		}
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, ch)
	}
	if c.Request().Method == http.MethodHead {
		c.NoContent(status)
		return
	}
	c.JSON(status, errorBody{body})
}

// unavailableReason names the kind of a store.ErrUnavailable, for the
// metric, the log and readiness: disk_full, locked or unavailable (out of
// reach, or failing otherwise).
func unavailableReason(err error) string {
	switch {
	case errors.Is(err, store.ErrDiskFull):
		return "disk_full"
	case errors.Is(err, store.ErrLocked):
		return "locked"
	}
	return "unavailable"
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	}
	return "bad_request"
}
