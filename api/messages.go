package api

import (
	"net/http"
	"strconv"

	"github.com/heraldchat/herald/store"
	"github.com/labstack/echo/v4"
)

type postMessageRequest struct {
	Text     string `json:"text"`
	ClientID string `json:"client_id"`
}

func (r *postMessageRequest) check(cfg *Config) error {
	if err := checkText("text", r.Text, cfg.MaxText, true); err != nil {
		return err
	}
	if r.ClientID != "" {
		return checkID("client_id", r.ClientID)
	}
	return nil
}

// postMessage answers 201 with the stored message, or 200 with the original
// when the author already posted this client_id in the room.
func (s *Server) postMessage(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionMessage); err != nil {
		return err
	}
	var req postMessageRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	msg, created, err := s.store.PostMessage(c.Request().Context(), id.user(), c.Param("room"), req.Text, req.ClientID)
	if err != nil {
		return err
	}
	if created {
		// Sending a message ends the author's typing in that room.
		s.cfg.Typing.Stop(msg.Room, id.User)
	}
	return c.JSON(createdOr200(created), msg)
}

func (s *Server) listMessages(c echo.Context) error {
	before, err := queryInt(c, "before")
	if err != nil {
		return err
	}
	after, err := queryInt(c, "after")
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		return err
	}
	if c.QueryParam("limit") == "" {
		limit = int64(s.cfg.HistoryLimit)
	}
	if limit < 1 || limit > int64(s.cfg.MaxHistory) {
		return errorf(http.StatusUnprocessableEntity, "invalid_parameter", "limit must be between 1 and %d", s.cfg.MaxHistory)
	}
	msgs, more, err := s.store.Messages(c.Request().Context(), identity(c).User, c.Param("room"),
		store.HistoryQuery{Before: before, After: after, Limit: int(limit)})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"messages": msgs, "has_more": more})
}

type editMessageRequest struct {
	Text string `json:"text"`
}

// check checks an edit's text, as a post's.
func (r *editMessageRequest) check(cfg *Config) error {
	return checkText("text", r.Text, cfg.MaxText, true)
}

// messageID reads the message id of the path; one that is not a positive
// integer names no message.
func messageID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrMessageNotFound
	}
	return id, nil
}

// editMessage lets an author replace their message's text: 200 with the
// message, its edited_at set.
func (s *Server) editMessage(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionMessage); err != nil {
		return err
	}
	msgID, err := messageID(c)
	if err != nil {
		return err
	}
	text, err := s.editText(c)
	if err != nil {
		return err
	}
	msg, _, err := s.store.EditMessage(c.Request().Context(), store.UserActor(id.User), c.Param("room"), msgID, text, s.cfg.EditWindow)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}

// editText reads and checks an edit's text.
func (s *Server) editText(c echo.Context) (string, error) {
	var req editMessageRequest
	return req.Text, decodeRequest(c, &s.cfg, &req)
}

// deleteMessage lets an author or the room's owner delete a message: 200
// with its tombstone.
func (s *Server) deleteMessage(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	msgID, err := messageID(c)
	if err != nil {
		return err
	}
	msg, _, err := s.store.DeleteMessage(c.Request().Context(), store.UserActor(id.User), c.Param("room"), msgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}
