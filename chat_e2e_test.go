package main

// End-to-end tests of edits, deletions, direct messages and room
// management (issue 12), over a real server and real SSE clients. As in
// stream_e2e_test.go, absence is shown by a later marker event, never by
// waiting.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldchat/herald/stream/streamtest"
)

// chatData holds the fields of the chat events' data that these tests
// look at.
type chatData struct {
	ID        int64           `json:"id"`
	Room      string          `json:"room"`
	User      string          `json:"user"`
	Text      string          `json:"text"`
	System    bool            `json:"system"`
	EditedAt  string          `json:"edited_at"`
	DeletedAt string          `json:"deleted_at"`
	Name      string          `json:"name"`
	Topic     *string         `json:"topic"`
	Owner     string          `json:"owner"`
	By        string          `json:"by"`
	Reason    string          `json:"reason"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
}

// chatMessage is a message as the API answers it.
type chatMessage struct {
	ID        int64     `json:"id"`
	Room      string    `json:"room"`
	User      string    `json:"user"`
	Text      *string   `json:"text"`
	System    bool      `json:"system"`
	EditedAt  string    `json:"edited_at"`
	DeletedAt string    `json:"deleted_at"`
	CreatedAt time.Time `json:"created_at"`
}

// chatNext returns c's next event, other than an ephemeral one, described
// as a short string: the tests compare sequences of them. ids maps message
// ids to names; rooms room ids to names.
func chatNext(t *testing.T, c *streamtest.Client, rooms map[string]string, ids map[int64]string) string {
	t.Helper()
	return chatDescribe(t, sseNext(t, c), rooms, ids)
}

// chatDescribe describes an event for chatNext.
func chatDescribe(t *testing.T, e sseEvent, rooms map[string]string, ids map[int64]string) string {
	t.Helper()
	var d chatData
	if err := json.Unmarshal([]byte(e.Data), &d); err != nil {
		t.Fatalf("event %s data %q: %v", e.Event, e.Data, err)
	}
	if !e.HasID {
		t.Fatalf("event %s %s has no id; want every logged event to have one", e.Event, e.Data)
	}
	room := rooms[d.Room]
	switch e.Event {
	case "message:created":
		if d.System {
			return fmt.Sprintf("created %s %q (system)", room, d.Text)
		}
		return fmt.Sprintf("created %s %q", room, d.Text)
	case "message:updated":
		if d.EditedAt == "" {
			t.Errorf("message:updated %s has no edited_at", e.Data)
		}
		return fmt.Sprintf("updated %s %s %q", room, ids[d.ID], d.Text)
	case "message:deleted":
		if d.Text != "" || d.DeletedAt == "" {
			t.Errorf("message:deleted %s: want no text and deleted_at", e.Data)
		}
		return fmt.Sprintf("deleted %s %s", room, ids[d.ID])
	case "room:updated":
		topic := "(none)"
		if d.Topic != nil {
			topic = *d.Topic
		}
		return strings.TrimSpace(fmt.Sprintf("room:updated %s %q %q%s%s", room, d.Name, topic, tagged(" owner=", d.Owner), tagged(" by ", d.By)))
	case "room:deleted":
		return fmt.Sprintf("room:deleted %s%s", room, tagged(" by ", d.By))
	case "custom":
		return fmt.Sprintf("custom %s %s %s", room, d.Event, d.Data)
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", e.Event, room, d.User, d.Reason))
}

// tagged is prefix and v, or nothing when v is empty.
func tagged(prefix, v string) string {
	if v == "" {
		return ""
	}
	return prefix + v
}

// chatUntil reads c until the message marker and returns the events before
// it, described.
func chatUntil(t *testing.T, c *streamtest.Client, marker string, rooms map[string]string, ids map[int64]string) []string {
	t.Helper()
	var out []string
	for {
		e := sseNext(t, c)
		if e.isMessage(marker) {
			return out
		}
		out = append(out, chatDescribe(t, e, rooms, ids))
	}
}

func (sc *streamScene) msgPath(room string, id int64) string {
	return fmt.Sprintf("/v1/rooms/%s/messages/%d", room, id)
}

// Edits and deletions reach every member's streams, in the room's order,
// live and by replay, also after a restart; a member removed before an
// edit gets none of the room's later changes; history has the current
// text, and a tombstone for the deleted message.
func TestChatEditsAndDeletes(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "general", false)
	side := sc.room("carol", "side", false)
	sc.join("bob", room)
	sc.join("carol", room)
	bob1, bob2, carol := sc.open("bob", ""), sc.open("bob", ""), sc.open("carol", "")
	// The joins may reach the log after the streams opened: once this is
	// on every stream, everything before it is.
	sc.say("alice", room, "start")
	for _, c := range []*streamtest.Client{bob1, bob2, carol} {
		sseEventsBefore(t, c, "start")
	}
	from := bob1.LastID

	m1 := sc.say("bob", room, "helo")
	m2 := sc.say("alice", room, "two")
	var edited chatMessage
	sc.must(http.StatusOK, "PATCH", sc.msgPath(room, m1), sc.tok("bob"), map[string]string{"text": "hello"}, &edited)
	if edited.ID != m1 || edited.Text == nil || *edited.Text != "hello" || edited.EditedAt == "" {
		t.Errorf("PATCH answer = %+v; want message %d with the new text and edited_at", edited, m1)
	}
	sc.remove("alice", room, "carol")
	var tomb chatMessage
	sc.must(http.StatusOK, "DELETE", sc.msgPath(room, m1), sc.tok("bob"), nil, &tomb)
	if tomb.ID != m1 || tomb.Text != nil || tomb.DeletedAt == "" || tomb.User != "bob" {
		t.Errorf("DELETE answer = %+v; want a tombstone of bob's message %d: no text, deleted_at", tomb, m1)
	}
	// The owner may delete any message, and edits stay the author's.
	sc.must(http.StatusOK, "PATCH", sc.msgPath(room, m2), sc.tok("alice"), map[string]string{"text": "two!"}, nil)
	sc.say("alice", room, "end")
	sc.say("carol", side, "marker")

	names := map[string]string{room: "general", side: "side"}
	ids := map[int64]string{m1: "m1", m2: "m2"}
	want := []string{
		`created general "helo"`, `created general "two"`, `updated general m1 "hello"`,
		"member:left general carol removed", "deleted general m1", `updated general m2 "two!"`,
	}
	for i, c := range []*streamtest.Client{bob1, bob2} {
		if got := chatUntil(t, c, "end", names, ids); !slices.Equal(got, want) {
			t.Errorf("bob's stream %d = %q; want %q", i+1, got, want)
		}
	}
	if got := chatUntil(t, carol, "marker", names, ids); !slices.Equal(got, want[:4]) {
		t.Errorf("carol's stream = %q; want %q and nothing of the room after her removal", got, want[:4])
	}

	hist, _ := restHistory(t, sc.testServer, sc.tok("alice"), room, "limit=10")
	var got []string
	for _, m := range hist {
		got = append(got, fmt.Sprintf("%s %q edited:%v deleted:%v", m.User, m.Text, m.ID == m2, m.ID == m1))
	}
	wantHist := []string{
		`alice "start" edited:false deleted:false`, `bob "" edited:false deleted:true`,
		`alice "two!" edited:true deleted:false`, `alice "end" edited:false deleted:false`,
	}
	if !slices.Equal(got, wantHist) {
		t.Errorf("history = %q; want %q", got, wantHist)
	}
	_, raw := sc.do("GET", "/v1/rooms/"+room+"/messages?limit=10", sc.tok("alice"), nil)
	var page struct{ Messages []chatMessage }
	if err := json.Unmarshal(raw, &page); err != nil {
		t.Fatal(err)
	}
	if m := page.Messages[1]; m.Text != nil || m.DeletedAt == "" {
		t.Errorf("history's deleted message = %+v; want no text, deleted_at", m)
	}
	if m := page.Messages[2]; m.EditedAt == "" || m.DeletedAt != "" {
		t.Errorf("history's edited message = %+v; want edited_at", m)
	}

	// By replay, and by replay after a restart: the same.
	for _, when := range []string{"replay", "replay after a restart"} {
		if when != "replay" {
			sc.restartServer()
		}
		again := sc.open("bob", from)
		if got := chatUntil(t, again, "end", names, ids); !slices.Equal(got, want) {
			t.Errorf("%s: bob = %q; want %q", when, got, want)
		}
		again.Close()
	}
}

// Bad edits and deletions are refused with a clear error and change
// nothing: the marker that follows is the next event.
func TestChatEditErrors(t *testing.T) {
	sc := newStreamScene(t, map[string]string{"HERALD_MAX_TEXT": "10", "HERALD_EDIT_WINDOW": "5ms"})
	room := sc.room("alice", "general", false)
	private := sc.room("alice", "private", true)
	sc.join("bob", room)
	watch := sc.open("alice", "")
	sc.say("alice", room, "start")
	sseEventsBefore(t, watch, "start")
	mine := sc.say("bob", room, "bob's")
	hers := sc.say("alice", room, "alice's")
	secret := sc.say("alice", private, "secret")
	gone := sc.say("bob", room, "gone")
	sc.must(http.StatusOK, "DELETE", sc.msgPath(room, gone), sc.tok("bob"), nil, nil)
	sc.say("alice", room, "ready")
	sseEventsBefore(t, watch, "ready")

	text := func(s string) map[string]string { return map[string]string{"text": s} }
	tests := []struct {
		name         string
		method, path string
		user         string
		body         any
		status       int
		code         string
	}{
		{"empty text", "PATCH", sc.msgPath(room, mine), "bob", text("  "), http.StatusUnprocessableEntity, "invalid_field"},
		{"text too long", "PATCH", sc.msgPath(room, mine), "bob", text("12345678901"), http.StatusUnprocessableEntity, "too_long"},
		{"control characters", "PATCH", sc.msgPath(room, mine), "bob", text("a\x00b"), http.StatusUnprocessableEntity, "invalid_characters"},
		{"no body", "PATCH", sc.msgPath(room, mine), "bob", nil, http.StatusBadRequest, "malformed_json"},
		{"text not a string", "PATCH", sc.msgPath(room, mine), "bob", `{"text":1}`, http.StatusUnprocessableEntity, "invalid_field"},
		{"someone else's", "PATCH", sc.msgPath(room, hers), "bob", text("mine"), http.StatusForbidden, "not_author"},
		{"delete someone else's", "DELETE", sc.msgPath(room, hers), "bob", nil, http.StatusForbidden, "not_author"},
		{"a deleted one", "PATCH", sc.msgPath(room, gone), "bob", text("back"), http.StatusConflict, "message_deleted"},
		{"in a room one is not in", "PATCH", sc.msgPath(private, secret), "bob", text("x"), http.StatusNotFound, "message_not_found"},
		{"delete in a room one is not in", "DELETE", sc.msgPath(private, secret), "bob", nil, http.StatusNotFound, "message_not_found"},
		{"in no room", "PATCH", sc.msgPath("r_nope", mine), "bob", text("x"), http.StatusNotFound, "message_not_found"},
		{"of another room", "PATCH", sc.msgPath(private, mine), "alice", text("x"), http.StatusNotFound, "message_not_found"},
		{"no such message", "PATCH", sc.msgPath(room, gone+100), "bob", text("x"), http.StatusNotFound, "message_not_found"},
		{"not a message id", "PATCH", "/v1/rooms/" + room + "/messages/abc", "bob", text("x"), http.StatusNotFound, "message_not_found"},
		{"no token", "PATCH", sc.msgPath(room, mine), "", text("x"), http.StatusUnauthorized, "unauthenticated"},
		{"PUT", "PUT", sc.msgPath(room, mine), "bob", text("x"), http.StatusMethodNotAllowed, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := ""
			if tt.user != "" {
				token = sc.tok(tt.user)
			}
			resp, data := sc.in(t).doResp(tt.method, tt.path, token, tt.body, nil)
			restCheckError(t, tt.method+" "+tt.path, resp, data, tt.status, tt.code)
		})
	}
	// Past the window (5ms): posts until one is stamped after it.
	var posted, tick chatMessage
	sc.must(http.StatusCreated, "POST", "/v1/rooms/"+room+"/messages", sc.tok("bob"), text("late"), &posted)
	for tick = posted; tick.ID == posted.ID || !windowPassed(t, posted, tick); {
		sc.must(http.StatusCreated, "POST", "/v1/rooms/"+room+"/messages", sc.tok("alice"), text("tick"), &tick)
	}
	resp, data := sc.doResp("PATCH", sc.msgPath(room, posted.ID), sc.tok("bob"), text("later"), nil)
	restCheckError(t, "an edit past the window", resp, data, http.StatusForbidden, "edit_window_closed")
	// Deleting stays allowed.
	sc.must(http.StatusOK, "DELETE", sc.msgPath(room, posted.ID), sc.tok("bob"), nil, nil)

	sc.say("alice", room, "marker")
	var got []string
	for _, e := range sseEventsBefore(t, watch, "marker") {
		if !(e.Event == "message:created" && e.p.Text == "tick") {
			got = append(got, e.describe(nil))
		}
	}
	if want := []string{`message:created ` + room + ` "late"`, "message:deleted " + room + " bob"}; !slices.Equal(got, want) {
		t.Errorf("events of the refused requests = %q; want only the post and deletion that succeeded: %q", got, want)
	}
}

// windowPassed reports whether message b was stamped more than 5ms (the
// edit window of the test) after a.
func windowPassed(t *testing.T, a, b chatMessage) bool {
	t.Helper()
	return b.CreatedAt.Sub(a.CreatedAt) > 5*time.Millisecond
}

// chatRoom is a room as the API answers it, with the fields of a listing
// and of details.
type chatRoom struct {
	ID           string       `json:"id"`
	Kind         string       `json:"kind"`
	Name         string       `json:"name"`
	Topic        string       `json:"topic"`
	Private      bool         `json:"private"`
	Owner        *string      `json:"owner"`
	Unread       int64        `json:"unread"`
	LastRead     int64        `json:"last_read"`
	LastMessage  *chatMessage `json:"last_message"`
	LastActivity string       `json:"last_activity_at"`
	Peer         *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"peer"`
	MemberCount int64 `json:"member_count"`
	Member      bool  `json:"member"`
}

func (sc *streamScene) rooms(user string) []chatRoom {
	sc.t.Helper()
	var list struct{ Rooms []chatRoom }
	sc.must(http.StatusOK, "GET", "/v1/rooms", sc.tok(user), nil, &list)
	return list.Rooms
}

// A DM is one room per pair, whoever opens it and however many open it at
// once: created by the first call (201), found by the others (200), listed
// as a dm with its peer, entered by no one else, hidden by leaving until
// its next message. Here the peer is added at once (--member-adds
// direct); TestConsentDMs has the default, which asks them.
func TestChatDMs(t *testing.T) {
	sc := newStreamScene(t, map[string]string{"HERALD_MEMBER_ADDS": "direct"})
	// carol and dave are known to Herald; erin is not.
	sc.room("carol", "hello", false)
	sc.room("dave", "hello", false)
	carol := sc.open("carol", "")

	// Both sides at once, several times each.
	const calls = 8
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		ids    = map[string]bool{}
		status = map[int]int{}
	)
	for i := range calls {
		me, other := []string{"carol", "dave"}[i%2], []string{"dave", "carol"}[i%2]
		wg.Go(func() {
			code, data := sc.do("POST", "/v1/dms", sc.tok(me), map[string]string{"user": other})
			var r chatRoom
			if err := json.Unmarshal(data, &r); err != nil {
				t.Errorf("POST /v1/dms = %d %s", code, data)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[r.ID] = true
			status[code]++
		})
	}
	wg.Wait()
	if len(ids) != 1 || status[http.StatusCreated] != 1 || status[http.StatusOK] != calls-1 {
		t.Fatalf("%d racing POST /v1/dms from both sides: rooms %v, statuses %v; want one room, one 201 and %d 200", calls, ids, status, calls-1)
	}
	var dm string
	for id := range ids {
		dm = id
	}
	// carol's stream learns of it live, from her own join: dave's too,
	// when it came after hers, and each once.
	sc.say("dave", dm, "hi carol")
	got := chatUntil(t, carol, "hi carol", map[string]string{dm: "dm"}, nil)
	if len(got) == 2 && got[1] == "member:joined dm dave" {
		got = got[:1]
	}
	if want := []string{"member:joined dm carol"}; !slices.Equal(got, want) {
		t.Errorf("carol's stream before dave's message = %q; want her own join, then maybe dave's", got)
	}
	var listed *chatRoom
	for _, r := range sc.rooms("carol") {
		if r.ID == dm {
			listed = &r
		}
	}
	if listed == nil || listed.Kind != "dm" || !listed.Private || listed.Owner != nil || listed.Peer == nil || listed.Peer.ID != "dave" || listed.Peer.Name != "Dave" {
		t.Fatalf("carol's listing of the dm = %+v; want kind dm, private, no owner, dave as peer", listed)
	}

	tests := []struct {
		name         string
		method, path string
		user         string
		body         any
		status       int
		code         string
	}{
		{"with oneself", "POST", "/v1/dms", "carol", map[string]string{"user": "carol"}, http.StatusUnprocessableEntity, "dm_with_self"},
		{"with an unknown user", "POST", "/v1/dms", "carol", map[string]string{"user": "erin"}, http.StatusNotFound, "user_not_found"},
		{"with no one", "POST", "/v1/dms", "carol", map[string]string{}, http.StatusUnprocessableEntity, "invalid_field"},
		{"with a bad id", "POST", "/v1/dms", "carol", map[string]string{"user": "e rin"}, http.StatusUnprocessableEntity, "invalid_field"},
		{"add a member", "POST", "/v1/rooms/" + dm + "/members", "carol", map[string]string{"user": "erin"}, http.StatusForbidden, "dm_room"},
		{"remove the peer", "DELETE", "/v1/rooms/" + dm + "/members/dave", "carol", nil, http.StatusForbidden, "dm_room"},
		{"rename", "PATCH", "/v1/rooms/" + dm, "carol", map[string]string{"name": "x"}, http.StatusForbidden, "dm_room"},
		{"close", "DELETE", "/v1/rooms/" + dm, "carol", nil, http.StatusForbidden, "dm_room"},
		{"join from outside", "POST", "/v1/rooms/" + dm + "/join", "erin", nil, http.StatusForbidden, "private_room"},
		{"read from outside", "GET", "/v1/rooms/" + dm + "/messages", "erin", nil, http.StatusForbidden, "not_member"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, data := sc.in(t).doResp(tt.method, tt.path, sc.tok(tt.user), tt.body, nil)
			restCheckError(t, tt.method+" "+tt.path, resp, data, tt.status, tt.code)
		})
	}

	// Leaving hides it, for carol alone; the next message shows it again.
	inList := func(user string) bool {
		for _, r := range sc.rooms(user) {
			if r.ID == dm {
				return true
			}
		}
		return false
	}
	sc.leave("carol", dm)
	if inList("carol") || !inList("dave") {
		t.Fatalf("after carol left: listed for carol %v, for dave %v; want hidden for carol only", inList("carol"), inList("dave"))
	}
	sc.say("dave", dm, "still there?")
	if e := chatNext(t, carol, map[string]string{dm: "dm"}, nil); e != `created dm "still there?"` {
		t.Errorf("carol's stream after hiding = %s; want the message: she stays a member", e)
	}
	if !inList("carol") {
		t.Errorf("after dave's message the dm is still hidden for carol")
	}
}

// The owner manages a room: details for members (and anyone, for a public
// room), name and topic with room:updated, hand-over, and closing it with
// a room:deleted to each member, after which nothing more of it arrives,
// live or by replay. The list is ordered by activity.
func TestChatRoomManagement(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "general", false)
	other := sc.room("carol", "other", false)
	sc.join("bob", room)
	sc.join("bob", other)
	bob := sc.open("bob", "")
	sc.say("carol", other, "start")
	sseEventsBefore(t, bob, "start")
	from := bob.LastID
	msg := sc.say("bob", room, "hi")

	var d chatRoom
	sc.must(http.StatusOK, "GET", "/v1/rooms/"+room, sc.tok("bob"), nil, &d)
	if d.ID != room || d.MemberCount != 2 || !d.Member || d.Owner == nil || *d.Owner != "alice" || d.LastMessage == nil || d.LastMessage.ID != msg {
		t.Errorf("GET /v1/rooms/%s for bob = %+v; want 2 members, alice the owner, bob's message last", room, d)
	}
	sc.must(http.StatusOK, "GET", "/v1/rooms/"+room, sc.tok("erin"), nil, &d)
	if d.Member || d.MemberCount != 2 || d.LastMessage != nil {
		t.Errorf("GET of a public room by a stranger = %+v; want its settings only", d)
	}
	private := sc.room("alice", "private", true)
	resp, data := sc.doResp("GET", "/v1/rooms/"+private, sc.tok("erin"), nil, nil)
	restCheckError(t, "GET of a private room by a stranger", resp, data, http.StatusForbidden, "not_member")

	// The list: the most recently active first.
	sc.say("carol", other, "newer")
	if rooms := sc.rooms("bob"); len(rooms) != 2 || rooms[0].ID != other || rooms[1].ID != room {
		t.Errorf("bob's rooms = %+v; want other (newest message) before general", rooms)
	}

	errs := []struct {
		name   string
		user   string
		method string
		body   any
		status int
		code   string
	}{
		{"rename by a member", "bob", "PATCH", map[string]string{"name": "mine"}, http.StatusForbidden, "not_owner"},
		{"empty patch", "alice", "PATCH", map[string]any{}, http.StatusUnprocessableEntity, "invalid_field"},
		{"blank name", "alice", "PATCH", map[string]string{"name": " "}, http.StatusUnprocessableEntity, "invalid_field"},
		{"long topic", "alice", "PATCH", map[string]string{"topic": strings.Repeat("t", 251)}, http.StatusUnprocessableEntity, "too_long"},
		{"hand over to a stranger", "alice", "PATCH", map[string]string{"owner": "erin"}, http.StatusUnprocessableEntity, "owner_not_member"},
		{"close by a member", "bob", "DELETE", nil, http.StatusForbidden, "not_owner"},
	}
	for _, tt := range errs {
		resp, data := sc.doResp(tt.method, "/v1/rooms/"+room, sc.tok(tt.user), tt.body, nil)
		restCheckError(t, tt.name, resp, data, tt.status, tt.code)
	}
	var updated chatRoom
	sc.must(http.StatusOK, "PATCH", "/v1/rooms/"+room, sc.tok("alice"), map[string]string{"name": "lobby", "topic": "say hi"}, &updated)
	if updated.Name != "lobby" || updated.Topic != "say hi" {
		t.Errorf("PATCH answer = %+v; want lobby, say hi", updated)
	}
	sc.must(http.StatusOK, "PATCH", "/v1/rooms/"+room, sc.tok("alice"), map[string]string{"name": "lobby"}, nil) // no change
	sc.must(http.StatusOK, "PATCH", "/v1/rooms/"+room, sc.tok("alice"), map[string]string{"owner": "bob"}, nil)
	sc.must(http.StatusNoContent, "DELETE", "/v1/rooms/"+room, sc.tok("bob"), nil, nil)
	resp, data = sc.doResp("GET", "/v1/rooms/"+room, sc.tok("bob"), nil, nil)
	restCheckError(t, "GET of a closed room", resp, data, http.StatusNotFound, "room_not_found")
	resp, data = sc.doResp("POST", "/v1/rooms/"+room+"/messages", sc.tok("alice"), map[string]string{"text": "anyone?"}, nil)
	restCheckError(t, "a post to a closed room", resp, data, http.StatusNotFound, "room_not_found")
	sc.say("carol", other, "marker")

	names := map[string]string{room: "general", other: "other"}
	want := []string{
		`created general "hi"`, `created other "newer"`,
		`room:updated general "lobby" "say hi" owner=alice by alice`,
		`room:updated general "lobby" "say hi" owner=bob by alice`,
		"room:deleted general by bob",
	}
	if got := chatUntil(t, bob, "marker", names, nil); !slices.Equal(got, want) {
		t.Errorf("bob's stream = %q; want %q, and nothing of the room after its deletion", got, want)
	}
	again := sc.open("bob", from)
	if got := chatUntil(t, again, "marker", names, nil); !slices.Equal(got, want) {
		t.Errorf("bob's replay = %q; want %q", got, want)
	}
	if rooms := sc.rooms("bob"); len(rooms) != 1 || rooms[0].ID != other {
		t.Errorf("bob's rooms after the deletion = %+v; want other alone", rooms)
	}
}
