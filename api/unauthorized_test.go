package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldchat/herald/api"
)

// TestUnauthorized checks each kind of 401: its code, a message that says
// what to do, the WWW-Authenticate challenge of RFC 6750, and the reason
// logged at info without the token. A token whose signature does not
// verify is never said to be expired, whatever its claims.
func TestUnauthorized(t *testing.T) {
	secret := []byte("test-secret-test-secret-test-secret-0123")
	sign := func(key []byte, exp time.Time) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": exp.Unix()}).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := sign(secret, time.Now().Add(time.Hour))
	expired := sign(secret, time.Now().Add(-time.Hour))
	forgedExpired := sign([]byte("another-secret-another-secret-012345"), time.Now().Add(-time.Hour))
	const realm = `Bearer realm="herald"`

	tests := []struct {
		name      string
		path      string
		auth      string // Authorization header; "" sends none
		code      string
		message   string // in the message
		challenge string // WWW-Authenticate, after the realm
		logged    string // the reason logged at info; "" when nothing is
	}{
		{"no header", "/v1/rooms", "", "unauthenticated", "bearer token is required", "", ""},
		{"token without Bearer", "/v1/rooms", valid, "unauthenticated", "the word Bearer, a space and the token", "", ""},
		{"Basic scheme", "/v1/rooms", "Basic YWxpY2U6cHc=", "unauthenticated", "the word Bearer, a space and the token", "", ""},
		{"Bearer alone", "/v1/rooms", "Bearer", "unauthenticated", "the word Bearer, a space and the token", "", ""},
		{"not a JWT", "/v1/rooms", "Bearer not-a-token", "malformed_token", "not a well-formed JWT",
			`, error="invalid_token", error_description="the bearer token is not a well-formed JWT`, "malformed"},
		{"another key", "/v1/rooms", "Bearer " + sign([]byte("another-secret-another-secret-012345"), time.Now().Add(time.Hour)), "invalid_token", "signature does not verify",
			`, error="invalid_token", error_description="the bearer token's signature does not verify`, "signature is invalid"},
		{"expired", "/v1/rooms", "Bearer " + expired, "expired_token", "has expired",
			`, error="invalid_token", error_description="the bearer token has expired"`, "expired"},
		{"expired, of another key", "/v1/rooms", "Bearer " + forgedExpired, "invalid_token", "signature does not verify",
			`, error="invalid_token", error_description="the bearer token's signature does not verify`, "signature is invalid"},
		{"stream, expired", "/v1/stream", "Bearer " + expired, "expired_token", "has expired",
			`, error="invalid_token", error_description="the bearer token has expired"`, "expired"},
		{"stream, token without Bearer", "/v1/stream", valid, "unauthenticated", "the word Bearer, a space and the token", "", ""},
		{"stream, nothing", "/v1/stream", "", "unauthenticated", "bearer token is required", "", ""},
		{"stream, forged ticket", "/v1/stream?ticket=forged.ticket", "", "invalid_ticket", "ticket", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			srv := api.New(nil, nil, api.NewAuth(secret, nil), api.Config{Logger: logger})
			req := httptest.NewRequest("GET", tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)

			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusUnauthorized || err != nil {
				t.Fatalf("GET %s = %d %s; want 401 with a JSON error", tt.path, rec.Code, rec.Body)
			}
			if body.Error.Code != tt.code || !strings.Contains(body.Error.Message, tt.message) {
				t.Errorf("GET %s error = %+v; want code %s and a message saying %q", tt.path, body.Error, tt.code, tt.message)
			}
			got := rec.Header().Values("WWW-Authenticate")
			if len(got) != 1 || !strings.HasPrefix(got[0], realm+tt.challenge) || (tt.challenge == "") != (got[0] == realm) {
				t.Errorf("GET %s WWW-Authenticate = %q; want %s%s", tt.path, got, realm, tt.challenge)
			}
			if _, desc, ok := strings.Cut(got[0], `error_description="`); ok && strings.ContainsAny(strings.TrimSuffix(desc, `"`), `"\`) {
				t.Errorf("GET %s WWW-Authenticate = %q; want a description without quotes or backslashes", tt.path, got)
			}

			var entry struct {
				Level, Msg, Code, Reason, Path string
				RequestID                      string `json:"request_id"`
			}
			line, _, _ := bytes.Cut(logs.Bytes(), []byte("\n"))
			if tt.logged == "" {
				if logs.Len() != 0 {
					t.Errorf("GET %s logged %s; want nothing at info", tt.path, logs.String())
				}
				return
			}
			if err := json.Unmarshal(line, &entry); err != nil {
				t.Fatalf("GET %s logged %q; want a JSON entry: %v", tt.path, logs.String(), err)
			}
			if entry.Level != "INFO" || entry.Msg != "token refused" || entry.Code != tt.code || !strings.Contains(entry.Reason, tt.logged) || entry.RequestID == "" {
				t.Errorf("GET %s logged %s; want token refused at INFO, code %s, a reason saying %q and the request id", tt.path, line, tt.code, tt.logged)
			}
			if token := strings.TrimPrefix(tt.auth, "Bearer "); strings.Contains(logs.String(), token) {
				t.Errorf("GET %s logged %s; want the token left out", tt.path, logs.String())
			}
		})
	}
}
