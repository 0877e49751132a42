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
// tabs when multiline, of any when not.
func checkText(field, s string, max int, multiline bool) error {
	if strings.TrimSpace(s) == "" {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s must not be empty", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return errorf(http.StatusUnprocessableEntity, "too_long", "%s is %d characters; the limit is %d", field, n, max)
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == utf8.RuneError {
			return errorf(http.StatusUnprocessableEntity, "invalid_characters", "%s contains control or invalid characters", field)
		}
	}
	return nil
}

// checkID validates an identifier chosen by a client (a user id, a
// client_id): 1 to 128 printable characters without spaces.
func checkID(field, s string) error {
	if s == "" || len(s) > 128 {
		return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s must be 1 to 128 characters", field)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError {
			return errorf(http.StatusUnprocessableEntity, "invalid_field", "%s contains spaces or control characters", field)
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
