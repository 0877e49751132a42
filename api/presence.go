package api

import (
	"context"
	"errors"
	"hash/fnv"
	"net/http"
	"sync"
	"time"

	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/stream"
	"github.com/labstack/echo/v4"
)

// Presence is what the API needs of presence tracking; the embedded
// tracker is stream.Presence.
type Presence interface {
	Lookup(ctx context.Context, users []string) ([]stream.PresenceInfo, error)
	SetStatus(ctx context.Context, user, status string) error
}

// Typing is what the API needs of typing indicators; the embedded tracker
// is stream.Typing.
type Typing interface {
	Set(room, user, name string, typing bool)
	Stop(room, user string)
}

// maxPresenceUsers caps the users of one presence query.
const maxPresenceUsers = 100

var errUserNotFound = errorf(http.StatusNotFound, "user_not_found", "no such user among the people you share a room with")

// getPresence answers the presence of users who share a room with the
// caller. Anyone else is refused exactly like a user who does not exist.
func (s *Server) getPresence(c echo.Context) error {
	id := identity(c)
	users := c.QueryParams()["user"]
	if len(users) == 0 {
		return errorf(http.StatusUnprocessableEntity, "invalid_parameter", "give at least one user parameter")
	}
	if len(users) > maxPresenceUsers {
		return errorf(http.StatusUnprocessableEntity, "invalid_parameter", "at most %d users per query", maxPresenceUsers)
	}
	ctx := c.Request().Context()
	for _, u := range users {
		if u == id.User {
			continue
		}
		ok, err := s.store.SharesRoom(ctx, id.User, u)
		if err != nil {
			return err
		}
		if !ok {
			return errUserNotFound
		}
	}
	info, err := s.cfg.Presence.Lookup(ctx, users)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"presence": info})
}

type statusRequest struct {
	Status string `json:"status"`
}

func (r *statusRequest) check(*Config) error {
	switch r.Status {
	case stream.StatusOnline, stream.StatusAway, stream.StatusDND:
		return nil
	}
	return errorf(http.StatusUnprocessableEntity, "invalid_field", "status must be online, away or dnd")
}

// setStatus sets the caller's explicit status while they have a stream open.
func (s *Server) setStatus(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req statusRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	err := s.cfg.Presence.SetStatus(c.Request().Context(), id.User, req.Status)
	if errors.Is(err, stream.ErrOffline) {
		return errorf(http.StatusConflict, "not_connected", "open a stream before setting a status")
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type typingRequest struct {
	Typing *bool `json:"typing"`
}

func (r *typingRequest) check(*Config) error {
	if r.Typing == nil {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "typing must be true or false")
	}
	return nil
}

func (s *Server) setTyping(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionTyping); err != nil {
		return err
	}
	var req typingRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	room := c.Param("room")
	ctx := c.Request().Context()
	err := s.typingLocks.with(room, id.User, func() error {
		if err := s.store.CheckMember(ctx, id.User, room); err != nil {
			return err
		}
		s.cfg.Typing.Set(room, id.User, id.Name, *req.Typing)
		return nil
	})
	if err != nil {
		return err
	}
	if *req.Typing && s.store.CheckMember(ctx, id.User, room) != nil {
		// Left or removed on another instance of a cluster between the
		// check and the start, whose lock this one does not share: stop
		// now rather than at the timeout.
		s.cfg.Typing.Stop(room, id.User)
	}
	return c.NoContent(http.StatusNoContent)
}

// typingLocks serializes, for one user in one room, a typing ping's
// membership check and start with the leave or removal that ends the
// user's typing there. Without it a ping checked just before a leave
// commits starts typing just after it: typing:started after member:left,
// stuck until the timeout. Locks are striped by a hash of the pair, so
// they take no memory per user.
type typingLocks [64]sync.Mutex

func (l *typingLocks) with(room, user string, fn func() error) error {
	h := fnv.New32a()
	h.Write([]byte(room))
	h.Write([]byte{0})
	h.Write([]byte(user))
	mu := &l[h.Sum32()%uint32(len(l))]
	mu.Lock()
	defer mu.Unlock()
	return fn()
}

// endTyping runs change, which makes user leave room, and once it
// committed ends the user's typing there, with no ping in between: no
// typing:started follows member:left. A change refused stops nothing, so
// a failed removal cannot clear someone else's indicator.
func (s *Server) endTyping(room, user string, change func() error) error {
	return s.typingLocks.with(room, user, func() error {
		if err := change(); err != nil {
			return err
		}
		s.cfg.Typing.Stop(room, user)
		return nil
	})
}

type readRequest struct {
	MessageID *int64 `json:"message_id"`
}

func (r *readRequest) check(*Config) error {
	if r.MessageID == nil || *r.MessageID <= 0 {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "message_id must be a positive integer")
	}
	return nil
}

func (s *Server) markRead(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req readRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	if _, err := s.store.MarkRead(c.Request().Context(), id.User, c.Param("room"), *req.MessageID); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listReceipts(c echo.Context) error {
	receipts, err := s.store.Receipts(c.Request().Context(), identity(c).User, c.Param("room"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"receipts": receipts})
}

// memberView is a member with their presence.
type memberView struct {
	store.Member
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen"`
}
