package main

// The browser's routes over HTTP: /client.js always; the chat page and
// the dev token endpoint only with --dev.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldchat/herald/web"
)

func TestClientModule(t *testing.T) {
	s := startServer(t, nil)
	resp, body := s.doResp("GET", "/client.js", "", nil, http.Header{"Origin": {"https://app.example.com"}})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, web.Client) {
		t.Fatalf("GET /client.js = %d, %d bytes; want 200 and web/herald.js", resp.StatusCode, len(body))
	}
	for k, want := range map[string]string{
		"Content-Type":                "text/javascript; charset=utf-8",
		"Cache-Control":               "no-cache",
		"Access-Control-Allow-Origin": "*",
		"X-Content-Type-Options":      "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("GET /client.js %s = %q; want %q", k, got, want)
		}
	}
	tag := resp.Header.Get("ETag")
	if tag == "" {
		t.Fatal("GET /client.js has no ETag")
	}
	resp, body = s.doResp("GET", "/client.js", "", nil, http.Header{"If-None-Match": {tag}})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET /client.js with If-None-Match = %d, %d bytes; want 304 and no body", resp.StatusCode, len(body))
	}
}

func TestDevModeOff(t *testing.T) {
	s := startServer(t, nil)
	tests := []struct{ method, path, body, want string }{
		{"GET", "/", "", "herald serve --dev"},
		{"POST", "/dev/token", `{"name":"Mallory"}`, "herald serve --dev"},
	}
	for _, tt := range tests {
		var body any
		if tt.body != "" {
			body = tt.body
		}
		status, data := s.do(tt.method, tt.path, "", body)
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(data, &e)
		if status != http.StatusNotFound || e.Error.Code != "not_found" || !strings.Contains(e.Error.Message, tt.want) {
			t.Errorf("%s %s without --dev = %d %s; want 404 not_found saying %q", tt.method, tt.path, status, data, tt.want)
		}
	}
}

func TestDevMode(t *testing.T) {
	s := startServer(t, map[string]string{"HERALD_DEV": "on"})

	resp, page := s.doResp("GET", "/", "", nil, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(page, web.Page) {
		t.Fatalf("GET / with --dev = %d, %d bytes; want 200 and web/chat.html", resp.StatusCode, len(page))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type = %q; want text/html", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("GET / Content-Security-Policy = %q; want default-src 'self'", csp)
	}
	if !bytes.Contains(page, []byte(`from "/client.js"`)) {
		t.Errorf("the chat page does not import /client.js")
	}

	tests := []struct {
		name       string
		body       string
		status     int
		user, code string
	}{
		{"a name", `{"name":"Ada Lovelace"}`, http.StatusCreated, "ada-lovelace", ""},
		{"spaces around a name", `{"name":"  Ada  "}`, http.StatusCreated, "ada", ""},
		{"a name with accents", `{"name":"Émile Zoë"}`, http.StatusCreated, "emile-zoe-", ""},
		{"a name of another script", `{"name":"Андрей"}`, http.StatusCreated, "user-", ""},
		{"a name without letters", `{"name":"🙂🙂"}`, http.StatusCreated, "user-", ""},
		{"a user id given", `{"name":"Ada","user":"u-42"}`, http.StatusCreated, "u-42", ""},
		{"no name", `{}`, http.StatusUnprocessableEntity, "", "invalid_field"},
		{"a name too long", `{"name":"` + strings.Repeat("a", 65) + `"}`, http.StatusUnprocessableEntity, "", "too_long"},
		{"a user id with a space", `{"name":"Ada","user":"a b"}`, http.StatusUnprocessableEntity, "", "invalid_field"},
		{"a user id with a Cyrillic a", `{"name":"Ada","user":"аda"}`, http.StatusUnprocessableEntity, "", "invalid_field"},
		{"not JSON", `name=Ada`, http.StatusBadRequest, "", "malformed_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, data := s.do("POST", "/dev/token", "", tt.body)
			if status != tt.status {
				t.Fatalf("POST /dev/token %s = %d %s; want %d", tt.body, status, data, tt.status)
			}
			if tt.code != "" {
				var e struct{ Error struct{ Code string } }
				json.Unmarshal(data, &e)
				if e.Error.Code != tt.code {
					t.Errorf("POST /dev/token %s = %s; want code %s", tt.body, data, tt.code)
				}
				return
			}
			var tok struct {
				Token, User, Name string
				ExpiresIn         int `json:"expires_in"`
			}
			if err := json.Unmarshal(data, &tok); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok.User, tt.user) || tok.ExpiresIn <= 0 {
				t.Errorf("POST /dev/token %s = %s; want user %s…", tt.body, data, tt.user)
			}
			// The token is a real one: it signs in as that user.
			var room struct{ Owner string }
			s.must(http.StatusCreated, "POST", "/v1/rooms", tok.Token, map[string]any{"name": "r"}, &room)
			if room.Owner != tok.User {
				t.Errorf("a room created with the dev token is owned by %q; want %q", room.Owner, tok.User)
			}
		})
	}
}
