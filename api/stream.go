package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/heraldchat/herald/stream"
	"github.com/labstack/echo/v4"
)

type ticketResponse struct {
	Ticket    string `json:"ticket"`
	ExpiresIn int    `json:"expires_in"` // seconds
}

// createTicket issues a short-lived, single-use ticket for EventSource,
// which cannot send an Authorization header.
func (s *Server) createTicket(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, ticketResponse{
		Ticket:    s.auth.Ticket(id, s.cfg.TicketTTL),
		ExpiresIn: int(min(s.cfg.TicketTTL, time.Until(id.Expires)) / time.Second),
	})
}

// streamHandler authenticates a stream by Authorization header, or by
// ticket. A fresh ticket is spent and sets the stream cookie; a spent or
// expired ticket is accepted only with a valid stream cookie of the same
// user, which is how an EventSource reconnecting with its original URL gets
// back in.
func (s *Server) streamHandler(c echo.Context) error {
	r := c.Request()
	var id Identity
	if token, ok := bearer(r); ok {
		v, err := s.auth.Verify(token)
		if err != nil {
			return s.refuseToken(c, err)
		}
		id = v
	} else if ticket := c.QueryParam("ticket"); ticket != "" {
		p, fresh, err := s.auth.redeem(ticket)
		if err != nil {
			return errorf(http.StatusUnauthorized, "invalid_ticket", "the ticket is invalid")
		}
		if fresh && s.cfg.Tickets != nil {
			// Spent in memory first; now where it lasts (the store, or
			// Redis for the whole cluster). While that is out of reach, the
			// memory's record holds.
			shared, err := s.cfg.Tickets.SpendTicket(r.Context(), p.Nonce, time.Unix(p.Expires, 0))
			if err != nil {
				s.quiet.Warn("ticket record unavailable", "err", err)
			} else {
				fresh = shared
			}
		}
		if fresh {
			value, exp := s.auth.cookieFor(p, s.cfg.CookieTTL)
			c.SetCookie(s.streamCookie(value, exp, r.TLS != nil))
			id = Identity{User: p.User, Name: p.Name, Expires: exp}
		} else {
			ck, err := r.Cookie(streamCookie)
			if err != nil {
				return errorf(http.StatusUnauthorized, "invalid_ticket", "the ticket was already used or has expired")
			}
			cp, ok := s.auth.checkCookie(ck.Value)
			if !ok || cp.User != p.User {
				return errorf(http.StatusUnauthorized, "invalid_ticket", "the ticket was already used or has expired")
			}
			id = Identity{User: p.User, Name: p.Name, Expires: time.Unix(cp.Expires, 0)}
		}
		id.IssuedAt = p.Issued
	} else {
		return noBearer(r)
	}
	if err := s.checkRevoked(c, id); err != nil {
		return err
	}
	// Each open may replay much: opens are limited per user. A 429 would
	// make EventSource give up for good, so the answer is a retry hint.
	var limited *Error
	if err := s.limiter.allow(r.Context(), id.User, actionStream); errors.As(err, &limited) {
		s.hub.Refuse(c.Response(), "rate_limited", time.Duration(limited.RetryAfter)*time.Second)
		return nil
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = c.QueryParam("last_event_id")
	}
	// The stream ends when what let it in expires (the token, or the
	// stream cookie, which never outlives the token): the client comes
	// back with a fresh one and its Last-Event-ID.
	s.hub.Serve(c.Response(), r, stream.Subscriber{User: id.User, LastEventID: last, Expires: id.Expires, IssuedAt: id.IssuedAt})
	return nil
}

// checkRevoked refuses a stream whose token a disconnect's cut-off refuses,
// as committed: the client of a banned user reconnects at once, maybe to
// an instance whose hub has not read the disconnect yet. When the store
// does not answer, the hub's own cut-offs decide, and opening the stream
// fails anyway with the store.
func (s *Server) checkRevoked(c echo.Context, id Identity) error {
	before, err := s.store.RevokedBefore(c.Request().Context(), id.User)
	if err == nil && !before.IsZero() {
		s.hub.Revoke(id.User, before)
	}
	if s.hub.Revoked(id.User, id.IssuedAt) {
		return s.refuseToken(c, errRevoked)
	}
	return nil
}

// streamCookie is the cookie that lets the same user back into the
// stream. Served over TLS (--tls-cert), it is Secure.
func (s *Server) streamCookie(value string, exp time.Time, tls bool) *http.Cookie {
	ck := &http.Cookie{
		Name: streamCookie, Value: value, Path: "/v1/stream", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: tls,
	}
	if len(s.cfg.CORSOrigins) > 0 {
		// Another origin's EventSource (withCredentials) sends it only then.
		ck.SameSite, ck.Secure = http.SameSiteNoneMode, true
	}
	return ck
}
