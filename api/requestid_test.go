package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/heraldchat/herald/api"
)

// TestRequestID: a client's X-Request-Id is kept only when it is short
// and of safe characters; otherwise the request gets a fresh id. Either
// way the answer and the log carry the same one.
func TestRequestID(t *testing.T) {
	fresh := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name string
		sent []string // X-Request-Id values sent; none for no header
		keep bool
	}{
		{"none", nil, false},
		{"a proxy's", []string{"req-7f3a_B.2:x/y+z="}, true},
		{"a UUID", []string{"0b6e4a9c-3f1d-4b8e-9a51-2c7d8e9f0a1b"}, true},
		{"128 characters", []string{strings.Repeat("a", 128)}, true},
		{"129 characters", []string{strings.Repeat("a", 129)}, false},
		{"a megabyte", []string{strings.Repeat("a", 1<<20)}, false},
		{"markup", []string{"<script>alert(1)</script>"}, false},
		{"a space", []string{"two words"}, false},
		{"a quote", []string{`id"`}, false},
		{"not ASCII", []string{"ré"}, false},
		{"empty", []string{""}, false},
		{"twice", []string{"first", "second"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			srv := api.New(nil, nil, api.NewAuth([]byte("test-secret-test-secret-test-secret-0123"), nil), api.Config{Logger: logger})
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			req, err := http.NewRequest("GET", ts.URL+"/v1/rooms", nil)
			if err != nil {
				t.Fatal(err)
			}
			// A token that is refused is logged, with the request id.
			req.Header.Set("Authorization", "Bearer not-a-token")
			for _, v := range tt.sent {
				req.Header.Add("X-Request-Id", v)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Values("X-Request-Id")
			if len(got) != 1 {
				t.Fatalf("X-Request-Id of the answer = %q; want one id", got)
			}
			if tt.keep && got[0] != tt.sent[0] {
				t.Errorf("X-Request-Id of the answer = %q; want the client's %q", got[0], tt.sent[0])
			}
			if !tt.keep && !fresh.MatchString(got[0]) {
				t.Errorf("X-Request-Id of the answer = %.60q; want a fresh id of 32 hex digits", got[0])
			}
			var logged []string
			sc := bufio.NewScanner(&logs)
			for sc.Scan() {
				var entry struct {
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(sc.Bytes(), &entry); err == nil && entry.RequestID != "" {
					logged = append(logged, entry.RequestID)
				}
			}
			if len(logged) == 0 {
				t.Fatalf("nothing logged with a request_id; want the refused token logged")
			}
			for _, id := range logged {
				if id != got[0] {
					t.Errorf("request_id logged = %.60q; want the answer's %q", id, got[0])
				}
			}
		})
	}
}
