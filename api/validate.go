package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// decodeJSON reads a JSON object body of at most maxBody bytes into v.
// The body is JSON whatever its Content-Type, so that `curl -d` works as is.
// Invalid UTF-8 is refused before decoding, because encoding/json would
// silently replace it.
func decodeJSON(c echo.Context, maxBody int64, v any) error {
	body, err := readBody(c, maxBody)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return errorf(http.StatusBadRequest, "malformed_json", "a JSON object body is required")
	}
	return unmarshalBody(body, v)
}

// checker is a request body that checks its own fields once decoded,
// without I/O, so that decoding and checking every body can be fuzzed
// apart from the handlers (FuzzRequests).
type checker interface {
	check(cfg *Config) error
}

// decodeRequest reads c's JSON body into req and checks it against cfg's
// limits.
func decodeRequest(c echo.Context, cfg *Config, req checker) error {
	if err := decodeJSON(c, cfg.MaxBody, req); err != nil {
		return err
	}
	return req.check(cfg)
}

// decodeOptionalJSON is decodeJSON for a body that may be left out: an
// empty one leaves v as it is.
func decodeOptionalJSON(c echo.Context, maxBody int64, v any) error {
	body, err := readBody(c, maxBody)
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return err
	}
	return unmarshalBody(body, v)
}

func readBody(c echo.Context, maxBody int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "too_large", "the body exceeds %d bytes", maxBody)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The client declared a body and did not send it in time
		// (--read-timeout); the connection is not reused.
		c.Response().Header().Set(echo.HeaderConnection, "close")
		return nil, errorf(http.StatusRequestTimeout, "timeout", "the body was not sent in time")
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "bad_request", "could not read the body")
	}
	return body, nil
}

func unmarshalBody(body []byte, v any) error {
	if !utf8.Valid(body) {
		return errorf(http.StatusUnprocessableEntity, "invalid_utf8", "the body is not valid UTF-8")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			field := typeErr.Field
			if field == "" {
				return errorf(http.StatusBadRequest, "malformed_json", "the body must be a JSON object")
			}
			return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s must be a %s", field, typeName(typeErr.Type.Kind().String()))
		}
		return errorf(http.StatusBadRequest, "malformed_json", "the body is not valid JSON")
	}
	return nil
}

func typeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "number"
	case kind == "bool":
		return "boolean"
	case kind == "ptr":
		return "value of the right type"
	}
	return kind
}

// checkText validates a user-supplied string: present, at most max
// characters, and free of control characters other than line breaks and
// tabs when multiline (a message), of any when not (a name or a topic).
//
// Text made only of spaces and invisible characters (zero-width spaces,
// a byte order mark, Hangul fillers) counts as empty: it would show as
// nothing. A message may hold any other character, direction controls
// included: right-to-left writing needs them, and a client shows each
// message in an isolate of its own (HTML's dir="auto" or <bdi>), so that
// one message's direction cannot leak into what surrounds it. A name or
// a topic is one line shown among others' (in lists, beside messages),
// and must mean what it looks like: no invisible characters and no
// direction controls (hiddenInName).
func checkText(field, s string, max int, multiline bool) error {
	if blank(s) {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s must not be empty", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return errorf(http.StatusUnprocessableEntity, "too_long", "%s is %d characters; the limit is %d", field, n, max)
	}
	var prev rune
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			prev = r
			continue
		}
		if unicode.IsControl(r) || r == utf8.RuneError {
			return errorf(http.StatusUnprocessableEntity, "invalid_characters", "%s contains control or invalid characters", field)
		}
		if !multiline && hiddenInName(prev, r) {
			return errorf(http.StatusUnprocessableEntity, "invalid_characters",
				"%s contains an invisible or direction-changing character (U+%04X), which a name or topic may not hold", field, r)
		}
		prev = r
	}
	return nil
}

// invisible reports characters that show as nothing: format characters
// (zero-width spaces and joiners, direction controls, the byte order
// mark, soft hyphens, tags), the other default-ignorable ones (Hangul
// fillers, the combining grapheme joiner), variation selectors, and the
// blank Braille pattern, which is often used as an invisible letter.
func invisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Variation_Selector, r) || r == '\u2800'
}

// blank reports whether s shows as nothing: spaces and invisible
// characters only.
func blank(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) && !invisible(r) {
			return false
		}
	}
	return true
}

// Characters a name may hold although they are invisible.
const (
	zwnj      = '\u200c' // keeps letters apart in Persian and Indic scripts
	zwj       = '\u200d' // joins emoji into one (👩‍💻)
	blackFlag = '\U0001F3F4'
	tagFirst  = '\U000E0020'
	tagLast   = '\U000E007F'
)

// hiddenInName reports whether r, after prev, may not be in a name: a
// format character or another default-ignorable one (direction controls
// such as U+202E, which shows the rest of a name reversed; zero-width
// spaces; Hangul fillers that pass for a blank name), or a line or
// paragraph separator. Joiners stay, which scripts and emoji need, and so
// do variation selectors (emoji presentation) and the tags of a flag's
// emoji (🏴 then tags, as the flag of Scotland is), but no other tags,
// which carry hidden ASCII text.
func hiddenInName(prev, r rune) bool {
	switch {
	case r == zwnj || r == zwj:
		return false
	case r >= tagFirst && r <= tagLast:
		return prev != blackFlag && (prev < tagFirst || prev > tagLast)
	case r == '\u2028' || r == '\u2029':
		return true
	}
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r)
}

// checkUserID validates a user id, from a token's sub or a request: 1 to
// 128 visible ASCII characters, no spaces. Other apps' ids are shown,
// typed and compared as they are, so an id admits nothing that looks
// like something else: no letter of another script that passes for a
// Latin one, nothing invisible, nothing that changes direction. Identity
// providers' subjects (UUIDs, numbers, "auth0|abc123", e-mail addresses)
// are all of this form.
func checkUserID(field, s string) error {
	if s == "" || len(s) > 128 {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s must be 1 to 128 characters", field)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return errorf(http.StatusUnprocessableEntity, "invalid_field",
				"%s must be visible ASCII characters, without spaces (user ids are compared as they look)", field)
		}
	}
	return nil
}

// checkID validates another identifier chosen by a client (a client_id,
// an event name): 1 to 128 bytes of printable characters, without spaces
// or invisible ones.
func checkID(field, s string) error {
	if s == "" || len(s) > 128 {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s must be 1 to 128 characters", field)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError || invisible(r) {
			return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s contains spaces, control or invisible characters", field)
		}
	}
	return nil
}

// queryInt reads an optional non-negative integer query parameter.
func queryInt(c echo.Context, name string) (int64, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "invalid_parameter", "%s must be a non-negative integer", name)
	}
	return n, nil
}
