package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// requestKinds are the bodies of the main POST (and PATCH) handlers, each
// decoded and checked as its handler does (decodeRequest).
var requestKinds = []func() checker{
	func() checker { return new(createRoomRequest) },
	func() checker { return new(updateRoomRequest) },
	func() checker { return new(addMemberRequest) },
	func() checker { return new(openDMRequest) },
	func() checker { return new(postMessageRequest) },
	func() checker { return new(editMessageRequest) },
	func() checker { return new(statusRequest) },
	func() checker { return new(typingRequest) },
	func() checker { return new(readRequest) },
	func() checker { return new(provisionRequest) },
	func() checker { return new(serverPostRequest) },
}

// FuzzRequests decodes and checks arbitrary bytes as each kind of request
// body: it never panics, and either refuses the body with a client error
// (4xx, a code and a message) or yields a value that the rules of the
// README hold for, as restated here independently of the checks, and that
// survives being encoded and decoded again. Limits are small, so that the
// fuzzer reaches them. The seeds are in testdata/fuzz/FuzzRequests; `go
// test` runs them, `make fuzz` explores from them.
func FuzzRequests(f *testing.F) {
	cfg := &Config{MaxBody: 4096, MaxText: 40, MaxName: 20, MaxTopic: 30}
	e := echo.New()
	decode := func(kind uint8, body []byte) (checker, error) {
		req := requestKinds[int(kind)%len(requestKinds)]()
		c := e.NewContext(httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)), httptest.NewRecorder())
		return req, decodeRequest(c, cfg, req)
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		req, err := decode(kind, body)
		if err != nil {
			var apiErr *Error
			if !errors.As(err, &apiErr) || apiErr.Status < 400 || apiErr.Status > 499 || apiErr.Code == "" || apiErr.Message == "" {
				t.Fatalf("%T of %q: error %#v; want a client error with a code and a message", req, body, err)
			}
			return
		}
		if v := violation(req, cfg); v != "" {
			t.Fatalf("%T of %q = %+v passed its check, but %s", req, body, req, v)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("%T: encode %+v: %v", req, req, err)
		}
		back, err := decode(kind, again)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("%T of %q = %+v; encoded as %s and decoded again = %+v, %v", req, body, req, again, back, err)
		}
	})
}

// violation restates the rules a checked request holds to, and says which
// one req breaks, if any.
func violation(req checker, cfg *Config) string {
	switch r := req.(type) {
	case *createRoomRequest:
		return badText("name", r.Name, cfg.MaxName, false)
	case *updateRoomRequest:
		if r.Name == nil && r.Topic == nil && r.Owner == nil {
			return "it changes nothing"
		}
		if r.Name != nil {
			if v := badText("name", *r.Name, cfg.MaxName, false); v != "" {
				return v
			}
		}
		if r.Topic != nil && *r.Topic != "" {
			if v := badText("topic", *r.Topic, cfg.MaxTopic, false); v != "" {
				return v
			}
		}
		if r.Owner != nil {
			return badUserID("owner", *r.Owner)
		}
	case *addMemberRequest:
		return badUserID("user", r.User)
	case *openDMRequest:
		return badUserID("user", r.User)
	case *postMessageRequest:
		return first(badText("text", r.Text, cfg.MaxText, true), optional(r.ClientID, badClientID))
	case *editMessageRequest:
		return badText("text", r.Text, cfg.MaxText, true)
	case *statusRequest:
		if r.Status != "online" && r.Status != "away" && r.Status != "dnd" {
			return fmt.Sprintf("status %q is none of online, away, dnd", r.Status)
		}
	case *typingRequest:
		if r.Typing == nil {
			return "typing is missing"
		}
	case *readRequest:
		if r.MessageID == nil || *r.MessageID <= 0 {
			return "message_id is not a positive integer"
		}
	case *provisionRequest:
		if len(r.Members) > maxProvisionMembers {
			return fmt.Sprintf("%d members", len(r.Members))
		}
		v := first(optional(r.ID, badRoomID), badText("name", r.Name, cfg.MaxName, false),
			optional(r.Topic, func(s string) string { return badText("topic", s, cfg.MaxTopic, false) }),
			optional(r.Owner, func(s string) string { return badUserID("owner", s) }))
		for _, m := range r.Members {
			v = first(v, badUserID("member", m))
		}
		return v
	case *serverPostRequest:
		return first(badText("text", r.Text, cfg.MaxText, true),
			optional(r.User, func(s string) string { return badUserID("user", s) }), optional(r.ClientID, badClientID))
	default:
		return fmt.Sprintf("%T has no rules here", req)
	}
	return ""
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// optional applies bad to s unless s is empty (left out).
func optional(s string, bad func(string) string) string {
	if s == "" {
		return ""
	}
	return bad(s)
}

// shownAsNothing: spaces, format characters (zero-width, direction
// controls, BOM), other default-ignorable ones, variation selectors, and
// the blank Braille pattern.
func shownAsNothing(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) || r == '\u2800'
}

// badText: valid UTF-8, 1 to max characters, something visible, no
// control characters (but line breaks and tabs in a message) and no
// U+FFFD; a name or a topic also has no format character but the joiners
// (U+200C, U+200D) and a flag's tags after U+1F3F4, no other
// default-ignorable one, and no line or paragraph separator.
func badText(field, s string, max int, multiline bool) string {
	if !utf8.ValidString(s) {
		return field + " is not UTF-8"
	}
	if n := utf8.RuneCountInString(s); n < 1 || n > max {
		return fmt.Sprintf("%s has %d characters", field, n)
	}
	visible := false
	var prev rune
	for _, r := range s {
		visible = visible || !shownAsNothing(r)
		switch {
		case r == utf8.RuneError:
			return field + " holds U+FFFD"
		case unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t')):
			return fmt.Sprintf("%s holds control character %U", field, r)
		case multiline || r == '\u200c' || r == '\u200d':
		case r >= 0xE0020 && r <= 0xE007F:
			if prev != 0x1F3F4 && (prev < 0xE0020 || prev > 0xE007F) {
				return fmt.Sprintf("%s holds tag %U outside a flag", field, r)
			}
		case unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point) || r == '\u2028' || r == '\u2029':
			return fmt.Sprintf("%s holds invisible or direction-changing %U", field, r)
		}
		prev = r
	}
	if !visible {
		return field + " shows as nothing"
	}
	return ""
}

// badUserID: 1 to 128 visible ASCII characters.
func badUserID(field, s string) string {
	if len(s) < 1 || len(s) > 128 {
		return fmt.Sprintf("%s is %d bytes", field, len(s))
	}
	for i := range len(s) {
		if s[i] < '!' || s[i] > '~' {
			return fmt.Sprintf("%s holds byte %#x", field, s[i])
		}
	}
	return ""
}

// badClientID: 1 to 128 bytes of UTF-8 with nothing blank, control or
// invisible.
func badClientID(s string) string {
	if len(s) > 128 || !utf8.ValidString(s) {
		return fmt.Sprintf("client_id %q is over 128 bytes or not UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || shownAsNothing(r) || r == utf8.RuneError {
			return fmt.Sprintf("client_id holds %U", r)
		}
	}
	return ""
}

// badRoomID: 1 to 128 ASCII letters, digits, '.', '_', ':' or '-',
// starting with a letter or digit.
func badRoomID(s string) string {
	if len(s) > 128 {
		return "id is over 128 bytes"
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '.' && r != '_' && r != ':' && r != '-') {
			return fmt.Sprintf("id holds %q at %d", r, i)
		}
	}
	return ""
}
