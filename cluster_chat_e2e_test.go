package main

// Cluster variants of the chat and server API tests: the rules of issue 12
// must hold across instances, each client on its own instance.

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

// Edits and deletions made on one instance reach streams on the others,
// in the same order everywhere, with the same ids; a member removed on a
// third instance gets none of the room's later changes.
func TestClusterEditsAndDeletes(t *testing.T) {
	c := startCluster(t, 3, false, false, nil)
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	room := n0.room("alice", "general", false)
	side := n0.room("carol", "side", false)
	n0.join("bob", room)
	n0.join("carol", room)
	bob, carol := n1.open("bob", ""), n2.open("carol", "")
	n0.say("alice", room, "start")
	sseEventsBefore(t, bob, "start")
	sseEventsBefore(t, carol, "start")

	m1 := n1.say("bob", room, "helo")
	n2.must(http.StatusOK, "PATCH", n2.msgPath(room, m1), n2.tok("bob"), map[string]string{"text": "hello"}, nil)
	n1.remove("alice", room, "carol")
	n0.must(http.StatusOK, "DELETE", n0.msgPath(room, m1), n0.tok("alice"), nil, nil)
	n2.say("alice", room, "end")
	n1.say("carol", side, "marker")

	names := map[string]string{room: "general", side: "side"}
	ids := map[int64]string{m1: "m1"}
	want := []string{`created general "helo"`, `updated general m1 "hello"`, "member:left general carol removed", "deleted general m1"}
	if got := chatUntil(t, bob, "end", names, ids); !slices.Equal(got, want) {
		t.Errorf("bob on n1 = %q; want %q", got, want)
	}
	if got := chatUntil(t, carol, "marker", names, ids); !slices.Equal(got, want[:3]) {
		t.Errorf("carol on n2 = %q; want %q and nothing of the room after her removal", got, want[:3])
	}
}

// A room closed on one instance: each member's stream, on another, gets
// its room:deleted and nothing more of the room, live and by replay on a
// third.
func TestClusterRoomDeletion(t *testing.T) {
	c := startCluster(t, 3, false, false, nil)
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	room := n0.room("alice", "general", false)
	other := n0.room("bob", "other", false)
	n0.join("bob", room)
	bob := n1.open("bob", "")
	n0.say("bob", other, "start")
	sseEventsBefore(t, bob, "start")
	from := bob.LastID
	n2.say("alice", room, "last words")
	n0.must(http.StatusNoContent, "DELETE", "/v1/rooms/"+room, n0.tok("alice"), nil, nil)
	n2.say("bob", other, "marker")
	names := map[string]string{room: "general", other: "other"}
	want := []string{`created general "last words"`, "room:deleted general by alice"}
	if got := chatUntil(t, bob, "marker", names, nil); !slices.Equal(got, want) {
		t.Errorf("bob on n1 = %q; want %q", got, want)
	}
	if got := chatUntil(t, n2.open("bob", from), "marker", names, nil); !slices.Equal(got, want) {
		t.Errorf("bob's replay on n2 = %q; want %q", got, want)
	}
}

// A disconnect made through one instance closes the user's streams on
// every instance; a reconnection at once with an old token is refused on
// any instance, and one with a newer token is let in.
func TestClusterDisconnect(t *testing.T) {
	c := startCluster(t, 3, false, false, serverEnv())
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	room := n0.room("alice", "general", false)
	n0.join("bob", room)
	old := n0.tokenIssued("bob", time.Now().Add(-time.Minute))
	streams := []*streamtest.Client{n0.stream(old, ""), n1.stream(old, ""), n2.stream(old, "")}
	alice := n2.open("alice", "")
	n0.say("alice", room, "before")
	for _, s := range streams {
		sseEventsBefore(t, s, "before")
	}

	n1.server(apiKeyNew, http.StatusNoContent, "POST", "/v1/server/users/bob/disconnect",
		map[string]string{"revoke_before": time.Now().Add(-time.Second).Format(time.RFC3339)}, nil)
	// At once, before any instance need have read the disconnect: the
	// stream checks the store.
	for _, n := range []*streamScene{n0, n2} {
		resp, data := restRequest(t, n.testServer, "GET", "/v1/stream", http.Header{"Authorization": {"Bearer " + old}}, nil)
		restCheckError(t, "a stream with the old token on "+n.URL, resp, data, http.StatusUnauthorized, "revoked_token")
	}
	for i, s := range streams {
		if reason := sseClosingReason(t, s.Ended()); reason != "disconnected" {
			t.Errorf("bob's stream on n%d ended with %q; want disconnected", i, reason)
		}
	}
	// Once an instance has read past the disconnect, its other calls
	// refuse the old token too.
	n1.say("alice", room, "after")
	sseEventsBefore(t, alice, "after")
	resp, data := n2.doResp("GET", "/v1/rooms", old, nil, nil)
	restCheckError(t, "a REST call with the old token", resp, data, http.StatusUnauthorized, "revoked_token")
	again := n2.stream(n2.tokenIssued("bob", time.Now()), "")
	n0.say("alice", room, "welcome back")
	sseEventsBefore(t, again, "welcome back")
}

// A custom event for a user, published through one instance, reaches
// every stream of that user on every instance, and nobody else's.
func TestClusterCustomToUser(t *testing.T) {
	c := startCluster(t, 3, false, false, serverEnv())
	n0, n1, n2 := c.nodes[0], c.nodes[1], c.nodes[2]
	bobs := []*streamtest.Client{n0.open("bob", ""), n1.open("bob", ""), n2.open("bob", ""), n2.open("bob", "")}
	carol := n2.open("carol", "")
	room := n1.room("carol", "carol's", false)
	n1.server(apiKeyNew, http.StatusNoContent, "POST", "/v1/server/publish", map[string]any{"user": "bob", "event": "ping"}, nil)
	n1.server(apiKeyNew, http.StatusNoContent, "POST", "/v1/server/publish", map[string]any{"user": "bob", "event": "hello", "data": map[string]int{"n": 1}}, nil)
	bobRoom := n0.room("bob", "bob's", false)
	n0.say("bob", bobRoom, "end")
	n2.say("carol", room, "marker")
	names := map[string]string{"": "-", room: "carol's", bobRoom: "bob's"}
	want := []string{"custom - ping null", `custom - hello {"n":1}`, "member:joined bob's bob"}
	for i, b := range bobs {
		if got := chatUntil(t, b, "end", names, nil); !slices.Equal(got, want) {
			t.Errorf("bob's stream %d = %q; want %q", i, got, want)
		}
	}
	if got := chatUntil(t, carol, "marker", names, nil); !slices.Equal(got, []string{"member:joined carol's carol"}) {
		t.Errorf("carol = %q; want none of bob's events", got)
	}
}

// Both sides open their DM at once, each through another instance: one
// room.
func TestClusterConcurrentDMs(t *testing.T) {
	c := startCluster(t, 3, false, false, nil)
	c.nodes[0].room("carol", "hello", false)
	c.nodes[0].room("dave", "hello", false)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	for i := range 9 {
		n := c.nodes[i%3]
		me, other := []string{"carol", "dave"}[i%2], []string{"dave", "carol"}[i%2]
		wg.Go(func() {
			code, data := n.do("POST", "/v1/dms", n.tok(me), map[string]string{"user": other})
			var r struct{ ID string }
			if err := json.Unmarshal(data, &r); err != nil || (code != http.StatusOK && code != http.StatusCreated) {
				t.Errorf("POST /v1/dms on %s = %d %s", n.URL, code, data)
				return
			}
			mu.Lock()
			ids[fmt.Sprint(r.ID, " ", code)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	var rooms []string
	created := 0
	for k, n := range ids {
		id, code, _ := strings.Cut(k, " ")
		rooms = append(rooms, id)
		if code == "201" {
			created += n
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(rooms)))) != 1 || created != 1 {
		t.Fatalf("racing POST /v1/dms over 3 instances: %v; want one room, created once", ids)
	}
}
