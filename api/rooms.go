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

func (r *createRoomRequest) check(cfg *Config) error {
	return checkText("name", r.Name, cfg.MaxName, false)
}

func (s *Server) createRoom(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req createRoomRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
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
	// Changed is false when the user already was a member, or was only
	// invited.
	Changed bool `json:"changed"`
	// Invited says the user was asked rather than added: they are a
	// member once they accept.
	Invited bool `json:"invited,omitempty"`
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
	err := s.endTyping(room, id.User, func() error { return s.store.Leave(c.Request().Context(), id.User, room) })
	if err != nil {
		return err
	}
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

func (r *addMemberRequest) check(*Config) error { return checkUserID("user", r.User) }

// addMember lets a room's owner invite a user (202), or, with
// --member-adds direct, add them (201); 200 when they are a member
// already. An invitation is answered the same whether the user exists,
// was invited before, or declined: the owner learns nothing about them.
func (s *Server) addMember(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req addMemberRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	room := c.Param("room")
	if !s.cfg.DirectAdds {
		member, err := s.store.Invite(c.Request().Context(), store.UserActor(id.User), room, req.User)
		if err != nil {
			return err
		}
		if member {
			return c.JSON(http.StatusOK, membership{Room: room, User: req.User})
		}
		return c.JSON(http.StatusAccepted, membership{Room: room, User: req.User, Invited: true})
	}
	added, err := s.store.AddMember(c.Request().Context(), store.UserActor(id.User), room, store.User{ID: req.User})
	if err != nil {
		return err
	}
	return c.JSON(createdOr200(added), membership{Room: room, User: req.User, Changed: added})
}

// removeMember lets a room's owner remove a member, or withdraw the
// invitation of a user who is not one: 204.
func (s *Server) removeMember(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	room, user := c.Param("room"), c.Param("user")
	err := s.endTyping(room, user, func() error {
		return s.store.RemoveMember(c.Request().Context(), store.UserActor(id.User), room, user)
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) getRoom(c echo.Context) error {
	room, err := s.store.RoomDetails(c.Request().Context(), identity(c).User, c.Param("room"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, room)
}

// updateRoomRequest sets the fields present; null or absent leaves one as
// it is.
type updateRoomRequest struct {
	Name  *string `json:"name"`
	Topic *string `json:"topic"`
	Owner *string `json:"owner"`
}

// check checks an update's fields: an empty topic clears it.
func (r *updateRoomRequest) check(cfg *Config) error {
	if r.Name == nil && r.Topic == nil && r.Owner == nil {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "give name, topic or owner")
	}
	if r.Name != nil {
		if err := checkText("name", *r.Name, cfg.MaxName, false); err != nil {
			return err
		}
	}
	if r.Topic != nil && *r.Topic != "" {
		if err := checkText("topic", *r.Topic, cfg.MaxTopic, false); err != nil {
			return err
		}
	}
	if r.Owner != nil {
		return checkUserID("owner", *r.Owner)
	}
	return nil
}

// roomChange reads and checks an update.
func (s *Server) roomChange(c echo.Context) (store.RoomChange, error) {
	var req updateRoomRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return store.RoomChange{}, err
	}
	return store.RoomChange{Name: req.Name, Topic: req.Topic, Owner: req.Owner}, nil
}

// updateRoom lets the owner rename the room, set its topic (empty clears
// it) or hand it to another member: 200 with the room.
func (s *Server) updateRoom(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	ch, err := s.roomChange(c)
	if err != nil {
		return err
	}
	room, _, err := s.store.UpdateRoom(c.Request().Context(), store.UserActor(id.User), c.Param("room"), ch)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, room)
}

// deleteRoom lets the owner close the room: 204.
func (s *Server) deleteRoom(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	if err := s.store.DeleteRoom(c.Request().Context(), store.UserActor(id.User), c.Param("room")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type openDMRequest struct {
	User string `json:"user"`
}

func (r *openDMRequest) check(*Config) error { return checkUserID("user", r.User) }

// openDM answers the caller's direct conversation with a user: 201 when
// this call created it, 200 when it existed. Unless --member-adds is
// direct, the user is invited to it: the answer is the same whether they
// exist or not.
func (s *Server) openDM(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	var req openDMRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	room, created, err := s.store.OpenDM(c.Request().Context(), id.user(), req.User, !s.cfg.DirectAdds)
	if err != nil {
		return err
	}
	return c.JSON(createdOr200(created), room)
}

// listInvitations answers the caller's open invitations, the newest first.
func (s *Server) listInvitations(c echo.Context) error {
	invs, err := s.store.Invitations(c.Request().Context(), identity(c).User)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"invitations": invs})
}

// declineInvitation declines the caller's open invitation to a room: 204.
// Joining the room accepts it.
func (s *Server) declineInvitation(c echo.Context) error {
	id := identity(c)
	if err := s.limiter.allow(c.Request().Context(), id.User, actionWrite); err != nil {
		return err
	}
	if err := s.store.Decline(c.Request().Context(), id.User, c.Param("room")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
