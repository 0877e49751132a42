package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/stream"
)

// typingAbout reads alice's events up to the message marker and returns
// the typing and membership events about user among them, in order.
func typingAbout(t *testing.T, s *testServer, alice string, c interface{ Next() stream.Frame }, room, user string) []string {
	t.Helper()
	marker := s.post(alice, room, "marker")
	var got []string
	for {
		f := c.Next()
		switch f.Event {
		case event.TypingStarted, event.TypingStopped, event.MemberJoined, event.MemberLeft:
			var who struct{ User string }
			decodeData(t, f, &who)
			if who.User == user {
				got = append(got, f.Event)
			}
		case "message:created":
			var m struct{ ID int64 }
			if decodeData(t, f, &m); m.ID == marker {
				return got
			}
		}
	}
}

// A typing ping racing the typist's leave or removal never leaves
// typing:started after member:left (stuck until the timeout, a minute
// here): each leave ends the typing it finds, and a ping checked before
// the leave committed starts typing before it, never after. Pings from a
// non-member are refused.
func TestTypingEndsWithLeave(t *testing.T) {
	s := startServer(t, serverEnv("HERALD_TYPING_TIMEOUT", "1m", "HERALD_PRESENCE_GRACE", "1m"))
	alice, bob := s.token("alice"), s.token("bob")
	room := s.createRoom(alice, "lobby", false)
	a := s.stream(alice, "")
	leaves := []struct {
		name string
		run  func() int
	}{
		{"leave", func() int { st, _ := s.do("POST", "/v1/rooms/"+room+"/leave", bob, nil); return st }},
		{"removal", func() int { st, _ := s.do("DELETE", "/v1/rooms/"+room+"/members/bob", alice, nil); return st }},
		{"server API removal", func() int {
			resp, _ := s.doResp("DELETE", "/v1/server/rooms/"+room+"/members/bob", "", nil, http.Header{"X-API-Key": {apiKeyOld}})
			return resp.StatusCode
		}},
	}
	for _, l := range leaves {
		for i := range 20 {
			joinRoom(t, s, bob, room)
			// Typing already on: the leave stops it.
			if i%2 == 0 {
				setTyping(t, s, bob, room, true)
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 6 {
				wg.Go(func() {
					<-start
					s.do("POST", "/v1/rooms/"+room+"/typing", bob, map[string]bool{"typing": true})
				})
			}
			status := 0
			wg.Go(func() { <-start; status = l.run() })
			close(start)
			wg.Wait()
			if status/100 != 2 {
				t.Fatalf("%s #%d = %d; want 2xx", l.name, i, status)
			}
			got := typingAbout(t, s, alice, a, room, "bob")
			what := fmt.Sprintf("%s #%d: alice saw about bob %v", l.name, i, got)
			typing, left := false, false
			for _, e := range got {
				switch e {
				case event.TypingStarted:
					if left {
						t.Fatalf("%s; want no typing:started after member:left", what)
					}
					typing = true
				case event.TypingStopped:
					typing = false
				case event.MemberLeft:
					left = true
				}
			}
			if !left || typing {
				t.Fatalf("%s; want member:left, and typing stopped", what)
			}
		}
	}
	status, body := s.do("POST", "/v1/rooms/"+room+"/typing", bob, map[string]bool{"typing": true})
	if status != http.StatusForbidden || errorCode(t, body) != "not_member" {
		t.Errorf("a typing ping from a non-member = %d %s; want 403 not_member", status, body)
	}
	if got := typingAbout(t, s, alice, a, room, "bob"); len(got) != 0 {
		t.Errorf("after a refused ping alice saw about bob %v; want nothing", got)
	}
}
