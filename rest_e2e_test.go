package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/stream"
	"github.com/heraldchat/herald/stream/streamtest"
)

// restMessage is a message as the API renders it.
type restMessage struct {
	ID        int64   `json:"id"`
	Room      string  `json:"room"`
	User      string  `json:"user"`
	Name      string  `json:"name"`
	Text      string  `json:"text"`
	ClientID  *string `json:"client_id"`
	CreatedAt string  `json:"created_at"`
}

// restRoom is a room as the API renders it, with the fields of a listing.
type restRoom struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Private   bool   `json:"private"`
	Owner     string `json:"owner"`
	CreatedAt string `json:"created_at"`
	Unread    int64  `json:"unread"`
	LastRead  int64  `json:"last_read"`
}

type restMember struct {
	User     string `json:"user"`
	Name     string `json:"name"`
	Owner    bool   `json:"owner"`
	JoinedAt string `json:"joined_at"`
}

// restRequest sends a request exactly as given, without the harness's
// default headers, and returns the answer. A stream's body is left unread
// (it never ends); the request is cancelled on return.
func restRequest(t testing.TB, s *testServer, method, path string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, data
}

// restCheckError fails unless the answer has the status and a JSON error
// body {"error":{"code":code,"message":...}}.
func restCheckError(t testing.TB, what string, resp *http.Response, data []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s = %d %s; want %d %s", what, resp.StatusCode, data, status, code)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type = %q; want application/json", what, ct)
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &body); err != nil || body.Error == nil {
		t.Errorf("%s: body = %s; want {\"error\":{\"code\":%q,...}}", what, data, code)
		return
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("%s: error = %+v; want code %q with a message", what, *body.Error, code)
	}
}

// restCheckChallenge checks the WWW-Authenticate of a 401 (RFC 6750): the
// realm alone when no bearer token was found, and error="invalid_token"
// with a description when one was refused.
func restCheckChallenge(t testing.TB, what string, resp *http.Response, code string) {
	t.Helper()
	got := resp.Header.Values("WWW-Authenticate")
	switch code {
	case "invalid_token", "malformed_token", "expired_token":
		if len(got) != 1 || !strings.HasPrefix(got[0], `Bearer realm="herald", error="invalid_token", error_description="`) || !strings.HasSuffix(got[0], `"`) {
			t.Errorf("%s: WWW-Authenticate = %q; want Bearer realm=\"herald\", error=\"invalid_token\" and a description", what, got)
		}
	default:
		if len(got) != 1 || got[0] != `Bearer realm="herald"` {
			t.Errorf("%s: WWW-Authenticate = %q; want Bearer realm=\"herald\"", what, got)
		}
	}
}

// restCall is s.doResp followed by a status check; it decodes a JSON answer
// into out when out is not nil.
func restCall(t testing.TB, s *testServer, method, path, token string, body any, status int, out any) []byte {
	t.Helper()
	resp, data := s.doResp(method, path, token, body, nil)
	if resp.StatusCode != status {
		t.Fatalf("%s %s = %d %s; want %d", method, path, resp.StatusCode, data, status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return data
}

// restHistory returns a page of a room's history.
func restHistory(t testing.TB, s *testServer, token, room, query string) ([]restMessage, bool) {
	t.Helper()
	var page struct {
		Messages []restMessage `json:"messages"`
		HasMore  *bool         `json:"has_more"`
	}
	data := restCall(t, s, "GET", "/v1/rooms/"+room+"/messages?"+query, token, nil, http.StatusOK, &page)
	if page.Messages == nil || page.HasMore == nil {
		t.Fatalf("history %s = %s; want messages array and has_more", query, data)
	}
	return page.Messages, *page.HasMore
}

// restEvent returns the next room event on c, skipping presence and typing
// signals, which come from other actions than the ones under test. It fails
// t (not the test that opened c) when the stream ends or stays silent.
func restEvent(t testing.TB, c *streamtest.Client) stream.Frame {
	t.Helper()
	for {
		f, ok := c.Frame()
		if !ok {
			t.Fatalf("stream ended or timed out waiting for an event (last id %q)", c.LastID)
		}
		if !f.HasData || f.Event == "presence:changed" || strings.HasPrefix(f.Event, "typing:") {
			continue
		}
		return f
	}
}

// restExpect fails unless the next room event on c has type typ, and
// decodes the event's data into v, for the caller to check: an event of the
// right type may still announce the wrong thing.
func restExpect(t testing.TB, c *streamtest.Client, typ string, v any) stream.Frame {
	t.Helper()
	f := restEvent(t, c)
	if f.Event != typ {
		t.Fatalf("next event = %s %s; want %s", f.Event, f.Data, typ)
	}
	if err := json.Unmarshal([]byte(f.Data), v); err != nil {
		t.Fatalf("decode %s data %q: %v", typ, f.Data, err)
	}
	return f
}

// restMarker posts a marker message and fails unless it is the next room
// event on c. Everything an earlier request emitted would have arrived
// before it, so this proves that nothing was emitted.
func restMarker(t testing.TB, s *testServer, c *streamtest.Client, token, room, text string) {
	t.Helper()
	var posted, got restMessage
	restCall(t, s, "POST", "/v1/rooms/"+room+"/messages", token, map[string]any{"text": text}, http.StatusCreated, &posted)
	f := restEvent(t, c)
	if f.Event != "message:created" || json.Unmarshal([]byte(f.Data), &got) != nil || got.ID != posted.ID {
		t.Fatalf("next event = %s %s; want message:created of marker %q (id %d)", f.Event, f.Data, text, posted.ID)
	}
}

// restSubset fails unless every key of want has the same JSON value in data.
func restSubset(t testing.TB, what string, data []byte, want map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Errorf("%s: body %s is not a JSON object: %v", what, data, err)
		return
	}
	for k, v := range want {
		wv, _ := json.Marshal(v)
		gv, _ := json.Marshal(got[k])
		if !bytes.Equal(wv, gv) {
			t.Errorf("%s: %s = %s; want %s (body %s)", what, k, gv, wv, data)
		}
	}
}

func restRooms(t testing.TB, s *testServer, token string) map[string]restRoom {
	t.Helper()
	var list struct {
		Rooms []restRoom `json:"rooms"`
	}
	data := restCall(t, s, "GET", "/v1/rooms", token, nil, http.StatusOK, &list)
	if list.Rooms == nil {
		t.Fatalf("GET /v1/rooms = %s; want a rooms array", data)
	}
	out := map[string]restRoom{}
	for _, r := range list.Rooms {
		out[r.ID] = r
	}
	return out
}

func restMembers(t testing.TB, s *testServer, token, room string) map[string]restMember {
	t.Helper()
	var list struct {
		Members []restMember `json:"members"`
	}
	restCall(t, s, "GET", "/v1/rooms/"+room+"/members", token, nil, http.StatusOK, &list)
	out := map[string]restMember{}
	for _, m := range list.Members {
		out[m.User] = m
	}
	return out
}

func TestRESTRoomsCreate(t *testing.T) {
	s := startServer(t, nil)
	alice := s.token("alice")
	tests := []struct {
		name    string
		body    map[string]any
		private bool
	}{
		{"public by default", map[string]any{"name": "general"}, false},
		{"explicit public", map[string]any{"name": "random", "private": false}, false},
		{"private", map[string]any{"name": "secret", "private": true}, true},
		{"unicode name", map[string]any{"name": "café ☕ 会議"}, false},
	}
	created := map[string]restRoom{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var room restRoom
			restCall(t, s, "POST", "/v1/rooms", alice, tt.body, http.StatusCreated, &room)
			if room.ID == "" || room.Name != tt.body["name"] || room.Private != tt.private || room.Owner != "alice" {
				t.Errorf("POST /v1/rooms %v = %+v; want name %v, private %v, owner alice", tt.body, room, tt.body["name"], tt.private)
			}
			if _, err := time.Parse(time.RFC3339, room.CreatedAt); err != nil {
				t.Errorf("created_at = %q; want RFC 3339: %v", room.CreatedAt, err)
			}
			created[room.ID] = room
		})
	}
	// The listing holds exactly the rooms created, as created, and the
	// owner is a member of each.
	got := restRooms(t, s, alice)
	if len(got) != len(created) {
		t.Fatalf("GET /v1/rooms has %d rooms; want %d", len(got), len(created))
	}
	for id, want := range created {
		if got[id] != want {
			t.Errorf("GET /v1/rooms[%s] = %+v; want %+v", id, got[id], want)
		}
		if m := restMembers(t, s, alice, id); len(m) != 1 || !m["alice"].Owner || m["alice"].Name != "Alice" {
			t.Errorf("members of new room %s = %+v; want only alice, owner", id, m)
		}
	}
}

func TestRESTRoomsListUnread(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	room := s.createRoom(alice, "general", false)
	quiet := s.createRoom(alice, "quiet", true)
	other := s.createRoom(carol, "carol's", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	s.post(alice, room, "from alice 1")
	for i := range 3 {
		s.post(bob, room, fmt.Sprintf("from bob %d", i))
	}
	s.post(alice, room, "from alice 2")
	s.post(carol, other, "elsewhere")

	tests := []struct {
		name   string
		token  string
		unread map[string]int64 // room id -> unread; exactly these rooms
	}{
		{"alice counts bob's messages only", alice, map[string]int64{room: 3, quiet: 0}},
		{"bob counts alice's messages only", bob, map[string]int64{room: 2}},
		{"carol sees only her room", carol, map[string]int64{other: 0}},
		{"a stranger has no rooms", s.token("dave"), map[string]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := restRooms(t, s, tt.token)
			unread := map[string]int64{}
			for id, r := range got {
				unread[id] = r.Unread
				if r.LastRead != 0 {
					t.Errorf("room %s last_read = %d; want 0", id, r.LastRead)
				}
			}
			if !reflect.DeepEqual(unread, tt.unread) {
				t.Errorf("GET /v1/rooms unread = %v; want %v", unread, tt.unread)
			}
		})
	}
	// An empty listing is an empty array, not null.
	data := restCall(t, s, "GET", "/v1/rooms", s.token("erin"), nil, http.StatusOK, nil)
	if strings.TrimSpace(string(data)) != `{"rooms":[]}` {
		t.Errorf("GET /v1/rooms for a new user = %s; want {\"rooms\":[]}", data)
	}
}

// TestRESTRoomsMembership walks one scenario of joins, adds, removals and
// leaves; each step states the answer it must get.
func TestRESTRoomsMembership(t *testing.T) {
	s := startServer(t, nil)
	alice, bob, carol := s.token("alice"), s.token("bob"), s.token("carol")
	pub := s.createRoom(alice, "lobby", false)
	priv := s.createRoom(alice, "secret", true)
	s.post(alice, priv, "before bob")
	rp, rv := "/v1/rooms/"+pub, "/v1/rooms/"+priv

	steps := []struct {
		name   string
		token  string
		method string
		path   string
		body   any
		status int
		code   string         // error code, when status >= 400
		want   map[string]any // fields of a 2xx JSON answer
	}{
		{"bob joins public", bob, "POST", rp + "/join", nil, 200, "", map[string]any{"room": pub, "user": "bob", "changed": true}},
		{"bob joins public again", bob, "POST", rp + "/join", nil, 200, "", map[string]any{"changed": false}},
		{"bob joins private uninvited", bob, "POST", rv + "/join", nil, 403, "private_room", nil},
		{"bob reads private uninvited", bob, "GET", rv + "/messages", nil, 403, "not_member", nil},
		{"bob posts to private uninvited", bob, "POST", rv + "/messages", map[string]any{"text": "hi"}, 403, "not_member", nil},
		{"bob (not owner) adds carol", bob, "POST", rp + "/members", map[string]any{"user": "carol"}, 403, "not_owner", nil},
		{"bob (not owner) removes alice", bob, "DELETE", rp + "/members/alice", nil, 403, "not_owner", nil},
		{"carol (not member) adds herself to private", carol, "POST", rv + "/members", map[string]any{"user": "carol"}, 403, "not_owner", nil},
		{"alice invites bob to private", alice, "POST", rv + "/members", map[string]any{"user": "bob"}, 202, "", map[string]any{"room": priv, "user": "bob", "changed": false, "invited": true}},
		{"alice invites bob again", alice, "POST", rv + "/members", map[string]any{"user": "bob"}, 202, "", map[string]any{"changed": false, "invited": true}},
		{"invited bob still cannot read private", bob, "GET", rv + "/messages", nil, 403, "not_member", nil},
		{"invited bob joins private", bob, "POST", rv + "/join", nil, 200, "", map[string]any{"changed": true}},
		{"alice invites bob, a member now", alice, "POST", rv + "/members", map[string]any{"user": "bob"}, 200, "", map[string]any{"changed": false}},
		{"bob reads private history", bob, "GET", rv + "/messages", nil, 200, "", map[string]any{"has_more": false}},
		{"bob posts to private", bob, "POST", rv + "/messages", map[string]any{"text": "thanks"}, 201, "", map[string]any{"user": "bob", "text": "thanks"}},
		{"alice removes herself", alice, "DELETE", rv + "/members/alice", nil, 409, "owner_removal", nil},
		{"alice removes carol (not a member)", alice, "DELETE", rv + "/members/carol", nil, 404, "member_not_found", nil},
		{"alice removes bob", alice, "DELETE", rv + "/members/bob", nil, 204, "", nil},
		{"removed bob reads private", bob, "GET", rv + "/messages", nil, 403, "not_member", nil},
		{"removed bob posts to private", bob, "POST", rv + "/messages", map[string]any{"text": "still here?"}, 403, "not_member", nil},
		{"removed bob lists private members", bob, "GET", rv + "/members", nil, 403, "not_member", nil},
		{"removed bob rejoins private", bob, "POST", rv + "/join", nil, 403, "private_room", nil},
		{"alice removes bob again", alice, "DELETE", rv + "/members/bob", nil, 404, "member_not_found", nil},
		{"bob leaves public", bob, "POST", rp + "/leave", nil, 204, "", nil},
		{"bob leaves public again", bob, "POST", rp + "/leave", nil, 403, "not_member", nil},
		{"bob reads public after leaving", bob, "GET", rp + "/messages", nil, 403, "not_member", nil},
		{"bob rejoins public", bob, "POST", rp + "/join", nil, 200, "", map[string]any{"changed": true}},
		{"carol leaves a room she never joined", carol, "POST", rp + "/leave", nil, 403, "not_member", nil},
	}
	for _, st := range steps {
		// Steps depend on each other: stop at the first failure.
		if !t.Run(st.name, func(t *testing.T) {
			resp, data := s.doResp(st.method, st.path, st.token, st.body, nil)
			what := st.method + " " + st.path
			if st.status >= 400 {
				restCheckError(t, what, resp, data, st.status, st.code)
				return
			}
			if resp.StatusCode != st.status {
				t.Fatalf("%s = %d %s; want %d", what, resp.StatusCode, data, st.status)
			}
			if st.status == http.StatusNoContent && len(data) != 0 {
				t.Errorf("%s: body = %q; want none", what, data)
			}
			if st.want != nil {
				restSubset(t, what, data, st.want)
			}
		}) {
			t.FailNow()
		}
	}

	// Final state: members with the owner flag and display names.
	tests := []struct {
		name string
		room string
		want map[string]restMember
	}{
		{"public", pub, map[string]restMember{"alice": {User: "alice", Name: "Alice", Owner: true}, "bob": {User: "bob", Name: "Bob"}}},
		{"private", priv, map[string]restMember{"alice": {User: "alice", Name: "Alice", Owner: true}}},
	}
	for _, tt := range tests {
		t.Run("members of "+tt.name, func(t *testing.T) {
			got := restMembers(t, s, alice, tt.room)
			for u, m := range got {
				if _, err := time.Parse(time.RFC3339, m.JoinedAt); err != nil {
					t.Errorf("member %s joined_at = %q; want RFC 3339", u, m.JoinedAt)
				}
				m.JoinedAt = ""
				got[u] = m
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("members = %+v; want %+v", got, tt.want)
			}
		})
	}
	// Bob's listing follows his memberships.
	if got := restRooms(t, s, bob); len(got) != 1 || got[pub].ID != pub {
		t.Errorf("bob's rooms = %+v; want only %s", got, pub)
	}
}

func TestRESTMessagesPost(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "general", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	sb := s.stream(bob, "")

	tests := []struct {
		name     string
		body     any
		clientID *string
	}{
		{"plain", map[string]any{"text": "hello"}, nil},
		{"multiline with tab", map[string]any{"text": "line 1\r\nline 2\n\tindented"}, nil},
		{"unicode and emoji sequences", map[string]any{"text": "héllo 世界 👩‍💻 🇫🇷 \u2028"}, nil},
		{"markup is stored verbatim", map[string]any{"text": `<script>alert("x")</script> & é`}, nil},
		{"surrounding spaces kept", map[string]any{"text": "  padded  "}, nil},
		{"with client_id", map[string]any{"text": "tracked", "client_id": "c-123"}, new("c-123")},
		{"empty client_id means none", map[string]any{"text": "untracked", "client_id": ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.body.(map[string]any)["text"].(string)
			var msg restMessage
			restCall(t, s, "POST", "/v1/rooms/"+room+"/messages", alice, tt.body, http.StatusCreated, &msg)
			if msg.ID <= 0 || msg.Room != room || msg.User != "alice" || msg.Name != "Alice" || msg.Text != text ||
				!reflect.DeepEqual(msg.ClientID, tt.clientID) {
				t.Errorf("POST message %v = %+v; want id > 0, room %s, user alice, name Alice, text %q, client_id %v",
					tt.body, msg, room, text, tt.clientID)
			}
			if _, err := time.Parse(time.RFC3339, msg.CreatedAt); err != nil {
				t.Errorf("created_at = %q; want RFC 3339", msg.CreatedAt)
			}
			// The same message is stored and announced.
			var ev restMessage
			restExpect(t, sb, "message:created", &ev)
			if ev != msg && !reflect.DeepEqual(ev, msg) {
				t.Errorf("message:created = %+v; want %+v", ev, msg)
			}
			msgs, _ := restHistory(t, s, bob, room, "limit=1")
			if len(msgs) != 1 || !reflect.DeepEqual(msgs[0], msg) {
				t.Errorf("newest in history = %+v; want %+v", msgs, msg)
			}
		})
	}

	// The body is JSON whatever its Content-Type, so `curl -d` works.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", ""} {
		t.Run("content type "+ct, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + alice}}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			resp, data := restRequest(t, s, "POST", "/v1/rooms/"+room+"/messages", h, []byte(`{"text":"via `+ct+`"}`))
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("POST message with Content-Type %q = %d %s; want 201", ct, resp.StatusCode, data)
			}
			var ev restMessage
			restExpect(t, sb, "message:created", &ev)
			if ev.Room != room || ev.User != "alice" || ev.Text != "via "+ct {
				t.Errorf("message:created = %+v; want alice's %q in %s", ev, "via "+ct, room)
			}
		})
	}
}

func TestRESTMessagesIdempotent(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "general", false)
	other := s.createRoom(alice, "other", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	sa := s.stream(alice, "")
	path := "/v1/rooms/" + room + "/messages"

	var orig restMessage
	origRaw := restCall(t, s, "POST", path, alice, map[string]any{"text": "once", "client_id": "c-1"}, http.StatusCreated, &orig)
	var ev restMessage
	if restExpect(t, sa, "message:created", &ev); !reflect.DeepEqual(ev, orig) {
		t.Fatalf("message:created = %+v; want the message posted, %+v", ev, orig)
	}

	retries := []struct {
		name string
		body map[string]any
	}{
		{"same text", map[string]any{"text": "once", "client_id": "c-1"}},
		{"same text again", map[string]any{"text": "once", "client_id": "c-1"}},
		{"different text returns the original", map[string]any{"text": "changed my mind", "client_id": "c-1"}},
	}
	for _, tt := range retries {
		t.Run(tt.name, func(t *testing.T) {
			var got restMessage
			raw := restCall(t, s, "POST", path, alice, tt.body, http.StatusOK, &got)
			if !reflect.DeepEqual(got, orig) {
				t.Errorf("retry %v = %+v; want the original %+v", tt.body, got, orig)
			}
			if !bytes.Equal(bytes.TrimSpace(raw), bytes.TrimSpace(origRaw)) {
				t.Errorf("retry body = %s; want the original's %s", raw, origRaw)
			}
		})
	}
	// No retry emitted anything: the marker is the next event.
	restMarker(t, s, sa, alice, room, "marker after retries")

	t.Run("another author may use the same client_id", func(t *testing.T) {
		var m restMessage
		restCall(t, s, "POST", path, bob, map[string]any{"text": "bob's", "client_id": "c-1"}, http.StatusCreated, &m)
		if m.ID == orig.ID || m.User != "bob" || m.Text != "bob's" {
			t.Errorf("bob's post with alice's client_id = %+v; want a new message by bob", m)
		}
		var ev restMessage
		if restExpect(t, sa, "message:created", &ev); !reflect.DeepEqual(ev, m) {
			t.Errorf("message:created = %+v; want bob's, %+v", ev, m)
		}
	})
	t.Run("the same author in another room", func(t *testing.T) {
		var m restMessage
		restCall(t, s, "POST", "/v1/rooms/"+other+"/messages", alice, map[string]any{"text": "elsewhere", "client_id": "c-1"}, http.StatusCreated, &m)
		if m.ID == orig.ID || m.Room != other {
			t.Errorf("post to another room with the same client_id = %+v; want a new message in %s", m, other)
		}
		var ev restMessage
		if restExpect(t, sa, "message:created", &ev); !reflect.DeepEqual(ev, m) {
			t.Errorf("message:created = %+v; want the one in the other room, %+v", ev, m)
		}
	})
	t.Run("concurrent retries store one message", func(t *testing.T) {
		const n = 8
		type result struct {
			status int
			msg    restMessage
			err    error
		}
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				req, _ := http.NewRequest("POST", s.URL+path, strings.NewReader(`{"text":"racy","client_id":"c-race"}`))
				req.Header.Set("Authorization", "Bearer "+alice)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					results[i].err = err
					return
				}
				defer resp.Body.Close()
				results[i].status = resp.StatusCode
				results[i].err = json.NewDecoder(resp.Body).Decode(&results[i].msg)
			})
		}
		wg.Wait()
		created := 0
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("concurrent post %d: %v", i, r.err)
			}
			switch r.status {
			case http.StatusCreated:
				created++
			case http.StatusOK:
			default:
				t.Errorf("concurrent post %d = %d; want 201 or 200", i, r.status)
			}
			if r.msg != results[0].msg && !reflect.DeepEqual(r.msg, results[0].msg) {
				t.Errorf("concurrent post %d = %+v; want %+v like the others", i, r.msg, results[0].msg)
			}
		}
		if created != 1 {
			t.Errorf("concurrent posts with one client_id: %d answered 201; want exactly 1", created)
		}
		var ev restMessage
		if restExpect(t, sa, "message:created", &ev); !reflect.DeepEqual(ev, results[0].msg) {
			t.Errorf("message:created = %+v; want the one stored, %+v", ev, results[0].msg)
		}
		restMarker(t, s, sa, alice, room, "marker after race")
	})

	msgs, _ := restHistory(t, s, alice, room, "")
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m.Text)
	}
	want := []string{"once", "marker after retries", "bob's", "racy", "marker after race"}
	if !slices.Equal(texts, want) {
		t.Errorf("history = %q; want %q", texts, want)
	}
}

func TestRESTMessagesHistory(t *testing.T) {
	s := startServer(t, nil)
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "general", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	empty := s.createRoom(alice, "empty", false)
	ids := make([]int64, 25)
	for i := range ids {
		tok := alice
		if i%3 == 0 {
			tok = bob
		}
		ids[i] = s.post(tok, room, fmt.Sprintf("m%02d", i))
	}
	span := func(from, to int) []int64 { return ids[from:to] }
	id := func(i int) string { return strconv.FormatInt(ids[i], 10) }

	pages := []struct {
		name  string
		query string
		want  []int64
		more  bool
	}{
		{"newest page", "limit=10", span(15, 25), true},
		{"page back", "before=" + id(15) + "&limit=10", span(5, 15), true},
		{"last page back", "before=" + id(5) + "&limit=10", span(0, 5), false},
		{"page forward", "after=" + id(4) + "&limit=10", span(5, 15), true},
		{"forward to the end", "after=" + id(14) + "&limit=10", span(15, 25), false},
		{"after the newest", "after=" + id(24), span(0, 0), false},
		{"before the oldest", "before=" + id(0), span(0, 0), false},
		{"window between after and before", "after=" + id(4) + "&before=" + id(8), span(5, 8), false},
		{"default limit", "", span(0, 25), false},
		{"limit 1", "limit=1", span(24, 25), true},
		{"limit 200", "limit=200", span(0, 25), false},
		{"exact fit", "limit=25", span(0, 25), false},
		{"zero bounds mean none", "before=0&after=0&limit=5", span(20, 25), true},
	}
	for _, tt := range pages {
		t.Run(tt.name, func(t *testing.T) {
			msgs, more := restHistory(t, s, bob, room, tt.query)
			got := []int64{}
			for _, m := range msgs {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tt.want) || more != tt.more {
				t.Errorf("history?%s = %v, has_more %v; want %v, has_more %v", tt.query, got, more, tt.want, tt.more)
			}
		})
	}
	t.Run("empty room", func(t *testing.T) {
		msgs, more := restHistory(t, s, alice, empty, "")
		if len(msgs) != 0 || more {
			t.Errorf("history of an empty room = %v, has_more %v; want [], false", msgs, more)
		}
	})

	bad := []struct {
		name   string
		query  string
		status int
	}{
		{"limit 0", "limit=0", 422},
		{"limit 201", "limit=201", 422},
		{"limit huge", "limit=1000000", 422},
		{"limit negative", "limit=-1", 400},
		{"limit not a number", "limit=ten", 400},
		{"limit empty is the default", "limit=", 200},
		{"before abc", "before=abc", 400},
		{"before negative", "before=-1", 400},
		{"before fraction", "before=1.5", 400},
		{"before overflows", "before=99999999999999999999", 400},
		{"after abc", "after=abc", 400},
		{"after negative", "after=-1", 400},
		{"after hex", "after=0x10", 400},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			resp, data := s.doResp("GET", "/v1/rooms/"+room+"/messages?"+tt.query, bob, nil, nil)
			if tt.status == 200 {
				if resp.StatusCode != 200 {
					t.Errorf("history?%s = %d %s; want 200", tt.query, resp.StatusCode, data)
				}
				return
			}
			restCheckError(t, "history?"+tt.query, resp, data, tt.status, "invalid_parameter")
		})
	}
}

func TestRESTAuthorization(t *testing.T) {
	s := startServer(t, nil)
	alice, carol := s.token("alice"), s.token("carol")
	room := s.createRoom(alice, "general", false)
	priv := s.createRoom(alice, "secret", true)
	s.post(alice, room, "first")
	sa := s.stream(alice, "")

	for _, r := range []struct{ name, room string }{{"public", room}, {"private", priv}} {
		p := "/v1/rooms/" + r.room
		tests := []struct {
			name         string
			method, path string
			body         any
			code         string
		}{
			{"read history", "GET", p + "/messages", nil, "not_member"},
			{"post", "POST", p + "/messages", map[string]any{"text": "let me in"}, "not_member"},
			{"post with client_id", "POST", p + "/messages", map[string]any{"text": "let me in", "client_id": "x"}, "not_member"},
			{"list members", "GET", p + "/members", nil, "not_member"},
			{"leave", "POST", p + "/leave", nil, "not_member"},
			{"add a member", "POST", p + "/members", map[string]any{"user": "carol"}, "not_owner"},
			{"remove a member", "DELETE", p + "/members/alice", nil, "not_owner"},
		}
		for _, tt := range tests {
			t.Run(r.name+"/"+tt.name, func(t *testing.T) {
				before, _ := restHistory(t, s, alice, r.room, "")
				resp, data := s.doResp(tt.method, tt.path, carol, tt.body, nil)
				restCheckError(t, "non-member "+tt.method+" "+tt.path, resp, data, http.StatusForbidden, tt.code)
				after, _ := restHistory(t, s, alice, r.room, "")
				if !reflect.DeepEqual(after, before) {
					t.Errorf("history changed after a refused request: %+v; want %+v", after, before)
				}
				restMarker(t, s, sa, alice, r.room, "marker "+tt.name)
			})
		}
	}
	if got := restRooms(t, s, carol); len(got) != 0 {
		t.Errorf("carol's rooms = %+v; want none", got)
	}

	unknown := "/v1/rooms/r_doesnotexist"
	routes := []struct {
		name         string
		method, path string
		body         any
	}{
		{"join", "POST", unknown + "/join", nil},
		{"leave", "POST", unknown + "/leave", nil},
		{"list members", "GET", unknown + "/members", nil},
		{"add member", "POST", unknown + "/members", map[string]any{"user": "bob"}},
		{"remove member", "DELETE", unknown + "/members/bob", nil},
		{"post", "POST", unknown + "/messages", map[string]any{"text": "hello?"}},
		{"history", "GET", unknown + "/messages", nil},
		{"history with paging", "GET", unknown + "/messages?before=10&limit=5", nil},
	}
	for _, tt := range routes {
		t.Run("unknown room/"+tt.name, func(t *testing.T) {
			resp, data := s.doResp(tt.method, tt.path, alice, tt.body, nil)
			restCheckError(t, tt.method+" "+tt.path, resp, data, http.StatusNotFound, "room_not_found")
		})
	}
	if got := restRooms(t, s, alice); len(got) != 2 {
		t.Errorf("alice's rooms = %+v; want her 2 rooms", got)
	}
}

// TestRESTBadInput sends malformed, mistyped and out-of-range bodies to
// every route that takes one. Each must be refused with the documented
// status and code, and change nothing: the room's history, the caller's
// rooms and the members are as before, and an open stream gets nothing
// before the marker that follows.
func TestRESTBadInput(t *testing.T) {
	const maxText = 50
	s := startServer(t, map[string]string{"HERALD_MAX_TEXT": strconv.Itoa(maxText)})
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "general", true)
	s.post(alice, room, "first")
	sa := s.stream(alice, "")

	msgPath := "/v1/rooms/" + room + "/messages"
	roomPath := "/v1/rooms"
	memberPath := "/v1/rooms/" + room + "/members"
	big := func(n int) []byte { return []byte(`{"text":"` + strings.Repeat("a", n) + `"}`) }
	tests := []struct {
		name   string
		path   string
		body   []byte
		status int
		code   string
	}{
		// Not a JSON object.
		{"message: malformed JSON", msgPath, []byte(`{"text":`), 400, "malformed_json"},
		{"message: empty body", msgPath, []byte{}, 400, "malformed_json"},
		{"message: whitespace body", msgPath, []byte(" \n "), 400, "malformed_json"},
		{"message: JSON array", msgPath, []byte(`[{"text":"hi"}]`), 400, "malformed_json"},
		{"message: JSON number", msgPath, []byte(`5`), 400, "malformed_json"},
		{"message: JSON string", msgPath, []byte(`"hi"`), 400, "malformed_json"},
		{"message: JSON null", msgPath, []byte(`null`), 422, "invalid_field"},
		{"message: trailing garbage", msgPath, []byte(`{"text":"hi"} x`), 400, "malformed_json"},
		{"message: two objects", msgPath, []byte(`{"text":"a"}{"text":"b"}`), 400, "malformed_json"},
		{"message: single quotes", msgPath, []byte(`{'text':'hi'}`), 400, "malformed_json"},
		{"message: form encoded", msgPath, []byte(`text=hi`), 400, "malformed_json"},
		// Wrong types.
		{"message: text is a number", msgPath, []byte(`{"text":5}`), 422, "invalid_field"},
		{"message: text is an object", msgPath, []byte(`{"text":{"a":"b"}}`), 422, "invalid_field"},
		{"message: text is an array", msgPath, []byte(`{"text":["hi"]}`), 422, "invalid_field"},
		{"message: client_id is a number", msgPath, []byte(`{"text":"hi","client_id":7}`), 422, "invalid_field"},
		// Size.
		{"message: body just over 64 KiB", msgPath, big(64<<10 - len(`{"text":""}`) + 1), 413, "too_large"},
		{"message: valid JSON padded over 64 KiB", msgPath, append([]byte(`{"text":"hi"}`), bytes.Repeat([]byte(" "), 64<<10)...), 413, "too_large"},
		{"message: 1 MiB body", msgPath, big(1 << 20), 413, "too_large"},
		// Text content.
		{"message: missing text", msgPath, []byte(`{}`), 422, "invalid_field"},
		{"message: null text", msgPath, []byte(`{"text":null}`), 422, "invalid_field"},
		{"message: empty text", msgPath, []byte(`{"text":""}`), 422, "invalid_field"},
		{"message: whitespace text", msgPath, []byte(`{"text":" \n\t\r  "}`), 422, "invalid_field"},
		{"message: zero-width characters only", msgPath, []byte(`{"text":"\u200b\u200c\u200d\u2060"}`), 422, "invalid_field"},
		{"message: byte order marks and spaces only", msgPath, []byte(`{"text":"\ufeff \ufeff\u00a0"}`), 422, "invalid_field"},
		{"message: direction marks only", msgPath, []byte(`{"text":"\u200e\u202e\u2066"}`), 422, "invalid_field"},
		{"message: Hangul fillers, blank Braille only", msgPath, []byte(`{"text":"\u3164\u2800\uffa0"}`), 422, "invalid_field"},
		{"message: text over the limit", msgPath, big(maxText + 1), 422, "too_long"},
		{"message: multibyte text over the limit", msgPath, []byte(`{"text":"` + strings.Repeat("é", maxText+1) + `"}`), 422, "too_long"},
		{"message: NUL", msgPath, []byte(`{"text":"a\u0000b"}`), 422, "invalid_characters"},
		{"message: only NUL", msgPath, []byte(`{"text":"\u0000"}`), 422, "invalid_characters"},
		{"message: bell", msgPath, []byte(`{"text":"ding\u0007"}`), 422, "invalid_characters"},
		{"message: escape sequence", msgPath, []byte(`{"text":"\u001b[2Jcleared"}`), 422, "invalid_characters"},
		{"message: DEL", msgPath, []byte(`{"text":"a\u007fb"}`), 422, "invalid_characters"},
		{"message: C1 control", msgPath, []byte(`{"text":"a\u0085b"}`), 422, "invalid_characters"},
		{"message: lone surrogate escape", msgPath, []byte(`{"text":"a\ud800b"}`), 422, "invalid_characters"},
		{"message: replacement character", msgPath, []byte(`{"text":"a\ufffdb"}`), 422, "invalid_characters"},
		{"message: invalid UTF-8 bytes", msgPath, []byte("{\"text\":\"a\xff\xfeb\"}"), 422, "invalid_utf8"},
		{"message: overlong UTF-8", msgPath, []byte("{\"text\":\"\xc0\xaf\"}"), 422, "invalid_utf8"},
		{"message: truncated UTF-8", msgPath, []byte("{\"text\":\"caf\xc3\"}"), 422, "invalid_utf8"},
		{"message: UTF-8 encoded surrogate", msgPath, []byte("{\"text\":\"\xed\xa0\x80\"}"), 422, "invalid_utf8"},
		{"message: invalid UTF-8 in a key", msgPath, []byte("{\"text\":\"hi\",\"\xff\":1}"), 422, "invalid_utf8"},
		// client_id.
		{"message: client_id with spaces", msgPath, []byte(`{"text":"hi","client_id":"a b"}`), 422, "invalid_field"},
		{"message: client_id only spaces", msgPath, []byte(`{"text":"hi","client_id":"   "}`), 422, "invalid_field"},
		{"message: client_id with tab", msgPath, []byte(`{"text":"hi","client_id":"a\tb"}`), 422, "invalid_field"},
		{"message: client_id with NUL", msgPath, []byte(`{"text":"hi","client_id":"a\u0000"}`), 422, "invalid_field"},
		{"message: client_id with no-break space", msgPath, []byte(`{"text":"hi","client_id":"a\u00a0b"}`), 422, "invalid_field"},
		{"message: client_id with a zero-width space", msgPath, []byte(`{"text":"hi","client_id":"a\u200bb"}`), 422, "invalid_field"},
		{"message: client_id over 128", msgPath, []byte(`{"text":"hi","client_id":"` + strings.Repeat("c", 129) + `"}`), 422, "invalid_field"},

		// Creating a room.
		{"room: malformed JSON", roomPath, []byte(`{"name":"x"`), 400, "malformed_json"},
		{"room: empty body", roomPath, []byte{}, 400, "malformed_json"},
		{"room: JSON array", roomPath, []byte(`[]`), 400, "malformed_json"},
		{"room: JSON number", roomPath, []byte(`42`), 400, "malformed_json"},
		{"room: name is a boolean", roomPath, []byte(`{"name":true}`), 422, "invalid_field"},
		{"room: private is a string", roomPath, []byte(`{"name":"x","private":"yes"}`), 422, "invalid_field"},
		{"room: private is a number", roomPath, []byte(`{"name":"x","private":1}`), 422, "invalid_field"},
		{"room: missing name", roomPath, []byte(`{"private":true}`), 422, "invalid_field"},
		{"room: blank name", roomPath, []byte(`{"name":"   "}`), 422, "invalid_field"},
		{"room: name over 100", roomPath, []byte(`{"name":"` + strings.Repeat("n", 101) + `"}`), 422, "too_long"},
		{"room: name with newline", roomPath, []byte(`{"name":"a\nb"}`), 422, "invalid_characters"},
		{"room: name with NUL", roomPath, []byte(`{"name":"a\u0000"}`), 422, "invalid_characters"},
		{"room: name of invisible characters", roomPath, []byte(`{"name":"\u200b\u200d\ufeff"}`), 422, "invalid_field"},
		{"room: name of Hangul fillers", roomPath, []byte(`{"name":"\u3164\u115f"}`), 422, "invalid_field"},
		{"room: name with an RLO", roomPath, []byte(`{"name":"invoice\u202efdp.exe"}`), 422, "invalid_characters"},
		{"room: name with a direction isolate", roomPath, []byte(`{"name":"a\u2067b\u2069"}`), 422, "invalid_characters"},
		{"room: name with a right-to-left mark", roomPath, []byte(`{"name":"a\u200fb"}`), 422, "invalid_characters"},
		{"room: name with a zero-width space", roomPath, []byte(`{"name":"ad\u200bmin"}`), 422, "invalid_characters"},
		{"room: name with a soft hyphen", roomPath, []byte(`{"name":"ad\u00admin"}`), 422, "invalid_characters"},
		{"room: name with hidden tag text", roomPath, []byte(`{"name":"hi\udb40\udc41\udb40\udc42"}`), 422, "invalid_characters"},
		{"room: name with a line separator", roomPath, []byte(`{"name":"a\u2028b"}`), 422, "invalid_characters"},
		{"room: name invalid UTF-8", roomPath, []byte("{\"name\":\"\xff\"}"), 422, "invalid_utf8"},
		{"room: body over 64 KiB", roomPath, []byte(`{"name":"` + strings.Repeat("n", 70<<10) + `"}`), 413, "too_large"},

		// Adding a member.
		{"member: malformed JSON", memberPath, []byte(`{"user":`), 400, "malformed_json"},
		{"member: empty body", memberPath, []byte{}, 400, "malformed_json"},
		{"member: JSON array", memberPath, []byte(`["bob"]`), 400, "malformed_json"},
		{"member: user is a number", memberPath, []byte(`{"user":5}`), 422, "invalid_field"},
		{"member: missing user", memberPath, []byte(`{}`), 422, "invalid_field"},
		{"member: empty user", memberPath, []byte(`{"user":""}`), 422, "invalid_field"},
		{"member: user with space", memberPath, []byte(`{"user":"bob smith"}`), 422, "invalid_field"},
		{"member: user with newline", memberPath, []byte(`{"user":"bob\n"}`), 422, "invalid_field"},
		{"member: user with escape", memberPath, []byte(`{"user":"\u001bbob"}`), 422, "invalid_field"},
		{"member: user with an accented letter", memberPath, []byte(`{"user":"jos\u00e9"}`), 422, "invalid_field"},
		{"member: user with a Cyrillic a", memberPath, []byte(`{"user":"\u0430lice"}`), 422, "invalid_field"},
		{"member: user with an RLO", memberPath, []byte(`{"user":"bob\u202e"}`), 422, "invalid_field"},
		{"member: user with a zero-width joiner", memberPath, []byte(`{"user":"bo\u200db"}`), 422, "invalid_field"},
		{"member: user with a fullwidth letter", memberPath, []byte(`{"user":"\uff42ob"}`), 422, "invalid_field"},
		{"member: user over 128", memberPath, []byte(`{"user":"` + strings.Repeat("u", 129) + `"}`), 422, "invalid_field"},
		{"member: user invalid UTF-8", memberPath, []byte("{\"user\":\"b\xffb\"}"), 422, "invalid_utf8"},
		{"member: body over 64 KiB", memberPath, []byte(`{"user":"` + strings.Repeat("u", 70<<10) + `"}`), 413, "too_large"},
	}
	snapshot := func(t *testing.T) string {
		t.Helper()
		_, h := s.do("GET", msgPath, alice, nil)
		_, r := s.do("GET", "/v1/rooms", alice, nil)
		_, m := s.do("GET", memberPath, alice, nil)
		_, b := s.do("GET", "/v1/rooms", bob, nil)
		return string(h) + "\n" + string(r) + "\n" + string(m) + "\n" + string(b)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t)
			resp, data := s.doResp("POST", tt.path, alice, tt.body, nil)
			restCheckError(t, "POST "+tt.path+" "+restAbbrev(tt.body), resp, data, tt.status, tt.code)
			if after := snapshot(t); after != before {
				t.Errorf("state changed after a refused request:\n%s\nwant\n%s", after, before)
			}
			restMarker(t, s, sa, alice, room, "marker "+tt.name)
		})
	}
	// Nothing wedged: the server still answers and accepts good input.
	s.must(http.StatusOK, "GET", "/healthz", "", nil, nil)
	s.must(http.StatusAccepted, "POST", memberPath, alice, map[string]any{"user": "bob"}, nil)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
	var joined struct{ Room, User, By string }
	if restExpect(t, sa, "member:joined", &joined); joined.Room != room || joined.User != "bob" || joined.By != "" {
		t.Errorf("member:joined = %+v; want bob, who joined %s by himself", joined, room)
	}
	restMarker(t, s, sa, bob, room, "bob got in")
}

func restAbbrev(b []byte) string {
	if len(b) > 60 {
		return fmt.Sprintf("%q… (%d bytes)", b[:60], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// TestRESTInputLimits checks both sides of each limit: the largest valid
// value is accepted and stored as sent, one more is refused.
func TestRESTInputLimits(t *testing.T) {
	tests := []struct {
		name    string
		maxText string // HERALD_MAX_TEXT, "" for the default
		limit   int
	}{
		{"default limit", "", 4000},
		{"configured limit", "50", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			if tt.maxText != "" {
				env["HERALD_MAX_TEXT"] = tt.maxText
			}
			s := startServer(t, env)
			alice := s.token("alice")
			room := s.createRoom(alice, "general", false)
			path := "/v1/rooms/" + room + "/messages"
			for _, unit := range []string{"a", "é", "😀"} {
				text := strings.Repeat(unit, tt.limit)
				var m restMessage
				restCall(t, s, "POST", path, alice, map[string]any{"text": text}, http.StatusCreated, &m)
				if m.Text != text {
					t.Errorf("stored %d×%q = %d characters; want %d", tt.limit, unit, utf8.RuneCountInString(m.Text), tt.limit)
				}
				resp, data := s.doResp("POST", path, alice, map[string]any{"text": text + unit}, nil)
				restCheckError(t, fmt.Sprintf("post %d×%q", tt.limit+1, unit), resp, data, 422, "too_long")
			}
		})
	}

	s := startServer(t, nil)
	alice := s.token("alice")
	room := s.createRoom(alice, "general", true)
	valid := []struct {
		name   string
		path   string
		body   map[string]any
		status int
		field  string
	}{
		{"room name of 100 characters", "/v1/rooms", map[string]any{"name": strings.Repeat("é", 100)}, 201, "name"},
		// Joiners (emoji, Persian), variation selectors and a flag's tags.
		{"room name with emoji sequences and joiners", "/v1/rooms", map[string]any{"name": "👩‍💻 ❤️ 🏴󠁧󠁢󠁳󠁣󠁴󠁿 می‌خواهم"}, 201, "name"},
		{"room name in a right-to-left script", "/v1/rooms", map[string]any{"name": "שלום עולם"}, 201, "name"},
		// Direction controls are how mixed-direction text is written.
		{"message with direction controls", "/v1/rooms/" + room + "/messages", map[string]any{"text": "\u2067שלום\u2069 world \u200f!"}, 201, "text"},
		{"client_id of 128 characters", "/v1/rooms/" + room + "/messages", map[string]any{"text": "x", "client_id": strings.Repeat("c", 128)}, 201, "client_id"},
		{"client_id with punctuation and unicode", "/v1/rooms/" + room + "/messages", map[string]any{"text": "x", "client_id": "id:1/2#ü-_.~"}, 201, "client_id"},
		{"user id of 128 characters", "/v1/rooms/" + room + "/members", map[string]any{"user": strings.Repeat("u", 128)}, 202, "user"},
		{"user id of an identity provider", "/v1/rooms/" + room + "/members", map[string]any{"user": "auth0|5f7c8ec7c33c6c004bbafe82"}, 202, "user"},
		{"user id that is an e-mail address", "/v1/rooms/" + room + "/members", map[string]any{"user": "jose+chat@example.org"}, 202, "user"},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			data := restCall(t, s, "POST", tt.path, alice, tt.body, tt.status, nil)
			restSubset(t, "POST "+tt.path, data, map[string]any{tt.field: tt.body[tt.field]})
		})
	}
}

// restSign signs claims with method and key.
func restSign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return tok
}

// restForge builds a token by hand from a header, claims and a signature
// function over "header.claims".
func restForge(t *testing.T, header string, claims jwt.MapClaims, sig func(signingInput string) []byte) string {
	t.Helper()
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(body)
	return in + "." + enc.EncodeToString(sig(in))
}

func TestRESTTokens(t *testing.T) {
	s := startServer(t, nil)
	alice := s.token("alice")
	room := s.createRoom(alice, "general", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", s.token("trent"), nil, nil)

	secret := s.secret
	now := time.Now()
	// Forged tokens speak for alice: if one got in, her state would change.
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "name": "Alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	trent := restSign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "trent", "exp": now.Add(time.Hour).Unix()})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hmacSig := func(in string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		return m.Sum(nil)
	}
	valid := restSign(t, jwt.SigningMethodHS256, secret, claims(nil))
	parts := strings.Split(valid, ".")
	mallory, _ := json.Marshal(claims(func(c jwt.MapClaims) { c["sub"] = "mallory" }))

	tests := []struct {
		name   string
		auth   string // the Authorization header; "" sends none
		status int
		code   string
	}{
		// Controls: a good token of another user gets in.
		{"valid token", "Bearer " + trent, 200, ""},
		{"scheme is case-insensitive", "bearer " + trent, 200, ""},
		{"fractional exp, past nbf", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "trent", "exp": float64(now.Add(time.Hour).Unix()) + 0.5, "nbf": now.Add(-time.Minute).Unix()}), 200, ""},

		{"no header", "", 401, "unauthenticated"},
		{"Bearer without token", "Bearer", 401, "unauthenticated"},
		{"Bearer with spaces only", "Bearer    ", 401, "unauthenticated"},
		{"Basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret")), 401, "unauthenticated"},
		{"token without scheme", valid, 401, "unauthenticated"},
		{"Token scheme", "Token " + valid, 401, "unauthenticated"},
		{"garbage token", "Bearer not-a-token", 401, "malformed_token"},
		{"three garbage segments", "Bearer a.b.c", 401, "malformed_token"},
		{"expired", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), 401, "expired_token"},
		{"not yet valid", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), 401, "invalid_token"},
		{"exp is a string", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })), 401, "malformed_token"},
		{"exp is a numeric string", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["exp"] = strconv.FormatInt(now.Add(time.Hour).Unix(), 10) })), 401, "malformed_token"},
		{"expired by a fraction", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["exp"] = float64(now.Add(-time.Minute).Unix()) + 0.5 })), 401, "expired_token"},
		{"without exp", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { delete(c, "exp") })), 401, "invalid_token"},
		{"signed with another secret", "Bearer " + restSign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-012345"), claims(nil)), 401, "invalid_token"},
		{"HS512 with the right secret", "Bearer " + restSign(t, jwt.SigningMethodHS512, secret, claims(nil)), 401, "invalid_token"},
		{"HS384 with the right secret", "Bearer " + restSign(t, jwt.SigningMethodHS384, secret, claims(nil)), 401, "invalid_token"},
		{"RS256 with a key the server does not know", "Bearer " + restSign(t, jwt.SigningMethodRS256, rsaKey, claims(nil)), 401, "invalid_token"},
		{"alg none", "Bearer " + restForge(t, `{"alg":"none","typ":"JWT"}`, claims(nil), func(string) []byte { return nil }), 401, "invalid_token"},
		{"alg None", "Bearer " + restForge(t, `{"alg":"None","typ":"JWT"}`, claims(nil), func(string) []byte { return nil }), 401, "invalid_token"},
		{"alg none with an HMAC signature", "Bearer " + restForge(t, `{"alg":"none","typ":"JWT"}`, claims(nil), hmacSig), 401, "invalid_token"},
		{"RS256 header with HMAC signature", "Bearer " + restForge(t, `{"alg":"RS256","typ":"JWT"}`, claims(nil), hmacSig), 401, "invalid_token"},
		{"ES256 header with HMAC signature", "Bearer " + restForge(t, `{"alg":"ES256","typ":"JWT"}`, claims(nil), hmacSig), 401, "invalid_token"},
		{"no alg", "Bearer " + restForge(t, `{"typ":"JWT"}`, claims(nil), hmacSig), 401, "invalid_token"},
		{"without sub", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { delete(c, "sub") })), 401, "invalid_token"},
		{"empty sub", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = "" })), 401, "invalid_token"},
		{"sub with a space", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = "ali ce" })), 401, "invalid_token"},
		{"sub with a letter of another script that looks Latin", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = "\u0430lice" })), 401, "invalid_token"},
		{"sub with a right-to-left override", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = "alice\u202e" })), 401, "invalid_token"},
		{"sub with a zero-width space", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = "ali\u200bce" })), 401, "invalid_token"},
		{"sub over 128", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = strings.Repeat("a", 129) })), 401, "invalid_token"},
		{"sub is a number", "Bearer " + restSign(t, jwt.SigningMethodHS256, secret, claims(func(c jwt.MapClaims) { c["sub"] = 42 })), 401, "malformed_token"},
		{"payload swapped, signature kept", "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString(mallory) + "." + parts[2], 401, "invalid_token"},
		{"signature stripped", "Bearer " + parts[0] + "." + parts[1] + ".", 401, "invalid_token"},
		// 40 of the 43 characters: 30 whole bytes, which decode, and do not
		// verify. (Other cuts leave bits over, which strict decoding refuses
		// as malformed.)
		{"signature truncated", "Bearer " + valid[:len(valid)-3], 401, "invalid_token"},
		{"signature cut mid-byte", "Bearer " + valid[:len(valid)-2] + "_", 401, "malformed_token"},
	}
	routes := []struct {
		name         string
		method, path string
		body         []byte
		ok           int // the status a valid token gets
	}{
		{"list rooms", "GET", "/v1/rooms", nil, 200},
		{"create room", "POST", "/v1/rooms", []byte(`{"name":"forged"}`), 201},
		{"post message", "POST", "/v1/rooms/" + room + "/messages", []byte(`{"text":"forged"}`), 201},
		{"create ticket", "POST", "/v1/stream/tickets", nil, 201},
		{"stream", "GET", "/v1/stream", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range routes {
				h := http.Header{}
				if tt.auth != "" {
					h.Set("Authorization", tt.auth)
				}
				resp, data := restRequest(t, s, r.method, r.path, h, r.body)
				what := r.method + " " + r.path
				if tt.status == 200 {
					if resp.StatusCode != r.ok {
						t.Errorf("%s = %d %s; want %d", what, resp.StatusCode, data, r.ok)
					}
					continue
				}
				restCheckError(t, what, resp, data, tt.status, tt.code)
				restCheckChallenge(t, what, resp, tt.code)
			}
		})
	}
	// No forged token acted for alice.
	if got := restRooms(t, s, alice); len(got) != 1 {
		t.Errorf("alice's rooms = %+v; want only %s", got, room)
	}
	msgs, _ := restHistory(t, s, alice, room, "")
	for _, m := range msgs {
		if m.User != "trent" {
			t.Errorf("history holds %+v; want only trent's control messages", m)
		}
	}
}

// TestRESTTokenClaims checks how a valid token's claims become the user.
func TestRESTTokenClaims(t *testing.T) {
	s := startServer(t, nil)
	alice := s.token("alice")
	room := s.createRoom(alice, "general", false)
	sa := s.stream(alice, "")
	exp := time.Now().Add(time.Hour).Unix()
	tests := []struct {
		name     string
		sub      string
		tokName  any
		wantName string
	}{
		{"no name", "nameless", nil, ""},
		// An empty name never erases a known one; every view of the message
		// (answer, event, history, retry) shows the known name.
		{"no name for a known user", "alice", nil, "Alice"},
		{"unicode name", "zoe", "Zoë 🚀", "Zoë 🚀"},
		{"long ASCII name is cut to 128 characters", "longa", strings.Repeat("n", 200), strings.Repeat("n", 128)},
		{"long accented name is cut to 128 characters", "longu", "a" + strings.Repeat("é", 200), "a" + strings.Repeat("é", 127)},
		{"emoji name is cut to 128 characters", "longe", strings.Repeat("😀", 140), strings.Repeat("😀", 128)},
		// Names are stored and shown like message text: never with control
		// characters, which PostgreSQL would refuse (NUL) or break displays.
		{"control characters are dropped", "ctrl", "Bo\x00b\x1b[31m\nby", "Bob[31mby"},
		// And, as in a room's name, invisible and direction-changing ones,
		// but not the joiners that emoji and scripts need.
		{"direction controls are dropped", "rlo", "Eve\u202e\u2066lin\u200b", "Evelin"},
		{"joiners stay", "zwj", "👩‍💻 می‌خواهم", "👩‍💻 می‌خواهم"},
		{"a name of invisible characters is none", "blank", "\u200b\u3164\ufeff", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := jwt.MapClaims{"sub": tt.sub, "exp": exp}
			if tt.tokName != nil {
				c["name"] = tt.tokName
			}
			tok := restSign(t, jwt.SigningMethodHS256, s.secret, c)
			restCall(t, s, "POST", "/v1/rooms/"+room+"/join", tok, nil, http.StatusOK, nil)
			var m, ev, retry restMessage
			body := map[string]any{"text": "hi", "client_id": "k-" + tt.sub}
			restCall(t, s, "POST", "/v1/rooms/"+room+"/messages", tok, body, http.StatusCreated, &m)
			if m.User != tt.sub || m.Name != tt.wantName {
				t.Errorf("message by %s = user %q name %q; want %q %q", tt.sub, m.User, m.Name, tt.sub, tt.wantName)
			}
			for ev.ID == 0 {
				if f := restEvent(t, sa); f.Event == "message:created" {
					if err := json.Unmarshal([]byte(f.Data), &ev); err != nil {
						t.Fatalf("message:created data %q: %v", f.Data, err)
					}
				}
			}
			if ev.ID != m.ID || ev.Name != tt.wantName {
				t.Errorf("message:created = %+v; want id %d name %q", ev, m.ID, tt.wantName)
			}
			restCall(t, s, "POST", "/v1/rooms/"+room+"/messages", tok, body, http.StatusOK, &retry)
			if !reflect.DeepEqual(retry, m) {
				t.Errorf("retry = %+v; want the original answer %+v", retry, m)
			}
			members := restMembers(t, s, alice, room)
			if got := members[tt.sub].Name; got != tt.wantName {
				t.Errorf("member %s name = %q; want %q", tt.sub, got, tt.wantName)
			}
			msgs, _ := restHistory(t, s, alice, room, "limit=1")
			if len(msgs) != 1 || msgs[0].Name != tt.wantName {
				t.Errorf("history name = %+v; want %q", msgs, tt.wantName)
			}
		})
	}
}

func TestRESTRateLimits(t *testing.T) {
	const burst = 20
	tests := []struct {
		name    string
		env     map[string]string
		limited bool
	}{
		{"on", map[string]string{"HERALD_RATE_LIMITS": "on", "HERALD_RATE_MESSAGES": "1"}, true},
		{"off", map[string]string{"HERALD_RATE_LIMITS": "off", "HERALD_RATE_MESSAGES": "1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.env)
			alice, bob := s.token("alice"), s.token("bob")
			room := s.createRoom(alice, "general", false)
			s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bob, nil, nil)
			path := "/v1/rooms/" + room + "/messages"
			created, limited := 0, 0
			for i := range burst {
				resp, data := s.doResp("POST", path, alice, map[string]any{"text": fmt.Sprintf("burst %d", i)}, nil)
				switch resp.StatusCode {
				case http.StatusCreated:
					created++
				case http.StatusTooManyRequests:
					limited++
					restCheckError(t, "burst post "+strconv.Itoa(i), resp, data, 429, "rate_limited")
					if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
						t.Errorf("burst post %d: Retry-After = %q; want a positive number of seconds", i, resp.Header.Get("Retry-After"))
					}
				default:
					t.Fatalf("burst post %d = %d %s; want 201 or 429", i, resp.StatusCode, data)
				}
				if i < 2 && resp.StatusCode != http.StatusCreated {
					t.Errorf("burst post %d = %d; want 201 within the burst of 2", i, resp.StatusCode)
				}
			}
			if tt.limited && limited == 0 {
				t.Errorf("%d quick posts at 1/s: none limited; want 429s", burst)
			}
			if !tt.limited && created != burst {
				t.Errorf("%d quick posts with limits off: %d created; want all", burst, created)
			}
			// A refused post stores nothing.
			msgs, _ := restHistory(t, s, alice, room, "limit=200")
			if len(msgs) != created {
				t.Errorf("history holds %d messages; want the %d created", len(msgs), created)
			}
			// Limits are per user and per action.
			s.must(http.StatusCreated, "POST", path, bob, map[string]any{"text": "bob is not limited"}, nil)
			s.createRoom(alice, "other actions are not limited", false)
		})
	}
}

func TestRESTOperations(t *testing.T) {
	s := startServer(t, nil)
	alice := s.token("alice")
	// One open stream, which the metrics must count.
	s.stream(alice, "")

	contains := func(sub string) func(*testing.T, []byte) {
		return func(t *testing.T, b []byte) {
			if !bytes.Contains(b, []byte(sub)) {
				t.Errorf("body does not contain %q:\n%.500s", sub, b)
			}
		}
	}
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		status int
		ctype  string
		code   string // error code, when status >= 400
		check  func(*testing.T, []byte)
	}{
		{"healthz", "GET", "/healthz", "", 200, "application/json", "", contains(`"status":"ok"`)},
		{"readyz", "GET", "/readyz", "", 200, "application/json", "", contains(`"status":"ready"`)},
		{"metrics", "GET", "/metrics", "", 200, "text/plain", "", contains("\nherald_streams_open 1\n")},
		{"metrics count requests", "GET", "/metrics", "", 200, "text/plain", "", contains("herald_http_requests_total{")},
		{"openapi", "GET", "/openapi.yaml", "", 200, "application/yaml", "", contains("openapi:")},
		{"unknown route", "GET", "/nope", "", 404, "", "not_found", nil},
		{"unknown nested route", "GET", "/a/b/c", "", 404, "", "not_found", nil},
		{"unknown v1 route", "GET", "/v1/nope", alice, 404, "", "not_found", nil},
		{"unknown room subroute", "GET", "/v1/rooms/r_x/nope", alice, 404, "", "not_found", nil},
		// An unknown route is unknown whoever asks: no token needed to learn it.
		{"unknown v1 route without token", "GET", "/v1/nope", "", 404, "", "not_found", nil},
		// A known path with a method it does not take answers 405, as JSON,
		// before authentication: no route's handler runs.
		{"POST healthz", "POST", "/healthz", "", 405, "", "method_not_allowed", nil},
		{"DELETE openapi", "DELETE", "/openapi.yaml", "", 405, "", "method_not_allowed", nil},
		{"PUT rooms", "PUT", "/v1/rooms", alice, 405, "", "method_not_allowed", nil},
		{"GET join", "GET", "/v1/rooms/r_x/join", alice, 405, "", "method_not_allowed", nil},
		{"POST stream", "POST", "/v1/stream", alice, 405, "", "method_not_allowed", nil},
		{"PUT rooms without token", "PUT", "/v1/rooms", "", 405, "", "method_not_allowed", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, data := s.doResp(tt.method, tt.path, tt.token, nil, nil)
			what := tt.method + " " + tt.path
			if tt.status >= 400 {
				restCheckError(t, what, resp, data, tt.status, tt.code)
				return
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("%s = %d %s; want %d", what, resp.StatusCode, data, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("%s: Content-Type = %q; want %s", what, ct, tt.ctype)
			}
			if len(data) == 0 {
				t.Errorf("%s: empty body", what)
			}
			if tt.check != nil {
				tt.check(t, data)
			}
		})
	}
}

func TestRESTTokenCommand(t *testing.T) {
	dir := t.TempDir()
	noenv := func(string) string { return "" }
	var out, errw bytes.Buffer
	err := run(context.Background(), []string{"token", "alice", "--name", "Alice", "--ttl", "1h", "--data-dir", dir}, noenv, &out, &errw)
	if err != nil {
		t.Fatalf("herald token: %v (stderr %s)", err, errw.String())
	}
	tok := strings.TrimSpace(out.String())
	secret, err := os.ReadFile(filepath.Join(dir, "jwt-secret"))
	if err != nil {
		t.Fatalf("herald token did not generate a secret: %v", err)
	}
	key := []byte(strings.TrimSpace(string(secret)))
	if len(key) < 32 {
		t.Fatalf("generated secret has %d characters; want at least 32", len(key))
	}

	// The token is HS256, signed with the generated secret, for alice, and
	// lives an hour.
	var cl struct {
		Name string `json:"name"`
		jwt.RegisteredClaims
	}
	parsed, err := jwt.ParseWithClaims(tok, &cl, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || !parsed.Valid {
		t.Fatalf("token %q does not verify with %s: %v", tok, filepath.Join(dir, "jwt-secret"), err)
	}
	if cl.Subject != "alice" || cl.Name != "Alice" {
		t.Errorf("token claims = sub %q name %q; want alice Alice", cl.Subject, cl.Name)
	}
	if ttl := time.Until(cl.ExpiresAt.Time); ttl < 55*time.Minute || ttl > time.Hour+time.Minute {
		t.Errorf("token expires in %v; want about 1h", ttl)
	}
	if id, err := api.NewAuth(key, nil).Verify(tok); err != nil || id.User != "alice" || id.Name != "Alice" {
		t.Errorf("Verify(printed token) = %+v, %v; want alice, Alice", id, err)
	}

	// A second token reuses the secret instead of replacing it.
	out.Reset()
	if err := run(context.Background(), []string{"token", "bob", "--data-dir", dir}, noenv, &out, &errw); err != nil {
		t.Fatalf("second herald token: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "jwt-secret")); !bytes.Equal(again, secret) {
		t.Errorf("second herald token changed the secret")
	}
	bobTok := strings.TrimSpace(out.String())

	// serve on the same data dir, with no configured secret, accepts it.
	s := startServer(t, map[string]string{"HERALD_DATA_DIR": dir, "HERALD_JWT_SECRET": ""})
	room := s.createRoom(tok, "general", false)
	s.must(http.StatusOK, "POST", "/v1/rooms/"+room+"/join", bobTok, nil, nil)
	if m := restMembers(t, s, tok, room); !m["alice"].Owner || m["alice"].Name != "Alice" || m["bob"].User != "bob" {
		t.Errorf("members = %+v; want alice (owner, Alice) and bob", m)
	}
	h := http.Header{"Authorization": {"Bearer " + tok}}
	c := streamtest.Connect(t, s.URL+"/v1/stream", h)
	c.Expect("ready")
	// A token signed with another secret is refused by that server.
	other, _ := api.Mint([]byte("test-secret-test-secret-test-secret-0123"), "alice", "Alice", time.Hour)
	resp, data := s.doResp("GET", "/v1/rooms", other, nil, nil)
	restCheckError(t, "GET /v1/rooms with a token of another secret", resp, data, 401, "invalid_token")
}

func TestRESTCommandErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"token without user", []string{"token", "--data-dir", dir}, "usage"},
		{"token with two users", []string{"token", "alice", "bob", "--data-dir", dir}, "usage"},
		{"token with an unknown flag", []string{"token", "alice", "--bogus", "--data-dir", dir}, "bogus"},
		{"token with a bad ttl", []string{"token", "alice", "--ttl", "soon", "--data-dir", dir}, "ttl"},
		{"token with a zero ttl", []string{"token", "alice", "--ttl", "0s", "--data-dir", dir}, "ttl"},
		{"token with a negative ttl", []string{"token", "alice", "--ttl", "-1h", "--data-dir", dir}, "ttl"},
		{"token with a short secret", []string{"token", "alice", "--jwt-secret", "short"}, "jwt-secret"},
		{"serve with an unknown flag", []string{"serve", "--bogus"}, "bogus"},
		{"serve with a bad heartbeat", []string{"serve", "--heartbeat", "abc"}, "heartbeat"},
		{"serve with a stray argument", []string{"serve", "extra"}, "extra"},
		{"flags only with an unknown one", []string{"--bogus"}, "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errw bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errw)
			if err == nil || !strings.Contains(err.Error()+errw.String(), tt.want) {
				t.Errorf("run(%q) = %v; want an error about %q", tt.args, err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("run(%q) printed %q; want nothing on stdout", tt.args, out.String())
			}
		})
	}
}

func TestRESTParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		want  string // in the error; "" means valid
		check func(*testing.T, Config)
	}{
		{"defaults", nil, nil, "", func(t *testing.T, c Config) {
			if c.Addr != ":8080" || !c.RateLimits || c.QueueSize != 1024 || c.MaxBody != 64<<10 || c.MaxText != 4000 || c.Heartbeat != 15*time.Second {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{"env sets values", map[string]string{"HERALD_RATE_LIMITS": "off", "HERALD_HEARTBEAT": "250ms", "HERALD_QUEUE_SIZE": "64", "HERALD_SQLITE_SYNC": "normal"}, nil, "", func(t *testing.T, c Config) {
			if c.RateLimits || c.Heartbeat != 250*time.Millisecond || c.QueueSize != 64 || c.SQLiteSync != "NORMAL" {
				t.Errorf("config = rate limits %v heartbeat %v queue %d sync %q; want false 250ms 64 NORMAL", c.RateLimits, c.Heartbeat, c.QueueSize, c.SQLiteSync)
			}
		}},
		{"flags override env", map[string]string{"HERALD_QUEUE_SIZE": "64"}, []string{"--queue-size", "32"}, "", func(t *testing.T, c Config) {
			if c.QueueSize != 32 {
				t.Errorf("QueueSize = %d; want 32 from the flag", c.QueueSize)
			}
		}},
		{"empty env is unset", map[string]string{"HERALD_JWT_SECRET": "", "HERALD_QUEUE_SIZE": ""}, nil, "", func(t *testing.T, c Config) {
			if c.JWTSecret != "" || c.QueueSize != 1024 {
				t.Errorf("config = secret %q queue %d; want unset defaults", c.JWTSecret, c.QueueSize)
			}
		}},
		{"heartbeat not a duration", map[string]string{"HERALD_HEARTBEAT": "abc"}, nil, "HERALD_HEARTBEAT", nil},
		{"heartbeat too short", map[string]string{"HERALD_HEARTBEAT": "1ms"}, nil, "heartbeat", nil},
		{"rate limits maybe", map[string]string{"HERALD_RATE_LIMITS": "maybe"}, nil, "rate-limits", nil},
		{"negative rate", map[string]string{"HERALD_RATE_MESSAGES": "-1"}, nil, "rate-messages", nil},
		{"queue size 1", map[string]string{"HERALD_QUEUE_SIZE": "1"}, nil, "queue-size", nil},
		{"queue size not a number", map[string]string{"HERALD_QUEUE_SIZE": "lots"}, nil, "HERALD_QUEUE_SIZE", nil},
		{"max text 0", map[string]string{"HERALD_MAX_TEXT": "0"}, nil, "max-text", nil},
		{"max body tiny", map[string]string{"HERALD_MAX_BODY": "10"}, nil, "max-body", nil},
		{"short secret", map[string]string{"HERALD_JWT_SECRET": "short"}, nil, "jwt-secret", nil},
		{"sqlite sync off", map[string]string{"HERALD_SQLITE_SYNC": "OFF"}, nil, "sqlite-sync", nil},
		{"log format xml", map[string]string{"HERALD_LOG_FORMAT": "xml"}, nil, "log-format", nil},
		{"log level loud", map[string]string{"HERALD_LOG_LEVEL": "loud"}, nil, "loud", nil},
		{"negative stream cap", map[string]string{"HERALD_MAX_STREAMS": "-1"}, nil, "max-streams", nil},
		{"cluster mode", map[string]string{"HERALD_REDIS_URL": "redis://127.0.0.1:6379"}, nil, "cluster mode", nil},
		{"empty addr flag", nil, []string{"--addr", ""}, "addr", nil},
		{"bad flag value", nil, []string{"--retry", "often"}, "retry", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errw bytes.Buffer
			c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, &errw)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("parseConfig(%v, %v) = %v; want no error", tt.args, tt.env, err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseConfig(%v, %v) = %v; want an error about %q", tt.args, tt.env, err, tt.want)
			}
		})
	}
}

// TestRESTMetricsLabels: what a client sends never names a series
// (methods and paths it makes up collapse to one value each), and the
// status counted is the one sent.
func TestRESTMetricsLabels(t *testing.T) {
	s := startServer(t, nil)
	for i := range 50 {
		req, err := http.NewRequest(fmt.Sprintf("M%dTHOD", i), s.URL+fmt.Sprintf("/v1/nowhere-%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := restClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		s.do("GET", fmt.Sprintf("/made/up/%d", i), "", nil)
	}
	s.do("GET", "/v1/rooms", "", nil) // 401
	status, body := s.do("GET", "/metrics", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", status)
	}
	series := 0
	var saw401 bool
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, "herald_http_requests_total{") {
			continue
		}
		series++
		if strings.Contains(line, "M0THOD") || strings.Contains(line, "nowhere") || strings.Contains(line, "made/up") {
			t.Errorf("a series is named by what a client sent: %s", line)
		}
		if strings.Contains(line, `route="/v1/rooms"`) && strings.Contains(line, `status="401"`) {
			saw401 = true
		}
	}
	if series > 10 {
		t.Errorf("%d request series after 100 made-up requests; want a few", series)
	}
	if !saw401 {
		t.Errorf("no series counts the 401 of GET /v1/rooms without a token:\n%s", body)
	}
}

// TestRESTRateLimitsReadsAndStreams: reads and stream opens are limited
// per user too; a stream past its limit answers 200 with a retry hint, as
// EventSource needs, and other users are not affected.
func TestRESTRateLimitsReadsAndStreams(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_RATE_LIMITS": "on", "HERALD_RATE_READS": "1", "HERALD_RATE_STREAMS": "1"})
	alice, bob := s.token("alice"), s.token("bob")
	limited := 0
	for range 10 {
		resp, data := s.doResp("GET", "/v1/rooms", alice, nil, nil)
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			restCheckError(t, "a quick read", resp, data, 429, "rate_limited")
		default:
			t.Fatalf("GET /v1/rooms = %d %s; want 200 or 429", resp.StatusCode, data)
		}
	}
	if limited == 0 {
		t.Errorf("10 quick reads at 1/s: none limited; want 429s")
	}
	s.must(http.StatusOK, "GET", "/v1/rooms", bob, nil, nil)

	var reasons []string
	for range 6 {
		c := streamtest.Connect(t, s.URL+"/v1/stream", http.Header{"Authorization": {"Bearer " + alice}})
		if c.Resp.StatusCode != http.StatusOK {
			t.Fatalf("stream open = %d; want 200 always", c.Resp.StatusCode)
		}
		f, ok := c.Frame()
		if ok && f.Event != "ready" {
			if reason, limitedOpen := strings.CutPrefix(f.Comment, "closing "); limitedOpen {
				reasons = append(reasons, reason)
				if f.Retry < 1000 {
					t.Errorf("rate-limited stream's retry: %d ms; want at least a second", f.Retry)
				}
			}
		}
		c.Close()
	}
	if !slices.Contains(reasons, "rate_limited") {
		t.Errorf("6 quick stream opens at 1/s: closings %q; want rate_limited among them", reasons)
	}
	bobStream := s.stream(bob, "") // another user still opens
	bobStream.Close()
}
