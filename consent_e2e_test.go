package main

// End-to-end tests of consent, caps and owners who leave (issue 11), over
// a real server and real SSE clients: nothing about a user reaches anyone
// they did not choose to share a room with, no join passes a cap, and no
// room is left with an owner who is not in it.

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// invitation is an entry of GET /v1/invitations, and the data of
// invitation:created.
type invitation struct {
	Room    string `json:"room"`
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Private bool   `json:"private"`
	By      string `json:"by"`
	ByName  string `json:"by_name"`
}

func (sc *streamScene) invite(owner, room, user string) []byte {
	sc.t.Helper()
	status, body := sc.do("POST", "/v1/rooms/"+room+"/members", sc.tok(owner), map[string]string{"user": user})
	if status != http.StatusAccepted {
		sc.t.Fatalf("%s invites %s to %s = %d %s; want 202", owner, user, room, status, body)
	}
	return body
}

func (sc *streamScene) invitations(user string) []invitation {
	sc.t.Helper()
	var out struct{ Invitations []invitation }
	sc.must(http.StatusOK, "GET", "/v1/invitations", sc.tok(user), nil, &out)
	return out.Invitations
}

// mentions reports the events of evs that say anything about user.
func mentions(evs []sseEvent, user string) []string {
	var out []string
	for _, e := range evs {
		if strings.Contains(e.Data, `"`+user+`"`) {
			out = append(out, e.Event+" "+e.Data)
		}
	}
	return out
}

// An owner's invitation reaches the invitee alone, live and by replay;
// the room's members learn nothing about the invitee, not even whether
// they exist, until the invitee accepts by joining. A declined invitation
// looks open to the owner, and asking again asks nobody.
func TestConsentInvitations(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "secret", true)
	lobby := sc.room("alice", "lobby", false)
	for _, u := range []string{"bob", "carol", "dave"} {
		sc.join(u, lobby)
	}
	alice, bob, carol, erin := sc.open("alice", ""), sc.open("bob", ""), sc.open("carol", ""), sc.open("erin", "")
	daveFrom := sc.open("dave", "").LastID

	// The answer is the same for bob, who exists, and for a stranger.
	answer := sc.invite("alice", room, "bob")
	if stranger := sc.invite("alice", room, "stranger"); string(stranger) != strings.Replace(string(answer), `"bob"`, `"stranger"`, 1) {
		t.Errorf("inviting a stranger answers %s; inviting bob %s; want the same answer", stranger, answer)
	}
	if again := sc.invite("alice", room, "bob"); string(again) != string(answer) {
		t.Errorf("inviting bob again answers %s; want %s", again, answer)
	}
	e := sseNext(t, bob)
	var inv invitation
	json.Unmarshal([]byte(e.Data), &inv)
	if e.Event != "invitation:created" || !e.HasID || inv != (invitation{Room: room, Kind: "room", Name: "secret", Private: true, By: "alice", ByName: "Alice"}) {
		t.Fatalf("bob's stream after the invitation = %s %s (id %v); want invitation:created of alice's secret room, with an id", e.Event, e.Data, e.HasID)
	}
	if got := sc.invitations("bob"); len(got) != 1 || got[0] != inv {
		t.Errorf("GET /v1/invitations (bob) = %+v; want %+v", got, inv)
	}

	// Nothing about erin, who shares no room with alice, reaches alice
	// while erin is invited: not her name, not her presence.
	sc.invite("alice", room, "erin")
	if e := sseNext(t, erin); e.Event != "invitation:created" {
		t.Fatalf("erin's stream = %s; want her invitation", e.Event)
	}
	sc.say("alice", room, "marker 1")
	if got := mentions(sseEventsBefore(t, alice, "marker 1"), "erin"); len(got) != 0 {
		t.Errorf("alice's stream while erin is invited says of her: %q", got)
	}
	resp, data := sc.doResp("GET", "/v1/presence?user=erin", sc.tok("alice"), nil, nil)
	restCheckError(t, "alice asks erin's presence while erin is invited", resp, data, http.StatusNotFound, "user_not_found")
	var members struct{ Members []struct{ User string } }
	sc.must(http.StatusOK, "GET", "/v1/rooms/"+room+"/members", sc.tok("alice"), nil, &members)
	if len(members.Members) != 1 {
		t.Errorf("members while bob and erin are invited = %+v; want alice alone", members.Members)
	}

	// Erin accepts by joining: now alice sees her, with her name.
	sc.join("erin", room)
	if got := sseDescribeAll(sseRead(t, erin, 2), map[string]string{room: "secret"}); !slices.Equal(got, []string{"member:joined secret erin", "invitation:deleted secret  joined"}) {
		t.Errorf("erin's stream as she joins = %q; want her join, then her invitation's end", got)
	}
	e = sseNext(t, alice)
	if e.Event != "member:joined" || !strings.Contains(e.Data, `"name":"Erin"`) {
		t.Errorf("alice's stream as erin joins = %s %s; want member:joined with her name", e.Event, e.Data)
	}
	if status, _ := sc.do("GET", "/v1/presence?user=erin", sc.tok("alice"), nil); status != http.StatusOK {
		t.Errorf("alice asks erin's presence once they share the room = %d; want 200", status)
	}
	if got := sc.invitations("erin"); len(got) != 0 {
		t.Errorf("erin's invitations after joining = %+v; want none", got)
	}

	// Carol declines: alice cannot tell, asking again reaches nobody, and
	// carol cannot join.
	sc.invite("alice", room, "carol")
	if e := sseNext(t, carol); e.Event != "invitation:created" {
		t.Fatalf("carol's stream = %s; want her invitation", e.Event)
	}
	sc.must(http.StatusNoContent, "DELETE", "/v1/invitations/"+room, sc.tok("carol"), nil, nil)
	if e := sseNext(t, carol); e.Event != "invitation:deleted" || e.p.Reason != "declined" {
		t.Errorf("carol's stream after declining = %s %s; want invitation:deleted declined", e.Event, e.Data)
	}
	if again := sc.invite("alice", room, "carol"); string(again) != strings.Replace(string(answer), `"bob"`, `"carol"`, 1) {
		t.Errorf("inviting carol after she declined answers %s; want the answer of an open invitation", again)
	}
	sc.say("alice", lobby, "marker 2")
	if got := sseDescribeAll(sseEventsBefore(t, carol, "marker 2"), nil); len(got) != 0 {
		t.Errorf("carol's stream after alice asked again = %q; want nothing", got)
	}
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"POST", "/v1/rooms/" + room + "/join", http.StatusForbidden, "private_room"},
		{"DELETE", "/v1/invitations/" + room, http.StatusNotFound, "invitation_not_found"},
	} {
		resp, data := sc.doResp(c.method, c.path, sc.tok("carol"), nil, nil)
		restCheckError(t, "carol: "+c.method+" "+c.path, resp, data, c.status, c.code)
	}

	// Alice withdraws an open invitation and a declined one alike; dave's
	// ends on his stream, and his resumed stream replays both events, also
	// after a restart.
	sc.invite("alice", room, "dave")
	sc.remove("alice", room, "dave")
	sc.remove("alice", room, "carol")
	resp, data = sc.doResp("DELETE", "/v1/rooms/"+room+"/members/dave", sc.tok("alice"), nil, nil)
	restCheckError(t, "withdrawing dave's invitation again", resp, data, http.StatusNotFound, "member_not_found")
	sc.say("alice", lobby, "marker 3")
	want := []string{"invitation:created secret", "invitation:deleted secret  withdrawn"}
	for _, restart := range []bool{false, true} {
		if restart {
			sc.restartServer()
		}
		dave := sc.open("dave", daveFrom)
		var got []string
		for _, e := range sseEventsBefore(t, dave, "marker 3") {
			if e.p.Room == room {
				got = append(got, e.describe(map[string]string{room: "secret"}))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("dave's replay (restart %v) = %q; want %q", restart, got, want)
		}
	}
}

// A DM asks its peer as a room's owner does: the answer is the same for
// anyone, and until the peer accepts, by opening it too, the opener sees
// their id alone.
func TestConsentDMs(t *testing.T) {
	sc := newStreamScene(t, nil)
	sc.room("bob", "bob was here", false) // bob is known, named Bob
	bob := sc.open("bob", "")
	var dm, ghost chatRoom
	sc.must(http.StatusCreated, "POST", "/v1/dms", sc.tok("alice"), map[string]string{"user": "bob"}, &dm)
	sc.must(http.StatusCreated, "POST", "/v1/dms", sc.tok("alice"), map[string]string{"user": "nobody"}, &ghost)
	peer := func(user, room string) *chatRoom {
		for _, r := range sc.rooms(user) {
			if r.ID == room {
				return &r
			}
		}
		return nil
	}
	if r := peer("alice", dm.ID); r == nil || r.Peer == nil || r.Peer.ID != "bob" || r.Peer.Name != "" {
		t.Errorf("alice's dm with bob before he accepts = %+v; want bob's id without his name", r)
	}
	e := sseNext(t, bob)
	var inv invitation
	json.Unmarshal([]byte(e.Data), &inv)
	if e.Event != "invitation:created" || inv.Room != dm.ID || inv.Kind != "dm" || inv.By != "alice" {
		t.Fatalf("bob's stream = %s %s; want alice's dm invitation", e.Event, e.Data)
	}
	sc.say("alice", dm.ID, "hi bob")
	var again chatRoom
	sc.must(http.StatusOK, "POST", "/v1/dms", sc.tok("bob"), map[string]string{"user": "alice"}, &again)
	if again.ID != dm.ID {
		t.Fatalf("bob opens his dm with alice = %s; want %s, accepted", again.ID, dm.ID)
	}
	if r := peer("alice", dm.ID); r == nil || r.Peer == nil || r.Peer.Name != "Bob" {
		t.Errorf("alice's dm after bob accepted = %+v; want Bob as its peer", r)
	}
	var page struct{ Messages []struct{ Text string } }
	sc.must(http.StatusOK, "GET", "/v1/rooms/"+dm.ID+"/messages", sc.tok("bob"), nil, &page)
	if len(page.Messages) != 1 || page.Messages[0].Text != "hi bob" {
		t.Errorf("bob's history of the dm = %+v; want alice's message from before he accepted", page.Messages)
	}
}

// --member-adds direct keeps the old way: the owner adds, nobody is
// asked.
func TestConsentDirectAdds(t *testing.T) {
	sc := newStreamScene(t, directAdds)
	room := sc.room("alice", "team", true)
	var m struct {
		Changed bool
		Invited bool
	}
	sc.must(http.StatusCreated, "POST", "/v1/rooms/"+room+"/members", sc.tok("alice"), map[string]string{"user": "bob"}, &m)
	if !m.Changed || m.Invited {
		t.Errorf("a direct add answers %+v; want changed, not invited", m)
	}
	resp, data := sc.doResp("POST", "/v1/dms", sc.tok("alice"), map[string]string{"user": "nobody"}, nil)
	restCheckError(t, "a direct dm with no one", resp, data, http.StatusNotFound, "user_not_found")
}

// The caps answer 409 with their codes, whatever the way in, and two
// joins racing for the last place never both pass.
func TestCaps(t *testing.T) {
	sc := newStreamScene(t, map[string]string{"HERALD_MAX_ROOMS_PER_USER": "3", "HERALD_MAX_ROOM_MEMBERS": "4", "HERALD_API_KEYS": apiKeyNew})
	testCaps(t, []*streamScene{sc})
}

func TestClusterCaps(t *testing.T) {
	c := startCluster(t, 2, false, false, map[string]string{"HERALD_MAX_ROOMS_PER_USER": "3", "HERALD_MAX_ROOM_MEMBERS": "4", "HERALD_API_KEYS": apiKeyNew})
	testCaps(t, c.nodes)
}

func testCaps(t *testing.T, nodes []*streamScene) {
	sc := nodes[0]
	room := sc.room("alice", "small", false)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		status = map[int]int{}
	)
	for i := range 12 {
		n := nodes[i%len(nodes)]
		wg.Go(func() {
			code, body := n.do("POST", "/v1/rooms/"+room+"/join", n.tok(fmt.Sprint("u", i)), nil)
			if code != http.StatusOK && !strings.Contains(string(body), `"room_full"`) {
				t.Errorf("racing join = %d %s; want 200 or room_full", code, body)
			}
			mu.Lock()
			status[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if status[http.StatusOK] != 3 || status[http.StatusConflict] != 9 {
		t.Errorf("12 joins racing for 3 places: statuses %v; want 3 × 200, 9 × 409", status)
	}
	for _, c := range []struct {
		name         string
		method, path string
		key          bool
		body         any
		code         string
	}{
		{"the server API adds a fifth", "POST", "/v1/server/rooms/" + room + "/members", true, map[string]string{"user": "v"}, "room_full"},
	} {
		h := http.Header{}
		if c.key {
			h.Set("X-API-Key", apiKeyNew)
		}
		resp, data := sc.doResp(c.method, c.path, "", c.body, h)
		restCheckError(t, c.name, resp, data, http.StatusConflict, c.code)
	}

	// Bob may be in three rooms: the fourth is refused, however he would
	// get in.
	for i := range 2 {
		sc.room("bob", fmt.Sprint("bob's ", i), false)
	}
	third := sc.room("carol", "carol's", false)
	sc.join("bob", third)
	fourth := sc.room("dave", "dave's", false)
	for _, c := range []struct {
		name         string
		method, path string
		body         any
	}{
		{"create a room", "POST", "/v1/rooms", map[string]any{"name": "one more"}},
		{"join one", "POST", "/v1/rooms/" + fourth + "/join", nil},
		{"open a dm", "POST", "/v1/dms", map[string]string{"user": "dave"}},
	} {
		resp, data := sc.doResp(c.method, c.path, sc.tok("bob"), c.body, nil)
		restCheckError(t, "bob in 3 rooms: "+c.name, resp, data, http.StatusConflict, "too_many_rooms")
	}
	if rooms := sc.rooms("bob"); len(rooms) != 3 {
		t.Errorf("bob's rooms after the refusals = %d; want 3", len(rooms))
	}
	sc.leave("bob", third)
	sc.join("bob", fourth)
}

// A user in as many rooms as the default cap lets (1,000, more than one
// statement of the durable log names) resumes across a restart with
// every event missed, from every room, in order; one room more is
// refused.
func TestCapsReplayAcrossManyRooms(t *testing.T) {
	sc := newStreamScene(t, nil)
	var rooms []string
	for i := range 1000 {
		rooms = append(rooms, sc.room("many", fmt.Sprint("r", i), false))
	}
	resp, data := sc.doResp("POST", "/v1/rooms", sc.tok("many"), map[string]any{"name": "one more"}, nil)
	restCheckError(t, "a 1,001st room", resp, data, http.StatusConflict, "too_many_rooms")
	from := sc.open("many", "").LastID
	var want []string
	for _, i := range []int{0, 499, 500, 501, 998, 999, 3} {
		text := fmt.Sprint("in ", i)
		sc.say("many", rooms[i], text)
		want = append(want, text)
	}
	sc.say("many", rooms[0], "marker")
	sc.restartServer()
	c := sc.open("many", from)
	var got []string
	for _, e := range sseEventsBefore(t, c, "marker") {
		got = append(got, e.p.Text)
	}
	if !slices.Equal(got, want) {
		t.Errorf("replay from the durable log over 1,000 rooms = %q; want %q", got, want)
	}
}

// With no cap, a user may be in more rooms than a SQLite statement may
// name (32,766 variables): they still resume across a restart, from the
// durable log, with every event missed from their rooms, in order, and
// none of others'. The rooms are written into the database while the
// server is stopped, in one statement: through the API they would take
// minutes.
func TestReplayAcrossMoreRoomsThanAStatementNames(t *testing.T) {
	const rooms = 33_000
	sc := newStreamScene(t, map[string]string{"HERALD_MAX_ROOMS_PER_USER": "0"})
	first := sc.room("many", "first", false)
	elsewhere := sc.room("other", "elsewhere", false)
	sc.testServer.stop()
	db, err := sql.Open("sqlite3", "file:"+sc.cfg.dbPath()+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UnixMilli()
	const series = `WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n WHERE value < ?) `
	for _, q := range []string{
		series + `INSERT INTO rooms (id, kind, name, topic, private, owner_id, created_at, member_count)
		 SELECT 'r_many_' || value, 'room', 'room ' || value, '', 0, 'many', ?, 1 FROM n`,
		series + `INSERT INTO members (room_id, user_id, joined_at) SELECT 'r_many_' || value, 'many', ? FROM n`,
	} {
		if _, err := db.Exec(q, rooms, now); err != nil {
			t.Fatalf("make %d rooms: %v", rooms, err)
		}
	}
	if _, err := db.Exec(`UPDATE users SET room_count = room_count + ? WHERE id = 'many'`, rooms); err != nil {
		t.Fatal(err)
	}
	sc.restartServer()

	from := sc.open("many", "").LastID
	var want []string
	for _, room := range []string{"r_many_1", "r_many_32767", first, "r_many_33000", "r_many_16000"} {
		text := "in " + room
		sc.say("many", room, text)
		sc.say("other", elsewhere, "not for many")
		want = append(want, text)
	}
	sc.say("many", first, "marker")
	sc.restartServer()
	var got []string
	for _, e := range sseEventsBefore(t, sc.open("many", from), "marker") {
		got = append(got, e.Event+" "+e.p.Text)
	}
	for i, text := range want {
		want[i] = "message:created " + text
	}
	if !slices.Equal(got, want) {
		t.Errorf("replay from the durable log over %d rooms = %q; want %q", rooms+1, got, want)
	}
}

// An owner who leaves hands the room to the member who has been in it
// longest, and keeps no power over it; the members hear it as
// room:updated.
func TestOwnerLeaves(t *testing.T) {
	sc := newStreamScene(t, nil)
	room := sc.room("alice", "team", false)
	sc.join("bob", room)
	sc.join("carol", room)
	carol := sc.open("carol", "")
	sc.leave("alice", room)
	got := []string{}
	for _, e := range sseRead(t, carol, 2) {
		got = append(got, e.Event+" "+e.Data)
	}
	want := []string{
		fmt.Sprintf(`member:left {"room":%q,"user":"alice","reason":"left"}`, room),
		fmt.Sprintf(`room:updated {"room":%q,"name":"team","topic":"","private":false,"owner":"bob","by":"alice"}`, room),
	}
	if !slices.Equal(got, want) {
		t.Errorf("carol's stream as alice leaves = %q; want %q", got, want)
	}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/rooms/" + room + "/members", map[string]string{"user": "dave"}},
		{"DELETE", "/v1/rooms/" + room + "/members/carol", nil},
		{"PATCH", "/v1/rooms/" + room, map[string]string{"name": "mine"}},
		{"DELETE", "/v1/rooms/" + room, nil},
	} {
		resp, data := sc.doResp(c.method, c.path, sc.tok("alice"), c.body, nil)
		restCheckError(t, "alice, who left: "+c.method+" "+c.path, resp, data, http.StatusForbidden, "not_owner")
	}
	var details struct{ Owner string }
	sc.must(http.StatusOK, "GET", "/v1/rooms/"+room, sc.tok("carol"), nil, &details)
	if details.Owner != "bob" {
		t.Errorf("the room's owner = %q; want bob", details.Owner)
	}
	sc.must(http.StatusNoContent, "DELETE", "/v1/rooms/"+room+"/members/carol", sc.tok("bob"), nil, nil)
}

// In a cluster, an invitation made on one instance reaches the invitee's
// stream on another, and a third replays it.
func TestClusterConsent(t *testing.T) {
	c := startCluster(t, 3, false, false, nil)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	room := a.room("alice", "secret", true)
	lobby := a.room("alice", "lobby", false)
	b.join("bob", lobby)
	live := b.open("bob", "")
	a.say("alice", lobby, "start")
	sseEventsBefore(t, live, "start")
	from := live.LastID
	a.invite("alice", room, "bob")
	if e := sseNext(t, live); e.Event != "invitation:created" || e.p.Room != room {
		t.Fatalf("bob's stream on n1 = %s %s; want the invitation made on n0", e.Event, e.Data)
	}
	a.say("alice", lobby, "marker")
	replay := cc.open("bob", from)
	if got := sseDescribeAll(sseEventsBefore(t, replay, "marker"), map[string]string{room: "secret"}); !slices.Equal(got, []string{"invitation:created secret"}) {
		t.Errorf("bob's replay on n2 = %q; want the invitation", got)
	}
	sseEventsBefore(t, live, "marker")
	cc.join("bob", room)
	a.say("alice", lobby, "marker 2")
	if got := sseDescribeAll(sseEventsBefore(t, live, "marker 2"), map[string]string{room: "secret"}); !slices.Equal(got, []string{"member:joined secret bob", "invitation:deleted secret  joined"}) {
		t.Errorf("bob's stream on n1 as he joins on n2 = %q; want his join, then his invitation's end", got)
	}
}
