package main

// End-to-end tests of the server API (issue 12): the app's backend
// provisions rooms, posts, publishes custom events and disconnects users,
// with API keys, over a real server and real SSE clients.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldchat/herald/stream/streamtest"
)

// Two API keys, as during a rotation.
const (
	apiKeyOld = "old-key-0123456789abcdef0123456789abcdef"
	apiKeyNew = "new-key-0123456789abcdef0123456789abcdef"
)

// serverEnv is a server's settings with the server API on, both keys valid.
func serverEnv(extra ...string) map[string]string {
	env := map[string]string{"HERALD_API_KEYS": apiKeyOld + "," + apiKeyNew}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// server calls the server API with key and fails the test unless the
// status is want; it decodes a JSON answer into out when out is not nil.
func (sc *streamScene) server(key string, want int, method, path string, body, out any) []byte {
	sc.t.Helper()
	resp, data := sc.serverResp(key, method, path, body, nil)
	if resp.StatusCode != want {
		sc.t.Fatalf("%s %s = %d %s; want %d", method, path, resp.StatusCode, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			sc.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return data
}

func (sc *streamScene) serverResp(key, method, path string, body any, header http.Header) (*http.Response, []byte) {
	sc.t.Helper()
	h := http.Header{}
	for k, v := range header {
		h[k] = v
	}
	if key != "" {
		h.Set("X-API-Key", key)
	}
	return sc.doResp(method, path, "", body, h)
}

// The backend provisions a support room for an order with a customer in
// it, posts as the system and as the agent, edits and deletes any message,
// and removes the customer; the members' streams get it all, in order,
// live and by replay, and the removed customer nothing after.
func TestServerAPIRooms(t *testing.T) {
	sc := newStreamScene(t, serverEnv())
	sc.room("agent", "desk", false) // the agent is known
	cust := sc.open("customer", "")

	var room chatRoom
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms",
		map[string]any{"id": "order-1234", "name": "Order 1234", "private": true, "members": []string{"customer", "agent"}}, &room)
	if room.ID != "order-1234" || room.Kind != "room" || !room.Private || room.Owner != nil {
		t.Fatalf("provisioned room = %+v; want order-1234, private, owned by no user", room)
	}
	// Again, the same: 200, the same room, a member added.
	sc.server(apiKeyOld, http.StatusOK, "POST", "/v1/server/rooms",
		map[string]any{"id": "order-1234", "name": "Order 1234", "private": true, "members": []string{"customer", "agent", "lead"}}, &room)
	agent := sc.open("agent", "")
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms/order-1234/messages", map[string]string{"text": "start"}, nil)
	sseEventsBefore(t, agent, "start")
	from := agent.LastID

	var sys chatMessage
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms/order-1234/messages", map[string]string{"text": "Your order shipped"}, &sys)
	if !sys.System || sys.User != "" {
		t.Errorf("system message = %+v; want system, no user", sys)
	}
	var asAgent chatMessage
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms/order-1234/messages",
		map[string]string{"text": "Hi, I'm here", "user": "agent", "client_id": "a-1"}, &asAgent)
	sc.server(apiKeyNew, http.StatusOK, "POST", "/v1/server/rooms/order-1234/messages",
		map[string]string{"text": "Hi, I'm here", "user": "agent", "client_id": "a-1"}, nil) // a retry
	custMsg := sc.say("customer", "order-1234", "where is it?")
	sc.server(apiKeyNew, http.StatusOK, "PATCH", fmt.Sprintf("/v1/server/rooms/order-1234/messages/%d", custMsg), map[string]string{"text": "where is it? [edited]"}, nil)
	sc.server(apiKeyNew, http.StatusOK, "DELETE", fmt.Sprintf("/v1/server/rooms/order-1234/messages/%d", sys.ID), nil, nil)
	sc.server(apiKeyNew, http.StatusOK, "PATCH", "/v1/server/rooms/order-1234", map[string]string{"topic": "refund"}, nil)
	var removed struct {
		Changed bool `json:"changed"`
	}
	sc.server(apiKeyNew, http.StatusOK, "DELETE", "/v1/server/rooms/order-1234/members/customer", nil, &removed)
	if !removed.Changed {
		t.Errorf("removing the customer: changed false; want true")
	}
	sc.server(apiKeyNew, http.StatusOK, "DELETE", "/v1/server/rooms/order-1234/members/customer", nil, &removed)
	if removed.Changed {
		t.Errorf("removing the customer again: changed true; want false")
	}
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms/order-1234/messages", map[string]string{"text": "closed"}, nil)
	mark := sc.room("customer", "mine", false) // the customer's marker: in a room of her own
	sc.say("customer", mark, "marker")

	names := map[string]string{"order-1234": "order", mark: "mine"}
	ids := map[int64]string{sys.ID: "sys", custMsg: "cust"}
	want := []string{
		`created order "Your order shipped" (system)`, `created order "Hi, I'm here"`, `created order "where is it?"`,
		`updated order cust "where is it? [edited]"`, "deleted order sys",
		`room:updated order "Order 1234" "refund"`,
		"member:left order customer removed",
	}
	if got := chatUntil(t, agent, "closed", names, ids); !slices.Equal(got, want) {
		t.Errorf("the agent's stream = %q; want %q", got, want)
	}
	got := chatUntil(t, cust, "marker", names, ids)
	i := slices.Index(got, `created order "Your order shipped" (system)`)
	if i < 0 || !slices.Equal(got[i:], append(want, "member:joined mine customer")) {
		t.Errorf("the customer's stream = %q; want it to end with %q, and nothing after her removal", got, want)
	}
	replay := sc.open("agent", from)
	if got := chatUntil(t, replay, "closed", names, ids); !slices.Equal(got, want) {
		t.Errorf("the agent's replay = %q; want %q", got, want)
	}

	// The system's room is the backend's alone to manage.
	resp, data := sc.doResp("POST", "/v1/rooms/order-1234/members", sc.tok("agent"), map[string]string{"user": "x"}, nil)
	restCheckError(t, "a member adding to the backend's room", resp, data, http.StatusForbidden, "not_owner")
}

// A wrong or missing key is refused alike, and so is a user's token; bad
// requests are refused with a clear error and change nothing.
func TestServerAPIErrors(t *testing.T) {
	sc := newStreamScene(t, serverEnv())
	room := sc.room("alice", "general", false)
	watch := sc.open("alice", "")
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms", map[string]any{"id": "closed-1", "name": "Closed"}, nil)
	sc.server(apiKeyNew, http.StatusNoContent, "DELETE", "/v1/server/rooms/closed-1", nil, nil)
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms", map[string]any{"id": "order-1", "name": "Order 1"}, nil)
	sc.say("alice", room, "start")
	sseEventsBefore(t, watch, "start")

	// Missing and wrong keys get the same answer, byte for byte but the
	// request id.
	var answers []string
	for _, key := range []string{"", "wrong", apiKeyNew + "x", apiKeyNew[:len(apiKeyNew)-1]} {
		resp, data := sc.serverResp(key, "POST", "/v1/server/publish", map[string]any{"room": room, "event": "x"}, nil)
		restCheckError(t, fmt.Sprintf("key %q", key), resp, data, http.StatusUnauthorized, "invalid_api_key")
		answers = append(answers, fmt.Sprint(resp.Header.Get("WWW-Authenticate"), " ", string(data)))
	}
	if len(slices.Compact(slices.Clone(answers))) != 1 {
		t.Errorf("answers to missing and wrong keys differ: %q", answers)
	}
	resp, data := sc.doResp("POST", "/v1/server/publish", sc.tok("alice"), map[string]any{"room": room, "event": "x"}, nil)
	restCheckError(t, "a user's token on the server API", resp, data, http.StatusUnauthorized, "invalid_api_key")

	tests := []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
	}{
		{"a room id taken with other settings", "POST", "/v1/server/rooms", map[string]any{"id": "order-1", "name": "Order one"}, http.StatusConflict, "room_conflict"},
		{"a deleted room's id", "POST", "/v1/server/rooms", map[string]any{"id": "closed-1", "name": "Closed"}, http.StatusConflict, "room_deleted"},
		{"a room id with a slash", "POST", "/v1/server/rooms", map[string]any{"id": "a/b", "name": "x"}, http.StatusUnprocessableEntity, "invalid_field"},
		{"a room without a name", "POST", "/v1/server/rooms", map[string]any{"id": "x"}, http.StatusUnprocessableEntity, "invalid_field"},
		{"a bad member", "POST", "/v1/server/rooms", map[string]any{"name": "x", "members": []string{"a b"}}, http.StatusUnprocessableEntity, "invalid_field"},
		{"a post as a non-member", "POST", "/v1/server/rooms/" + room + "/messages", map[string]any{"text": "hi", "user": "mallory"}, http.StatusForbidden, "not_member"},
		{"a post to no room", "POST", "/v1/server/rooms/r_nope/messages", map[string]any{"text": "hi"}, http.StatusNotFound, "room_not_found"},
		{"an empty post", "POST", "/v1/server/rooms/" + room + "/messages", map[string]any{"text": ""}, http.StatusUnprocessableEntity, "invalid_field"},
		{"an edit of no message", "PATCH", "/v1/server/rooms/" + room + "/messages/999", map[string]any{"text": "x"}, http.StatusNotFound, "message_not_found"},
		{"an edit in no room", "PATCH", "/v1/server/rooms/r_nope/messages/1", map[string]any{"text": "x"}, http.StatusNotFound, "room_not_found"},
		{"publish to a room and a user", "POST", "/v1/server/publish", map[string]any{"room": room, "user": "alice", "event": "x"}, http.StatusUnprocessableEntity, "invalid_field"},
		{"publish to no one", "POST", "/v1/server/publish", map[string]any{"event": "x"}, http.StatusUnprocessableEntity, "invalid_field"},
		{"publish with no event name", "POST", "/v1/server/publish", map[string]any{"room": room}, http.StatusUnprocessableEntity, "invalid_field"},
		{"publish with a long event name", "POST", "/v1/server/publish", map[string]any{"room": room, "event": strings.Repeat("e", 65)}, http.StatusUnprocessableEntity, "invalid_field"},
		{"publish to no room", "POST", "/v1/server/publish", map[string]any{"room": "r_nope", "event": "x"}, http.StatusNotFound, "room_not_found"},
		{"publish bad data", "POST", "/v1/server/publish", `{"room":"` + room + `","event":"x","data":{"a":}`, http.StatusBadRequest, "malformed_json"},
		{"disconnect with a bad time", "POST", "/v1/server/users/bob/disconnect", map[string]any{"revoke_before": "yesterday"}, http.StatusUnprocessableEntity, "invalid_field"},
		{"a bad request id", "POST", "/v1/server/publish", map[string]any{"room": room, "event": "x"}, http.StatusUnprocessableEntity, "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h http.Header
			if tt.name == "a bad request id" {
				h = http.Header{"Idempotency-Key": {"has spaces"}}
			}
			resp, data := sc.in(t).serverResp(apiKeyNew, tt.method, tt.path, tt.body, h)
			restCheckError(t, tt.method+" "+tt.path, resp, data, tt.status, tt.code)
		})
	}
	sc.say("alice", room, "marker")
	if got := sseEventsBefore(t, watch, "marker"); len(got) != 0 {
		t.Errorf("events of refused requests: %q; want none", sseDescribeAll(got, nil))
	}
}

// A custom event for a room reaches its members; one for a user reaches
// every stream of that user, and nobody else's, live and by replay. A
// request id makes a retried publish happen once.
func TestServerAPICustomEvents(t *testing.T) {
	sc := newStreamScene(t, serverEnv())
	room := sc.room("alice", "general", false)
	sc.join("bob", room)
	bob1, bob2, alice := sc.open("bob", ""), sc.open("bob", ""), sc.open("alice", "")
	carol := sc.open("carol", "")
	mark := sc.room("carol", "carol's", false)
	sc.say("alice", room, "start")
	for _, c := range []*streamtest.Client{bob1, bob2, alice} {
		sseEventsBefore(t, c, "start")
	}
	from := bob1.LastID

	pub := func(body map[string]any, header http.Header) *http.Response {
		t.Helper()
		resp, data := sc.serverResp(apiKeyNew, "POST", "/v1/server/publish", body, header)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("publish %v = %d %s; want 204", body, resp.StatusCode, data)
		}
		return resp
	}
	pub(map[string]any{"room": room, "event": "order.updated", "data": map[string]any{"status": "shipped"}}, nil)
	// Twice with one request id: once.
	retry := http.Header{"Idempotency-Key": {"nudge-1"}}
	if r := pub(map[string]any{"user": "bob", "event": "nudge", "data": map[string]any{"n": 1}}, retry); r.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("the first request with an id was answered as a replay")
	}
	if r := pub(map[string]any{"user": "bob", "event": "nudge", "data": map[string]any{"n": 1}}, retry); r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the retry was not answered as a replay: Idempotent-Replayed = %q", r.Header.Get("Idempotent-Replayed"))
	}
	resp, data := sc.serverResp(apiKeyNew, "POST", "/v1/server/publish", map[string]any{"user": "bob", "event": "other"}, retry)
	restCheckError(t, "the request id of another request", resp, data, http.StatusUnprocessableEntity, "request_id_reused")
	pub(map[string]any{"user": "carol", "event": "only-carol"}, nil)
	pub(map[string]any{"user": "bob", "event": "text", "data": "line one\nline two"}, nil)
	sc.say("alice", room, "end")
	sc.say("carol", mark, "marker")

	names := map[string]string{room: "general", mark: "carol's", "": "-"}
	wantBob := []string{`custom general order.updated {"status":"shipped"}`, `custom - nudge {"n":1}`, `custom - text "line one\nline two"`}
	for i, c := range []*streamtest.Client{bob1, bob2} {
		if got := chatUntil(t, c, "end", names, nil); !slices.Equal(got, wantBob) {
			t.Errorf("bob's stream %d = %q; want %q", i+1, got, wantBob)
		}
	}
	if got := chatUntil(t, alice, "end", names, nil); !slices.Equal(got, wantBob[:1]) {
		t.Errorf("alice's stream = %q; want the room's event alone", got)
	}
	if got := chatUntil(t, carol, "marker", names, nil); !slices.Equal(got, []string{"member:joined carol's carol", `custom - only-carol null`}) {
		t.Errorf("carol's stream = %q; want her room's creation, then her own event alone", got)
	}
	again := sc.open("bob", from)
	if got := chatUntil(t, again, "end", names, nil); !slices.Equal(got, wantBob) {
		t.Errorf("bob's replay = %q; want %q", got, wantBob)
	}
}

// tokenIssued mints a token for user issued at iat.
func (sc *streamScene) tokenIssued(user string, iat time.Time) string {
	sc.t.Helper()
	return restSign(sc.t, jwt.SigningMethodHS256, sc.secret, jwt.MapClaims{
		"sub": user, "iat": iat.Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
}

// A disconnect closes every stream of the user, after what came before it,
// and no one else's; with a cut-off, the user's older tokens (and tickets
// and stream cookies that came of them) are refused, and newer ones are
// not.
func TestServerAPIDisconnect(t *testing.T) {
	sc := newStreamScene(t, serverEnv())
	room := sc.room("alice", "general", false)
	sc.join("bob", room)
	old := sc.tokenIssued("bob", time.Now().Add(-time.Minute))
	bob1, bob2 := sc.stream(old, ""), sc.stream(old, "")
	alice := sc.open("alice", "")
	// A ticket of the old token, spent before the disconnect: its cookie
	// would let an EventSource back in.
	var ticket struct{ Ticket string }
	sc.must(http.StatusCreated, "POST", "/v1/stream/tickets", old, nil, &ticket)
	tq := "/v1/stream?ticket=" + ticket.Ticket
	tresp, _ := restRequest(t, sc.testServer, "GET", tq, nil, nil)
	cookie := sseStreamCookie(t, tresp)
	sc.say("alice", room, "before")

	cut := time.Now().Add(-time.Second)
	sc.server(apiKeyNew, http.StatusNoContent, "POST", "/v1/server/users/bob/disconnect",
		map[string]string{"revoke_before": cut.Format(time.RFC3339Nano)}, nil)
	for i, c := range []*streamtest.Client{bob1, bob2} {
		frames := c.Ended()
		var msgs []string
		for _, f := range frames {
			if f.Event == "message:created" {
				msgs = append(msgs, f.Data)
			}
		}
		if reason := sseClosingReason(t, frames); reason != "disconnected" || len(msgs) != 1 || !strings.Contains(msgs[0], `"before"`) {
			t.Errorf("bob's stream %d: messages %q, closing %q; want the message before the disconnect, then closing disconnected", i+1, msgs, reason)
		}
	}
	sc.say("alice", room, "after")
	sseEventsBefore(t, alice, "before")
	sseEventsBefore(t, alice, "after") // alice's stream stays open

	for _, tt := range []struct {
		name   string
		do     func() (*http.Response, []byte)
		status int
		code   string
	}{
		{"a stream with the old token", func() (*http.Response, []byte) {
			return restRequest(t, sc.testServer, "GET", "/v1/stream", http.Header{"Authorization": {"Bearer " + old}}, nil)
		}, http.StatusUnauthorized, "revoked_token"},
		{"the old ticket with its cookie", func() (*http.Response, []byte) {
			return restRequest(t, sc.testServer, "GET", tq, http.Header{"Cookie": {cookie.String()}}, nil)
		}, http.StatusUnauthorized, "revoked_token"},
		{"a REST call with the old token", func() (*http.Response, []byte) {
			return sc.doResp("GET", "/v1/rooms", old, nil, nil)
		}, http.StatusUnauthorized, "revoked_token"},
		{"a token without iat", func() (*http.Response, []byte) {
			tok := restSign(t, jwt.SigningMethodHS256, sc.secret, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix()})
			return sc.doResp("GET", "/v1/rooms", tok, nil, nil)
		}, http.StatusUnauthorized, "revoked_token"},
	} {
		resp, data := tt.do()
		restCheckError(t, tt.name, resp, data, tt.status, tt.code)
	}
	// A newer token gets back in.
	again := sc.stream(sc.tokenIssued("bob", time.Now()), "")
	sc.say("alice", room, "welcome back")
	sseEventsBefore(t, again, "welcome back")

	// Without a cut-off, a disconnect closes the streams, and the same
	// token gets back in.
	sc.server(apiKeyNew, http.StatusNoContent, "POST", "/v1/server/users/bob/disconnect", nil, nil)
	if reason := sseClosingReason(t, again.Ended()); reason != "disconnected" {
		t.Errorf("the stream after a plain disconnect ended with %q; want disconnected", reason)
	}
	sc.stream(sc.tokenIssued("bob", time.Now()), "")
}

// Two keys are valid during a rotation; once the old one is removed from
// the settings, it is refused.
func TestServerAPIKeyRotation(t *testing.T) {
	sc := newStreamScene(t, serverEnv())
	for _, key := range []string{apiKeyOld, apiKeyNew} {
		sc.server(key, http.StatusCreated, "POST", "/v1/server/rooms", map[string]any{"name": "r"}, nil)
	}
	env := envOf(sc.cfg)
	env["HERALD_API_KEYS"] = apiKeyNew
	sc.stop()
	sc.testServer = startWith(t, env)
	resp, data := sc.serverResp(apiKeyOld, "POST", "/v1/server/rooms", map[string]any{"name": "r"}, nil)
	restCheckError(t, "the rotated-out key", resp, data, http.StatusUnauthorized, "invalid_api_key")
	sc.server(apiKeyNew, http.StatusCreated, "POST", "/v1/server/rooms", map[string]any{"name": "r"}, nil)

	// Without keys, the server API is off.
	env["HERALD_API_KEYS"] = ""
	sc.stop()
	sc.testServer = startWith(t, env)
	resp, data = sc.serverResp(apiKeyNew, "POST", "/v1/server/rooms", map[string]any{"name": "r"}, nil)
	restCheckError(t, "a key with the server API off", resp, data, http.StatusUnauthorized, "invalid_api_key")
}

// On a listener of its own, the server API is served there alone, and the
// main listener does not serve it.
func TestServerAPIOwnListener(t *testing.T) {
	env := testEnv(t, serverEnv("HERALD_SERVER_ADDR", "127.0.0.1:0"))
	s, privateURL := startApart(t, env, func(cfg *Config, addr chan<- string) { cfg.serverReady = addr })
	private := &testServer{t: t, URL: privateURL}
	sc := &streamScene{testServer: s, t: t}
	room := sc.room("alice", "general", false)

	resp, data := sc.serverResp(apiKeyNew, "POST", "/v1/server/publish", map[string]any{"room": room, "event": "x"}, nil)
	restCheckError(t, "the server API on the main listener", resp, data, http.StatusNotFound, "not_found")
	psc := &streamScene{testServer: private, t: t}
	psc.server(apiKeyNew, http.StatusNoContent, "POST", "/v1/server/publish", map[string]any{"room": room, "event": "x"}, nil)
	resp, data = private.doResp("GET", "/v1/rooms", sc.tok("alice"), nil, nil)
	restCheckError(t, "the user API on the server API's listener", resp, data, http.StatusNotFound, "not_found")
	if code, _ := private.do("GET", "/healthz", "", nil); code != http.StatusOK {
		t.Errorf("GET /healthz on the server API's listener = %d; want 200", code)
	}
}

// On a listener of its own, /metrics is served there alone, and the main
// listener, which faces the internet, answers 404 for it.
func TestMetricsOwnListener(t *testing.T) {
	env := testEnv(t, map[string]string{"HERALD_METRICS_ADDR": "127.0.0.1:0"})
	s, privateURL := startApart(t, env, func(cfg *Config, addr chan<- string) { cfg.metricsReady = addr })
	private := &testServer{t: t, URL: privateURL}

	resp, data := s.doResp("GET", "/metrics", "", nil, nil)
	restCheckError(t, "/metrics on the main listener", resp, data, http.StatusNotFound, "not_found")
	if code, body := private.do("GET", "/metrics", "", nil); code != http.StatusOK || !strings.Contains(string(body), "herald_streams_open ") {
		t.Errorf("GET /metrics on its own listener = %d, herald_streams_open there: %v; want 200 with it", code, strings.Contains(string(body), "herald_streams_open "))
	}
	if code, _ := private.do("GET", "/healthz", "", nil); code != http.StatusNotFound {
		t.Errorf("GET /healthz on the metrics listener = %d; want 404: it serves /metrics alone", code)
	}
}
