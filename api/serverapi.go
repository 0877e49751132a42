package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/heraldchat/herald/store"
	"github.com/labstack/echo/v4"
)

// The server API: what the app's backend (the one that mints the tokens)
// does, under /v1/server, authenticated by an API key rather than a
// user's token. It provisions rooms and members, posts as a user or as
// the system, edits and deletes any message, publishes custom events and
// disconnects users. Its changes go through the same log as the users':
// ordered, durable, replayable, routed by membership.

// serverPrefix starts the path of every server API route.
const serverPrefix = "/v1/server/"

func (s *Server) serverRoutes(e *echo.Echo) {
	// Each route's one write carries the request's id, if it has one.
	sv := func(method, path string, h echo.HandlerFunc) {
		e.Add(method, "/v1/server"+path, h, s.authenticateKey, s.idempotent)
	}
	sv(http.MethodPost, "/rooms", s.provisionRoom)
	sv(http.MethodPatch, "/rooms/:room", s.serverUpdateRoom)
	sv(http.MethodDelete, "/rooms/:room", s.serverDeleteRoom)
	sv(http.MethodPost, "/rooms/:room/members", s.serverAddMember)
	sv(http.MethodDelete, "/rooms/:room/members/:user", s.serverRemoveMember)
	sv(http.MethodPost, "/rooms/:room/messages", s.serverPostMessage)
	sv(http.MethodPatch, "/rooms/:room/messages/:id", s.serverEditMessage)
	sv(http.MethodDelete, "/rooms/:room/messages/:id", s.serverDeleteMessage)
	sv(http.MethodPost, "/publish", s.publish)
	sv(http.MethodPost, "/users/:user/disconnect", s.disconnectUser)
}

// apiKeys are the digests of the accepted API keys.
type apiKeys [][sha256.Size]byte

func newAPIKeys(keys []string) apiKeys {
	out := make(apiKeys, len(keys))
	for i, k := range keys {
		out[i] = sha256.Sum256([]byte(k))
	}
	return out
}

// valid reports whether key is one of k. It compares digests, so that the
// time taken does not depend on how much of a key matches nor on its
// length, and compares with every key, so that it does not depend on
// which one matches; a missing key is the empty one, compared the same
// way, so that a wrong key and a missing one take the same time.
func (k apiKeys) valid(key string) bool {
	sum := sha256.Sum256([]byte(key))
	match := 0
	for _, want := range k {
		match |= subtle.ConstantTimeCompare(sum[:], want[:])
	}
	return match == 1
}

// errAPIKey is the answer to a request of the server API without a valid
// key, whether the key is missing, wrong or rotated out.
var errAPIKey = &Error{Status: http.StatusUnauthorized, Code: "invalid_api_key",
	Message: "the server API needs a valid key in the X-API-Key header", Challenge: `ApiKey realm="herald", header="X-API-Key"`}

// authenticateKey is the middleware of the server API. A refused key is
// logged at info, without the key.
func (s *Server) authenticateKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.keys.valid(c.Request().Header.Get("X-API-Key")) {
			s.logger.LogAttrs(c.Request().Context(), slog.LevelInfo, "api key refused",
				slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
				slog.String("method", c.Request().Method),
				slog.String("path", c.Path()))
			return errAPIKey
		}
		return next(c)
	}
}

// ServerAPIHandler serves the server API alone (and /healthz), for a
// listener of its own that never faces the internet; PublicHandler then
// serves everything else.
func (s *Server) ServerAPIHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := echo.GetPath(r); strings.HasPrefix(p, serverPrefix) || p == "/healthz" {
			s.echo.ServeHTTP(w, r)
			return
		}
		notFound(w)
	})
}

// PublicHandler serves everything but the server API, when the server API
// has a listener of its own.
func (s *Server) PublicHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(echo.GetPath(r), serverPrefix) {
			notFound(w)
			return
		}
		s.echo.ServeHTTP(w, r)
	})
}

func notFound(w http.ResponseWriter) {
	w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	w.WriteHeader(http.StatusNotFound)
	json.NewEncoder(w).Encode(errorBody{errorDetail{"not_found", "not found"}})
}

// The request id of a server API request is its Idempotency-Key header.
// The store records it in the transaction of the request's change, and
// the answer after: a retry with the same id (the first one timed out,
// say) is answered as the first was, and changes nothing.
const requestIDHeader = "Idempotency-Key"

var (
	errRequestReused = errorf(http.StatusUnprocessableEntity, "request_id_reused",
		"this %s was used for another request: a request id names one request", requestIDHeader)
	errRequestInFlight = &Error{Status: http.StatusConflict, Code: "request_in_progress", RetryAfter: 1,
		Message: "a request with this id is in progress, or its answer was lost as it completed: its change is made; retry to get its answer"}
)

// idempotent is the middleware that makes a server API request with an id
// happen once: its handler's write carries the id, and its answer is
// recorded; a request whose id was recorded gets the recorded answer.
func (s *Server) idempotent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(requestIDHeader)
		if id == "" {
			return next(c)
		}
		if err := checkID(requestIDHeader, id); err != nil {
			return err
		}
		r := c.Request()
		body, err := readBody(c, s.cfg.MaxBody)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		digest := sha256.New()
		digest.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
		digest.Write(body)
		fingerprint := hex.EncodeToString(digest.Sum(nil))
		c.SetRequest(r.WithContext(store.WithRequest(r.Context(), store.Request{ID: id, Fingerprint: fingerprint})))

		rec := &recorder{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		err = next(c)
		c.Response().Writer = rec.ResponseWriter
		if errors.Is(err, store.ErrRequestSeen) {
			return s.replayAnswer(c, id, fingerprint)
		}
		if err == nil && rec.status > 0 && rec.status < 500 {
			// The change committed: its answer is what a retry gets. A
			// failure to record it leaves the retry a 409, never a second
			// change.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
			defer cancel()
			if err := s.store.SaveAnswer(ctx, id, rec.status, rec.body.Bytes()); err != nil {
				s.logger.Warn("record a server request's answer", "err", err,
					"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
			}
		}
		return err
	}
}

// replayAnswer answers a request whose id was recorded.
func (s *Server) replayAnswer(c echo.Context, id, fingerprint string) error {
	ans, err := s.store.FindAnswer(c.Request().Context(), id)
	switch {
	case err != nil:
		return err
	case ans.Fingerprint != fingerprint:
		return errRequestReused
	case ans.Status == 0:
		return errRequestInFlight
	}
	c.Response().Header().Set("Idempotent-Replayed", "true")
	if len(ans.Body) == 0 {
		return c.NoContent(ans.Status)
	}
	return c.Blob(ans.Status, echo.MIMEApplicationJSON, ans.Body)
}

// recorder keeps a copy of an answer's status and body.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// maxProvisionMembers caps the members of one provisioning request.
const maxProvisionMembers = 1000

type provisionRequest struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Topic   string   `json:"topic"`
	Private bool     `json:"private"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
}

func (r *provisionRequest) check(cfg *Config) error {
	if r.ID != "" {
		if err := checkRoomID(r.ID); err != nil {
			return err
		}
	}
	if err := checkText("name", r.Name, cfg.MaxName, false); err != nil {
		return err
	}
	if r.Topic != "" {
		if err := checkText("topic", r.Topic, cfg.MaxTopic, false); err != nil {
			return err
		}
	}
	if len(r.Members) > maxProvisionMembers {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "at most %d members per request", maxProvisionMembers)
	}
	if r.Owner != "" {
		if err := checkUserID("owner", r.Owner); err != nil {
			return err
		}
	}
	for _, m := range r.Members {
		if err := checkUserID("members", m); err != nil {
			return err
		}
	}
	return nil
}

// provisionRoom creates a room (201), or finds the room of that id with
// the same settings (200); either way the members given are members.
func (s *Server) provisionRoom(c echo.Context) error {
	var req provisionRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	p := store.Provision{ID: req.ID, Name: req.Name, Topic: req.Topic, Private: req.Private}
	if req.Owner != "" {
		p.Owner = &store.User{ID: req.Owner}
	}
	for _, m := range req.Members {
		p.Members = append(p.Members, store.User{ID: m})
	}
	room, created, err := s.store.ProvisionRoom(c.Request().Context(), p)
	if err != nil {
		return err
	}
	return c.JSON(createdOr200(created), room)
}

// checkRoomID validates a room id chosen by the app: it goes in paths, so
// 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter
// or digit.
func checkRoomID(id string) error {
	ok := id != "" && len(id) <= 128
	for i, r := range id {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._:-", r)) {
			ok = false
		}
	}
	if !ok {
		return errorf(http.StatusUnprocessableEntity, "invalid_field",
			"id must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
	}
	return nil
}

func (s *Server) serverUpdateRoom(c echo.Context) error {
	ch, err := s.roomChange(c)
	if err != nil {
		return err
	}
	room, _, err := s.store.UpdateRoom(c.Request().Context(), store.Admin, c.Param("room"), ch)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, room)
}

func (s *Server) serverDeleteRoom(c echo.Context) error {
	if err := s.store.DeleteRoom(c.Request().Context(), store.Admin, c.Param("room")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) serverAddMember(c echo.Context) error {
	var req addMemberRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	room := c.Param("room")
	added, err := s.store.AddMember(c.Request().Context(), store.Admin, room, store.User{ID: req.User})
	if err != nil {
		return err
	}
	return c.JSON(createdOr200(added), membership{Room: room, User: req.User, Changed: added})
}

// serverRemoveMember removes any member, the owner included: 200, with
// changed false when the user was not a member, so that a retry is not an
// error.
func (s *Server) serverRemoveMember(c echo.Context) error {
	room, user := c.Param("room"), c.Param("user")
	err := s.endTyping(room, user, func() error {
		return s.store.RemoveMember(c.Request().Context(), store.Admin, room, user)
	})
	if err != nil && !errors.Is(err, store.ErrMemberNotFound) {
		return err
	}
	return c.JSON(http.StatusOK, membership{Room: room, User: user, Changed: err == nil})
}

type serverPostRequest struct {
	Text     string `json:"text"`
	User     string `json:"user"`
	ClientID string `json:"client_id"`
}

func (r *serverPostRequest) check(cfg *Config) error {
	if err := checkText("text", r.Text, cfg.MaxText, true); err != nil {
		return err
	}
	if r.User != "" {
		if err := checkUserID("user", r.User); err != nil {
			return err
		}
	}
	if r.ClientID != "" {
		return checkID("client_id", r.ClientID)
	}
	return nil
}

// serverPostMessage posts as a member, or, without user, as the system
// (a message with "system": true and no author), in any room.
func (s *Server) serverPostMessage(c echo.Context) error {
	var req serverPostRequest
	if err := decodeRequest(c, &s.cfg, &req); err != nil {
		return err
	}
	author := store.User{ID: store.System}
	if req.User != "" {
		author.ID = req.User
	}
	msg, created, err := s.store.PostMessage(c.Request().Context(), author, c.Param("room"), req.Text, req.ClientID)
	if err != nil {
		return err
	}
	if created && author.ID != store.System {
		s.cfg.Typing.Stop(msg.Room, author.ID)
	}
	return c.JSON(createdOr200(created), msg)
}

func (s *Server) serverEditMessage(c echo.Context) error {
	msgID, err := messageID(c)
	if err != nil {
		return err
	}
	text, err := s.editText(c)
	if err != nil {
		return err
	}
	msg, _, err := s.store.EditMessage(c.Request().Context(), store.Admin, c.Param("room"), msgID, text, 0)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}

func (s *Server) serverDeleteMessage(c echo.Context) error {
	msgID, err := messageID(c)
	if err != nil {
		return err
	}
	msg, _, err := s.store.DeleteMessage(c.Request().Context(), store.Admin, c.Param("room"), msgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, msg)
}

type publishRequest struct {
	Room  string          `json:"room"`
	User  string          `json:"user"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// maxEventName caps a custom event's name.
const maxEventName = 64

// publish logs a custom event for a room's members or one user's streams:
// 204 once it is committed.
func (s *Server) publish(c echo.Context) error {
	var req publishRequest
	if err := decodeJSON(c, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if (req.Room == "") == (req.User == "") {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "give room or user, not both")
	}
	if req.User != "" {
		if err := checkUserID("user", req.User); err != nil {
			return err
		}
	}
	if err := checkID("event", req.Event); err != nil || len(req.Event) > maxEventName {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "event must be 1 to %d bytes without spaces or control characters", maxEventName)
	}
	// One line, as every event's data is.
	var data bytes.Buffer
	if len(req.Data) > 0 {
		if err := json.Compact(&data, req.Data); err != nil {
			return errorf(http.StatusBadRequest, "malformed_json", "data is not valid JSON")
		}
	}
	if err := s.store.Publish(c.Request().Context(), req.Room, req.User, req.Event, data.Bytes()); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type disconnectRequest struct {
	RevokeBefore string `json:"revoke_before"`
}

// disconnectUser closes every stream of a user, on every instance, and
// with revoke_before refuses from then on the user's tokens issued before
// it: 204. The body is optional.
func (s *Server) disconnectUser(c echo.Context) error {
	user := c.Param("user")
	if err := checkUserID("user", user); err != nil {
		return err
	}
	var req disconnectRequest
	if err := decodeOptionalJSON(c, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	var cut time.Time
	if req.RevokeBefore != "" {
		t, err := time.Parse(time.RFC3339Nano, req.RevokeBefore)
		if err != nil || t.Unix() <= 0 {
			return errorf(http.StatusUnprocessableEntity, "invalid_field", "revoke_before must be an RFC 3339 time after 1970, such as 2026-01-02T15:04:05Z")
		}
		cut = t
	}
	if err := s.store.Disconnect(c.Request().Context(), user, cut); err != nil {
		return err
	}
	if !cut.IsZero() {
		// At once on this instance; the others as they read the log.
		s.hub.Revoke(user, cut)
	}
	return c.NoContent(http.StatusNoContent)
}
