package api

import (
	"net/http"

	"github.com/heraldchat/herald/store"
	"github.com/labstack/echo/v4"
)

func (id Identity) user() store.User { return store.User{ID: id.User, Name: id.Name} }

type createRoomRequest struct {
	Name    string `json:"name"`
	Private bool   `json:"private"`
}

func (s *Server) createRoom(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req createRoomRequest
	if err := decodeJSON(c, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := checkText("name", req.Name, s.cfg.MaxName, false); err != nil {
		return err
	}
	room, err := s.store.CreateRoom(c.Request().Context(), id.user(), req.Name, req.Private)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, room)
}

func (s *Server) listRooms(c echo.Context) error {
	rooms, err := s.store.Rooms(c.Request().Context(), identity(c).User)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"rooms": rooms})
}

// membership is the answer to join and add-member calls.
type membership struct {
	Room string `json:"room"`
	User string `json:"user"`
	// Changed is false when the user already was a member.
	Changed bool `json:"changed"`
}

func (s *Server) joinRoom(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	room := c.Param("room")
	joined, err := s.store.Join(c.Request().Context(), id.user(), room)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, membership{Room: room, User: id.User, Changed: joined})
}

func (s *Server) leaveRoom(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	room := c.Param("room")
	if err := s.store.Leave(c.Request().Context(), id.User, room); err != nil {
		return err
	}
	s.cfg.Typing.Stop(room, id.User)
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) listMembers(c echo.Context) error {
	ctx := c.Request().Context()
	members, err := s.store.Members(ctx, identity(c).User, c.Param("room"))
	if err != nil {
		return err
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.User
	}
	info, err := s.cfg.Presence.Lookup(ctx, ids)
	if err != nil {
		return err
	}
	views := make([]memberView, len(members))
	for i, m := range members {
		views[i] = memberView{Member: m, Status: info[i].Status, LastSeen: info[i].LastSeen}
	}
	return c.JSON(http.StatusOK, map[string]any{"members": views})
}

type addMemberRequest struct {
	User string `json:"user"`
}

func (s *Server) addMember(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req addMemberRequest
	if err := decodeJSON(c, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := checkID("user", req.User); err != nil {
		return err
	}
	room := c.Param("room")
	added, err := s.store.AddMember(c.Request().Context(), store.UserActor(id.User), room, store.User{ID: req.User})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if added {
		status = http.StatusCreated
	}
	return c.JSON(status, membership{Room: room, User: req.User, Changed: added})
}

func (s *Server) removeMember(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	room, user := c.Param("room"), c.Param("user")
	if err := s.store.RemoveMember(c.Request().Context(), store.UserActor(id.User), room, user); err != nil {
		return err
	}
	s.cfg.Typing.Stop(room, user)
	return c.NoContent(http.StatusNoContent)
}
