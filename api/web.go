package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/labstack/echo/v4"
	"golang.org/x/text/unicode/norm"
)

// The browser's routes: the client module, always; the chat page and the
// dev token endpoint, which let anyone sign in as anyone, only with --dev.
// Without it they answer 404 like any unknown path, with a message that
// says how to get them.

var (
	errNoPage     = errorf(http.StatusNotFound, "not_found", "the chat page is served only by herald serve --dev")
	errNoDevToken = errorf(http.StatusNotFound, "not_found", "dev tokens are signed only by herald serve --dev")
)

// clientModule serves the browser client, an ES module. It is public
// code, so any origin may import it (a module script is fetched with
// CORS); no-cache with an ETag lets a browser keep it and still get a new
// version as soon as the server has one.
func (s *Server) clientModule(c echo.Context) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/javascript; charset=utf-8")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("ETag", s.clientTag)
	h.Set(echo.HeaderAccessControlAllowOrigin, "*")
	h.Set(echo.HeaderXContentTypeOptions, "nosniff")
	http.ServeContent(c.Response(), c.Request(), "client.js", time.Time{}, bytes.NewReader(s.cfg.Client))
	return nil
}

// chatPage serves the dev chat page. Its script and style are inline and
// it talks only to this origin; the policy says so.
func (s *Server) chatPage(c echo.Context) error {
	if !s.cfg.Dev {
		return errNoPage
	}
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set(echo.HeaderContentSecurityPolicy, "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set(echo.HeaderXContentTypeOptions, "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	return c.HTMLBlob(http.StatusOK, s.cfg.Page)
}

type devTokenRequest struct {
	Name string `json:"name"`
	User string `json:"user"`
}

type devTokenResponse struct {
	Token     string `json:"token"`
	User      string `json:"user"`
	Name      string `json:"name"`
	ExpiresIn int    `json:"expires_in"` // seconds
}

// devToken signs a token for the name given, as herald token does: in dev
// mode, anyone who reaches the server is whoever they say.
func (s *Server) devToken(c echo.Context) error {
	if !s.cfg.Dev {
		return errNoDevToken
	}
	var req devTokenRequest
	if err := decodeJSON(c, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := checkText("name", req.Name, 64, false); err != nil {
		return err
	}
	name := strings.TrimSpace(req.Name)
	user := req.User
	if user == "" {
		user = userFromName(name)
	} else if err := checkUserID("user", user); err != nil {
		return err
	}
	token, err := Mint(s.auth.secret, user, name, s.cfg.DevTokenTTL)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, devTokenResponse{Token: token, User: user, Name: name, ExpiresIn: int(s.cfg.DevTokenTTL / time.Second)})
}

// userFromName makes a user id of a display name: lowercase ASCII
// letters and digits, other runs of characters as one dash, so that "Ada
// Lovelace" signs in as ada-lovelace, the same user each time. User ids
// are ASCII (checkUserID): accents come off ("Zoë" gives zoe), and a name
// that had accents or other letters or digits gets a part of its hash
// after them, so that "Zoë" is not "Zoe"; a name with no ASCII letter or
// digit at all gets an id from its hash alone.
func userFromName(name string) string {
	var b strings.Builder
	dash, other := false, false
	for _, r := range norm.NFD.String(strings.ToLower(name)) {
		ascii := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if ascii {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		if unicode.Is(unicode.Mn, r) {
			other = true // an accent of the letter before it
			continue
		}
		other = other || unicode.IsLetter(r) || unicode.IsDigit(r)
		dash = true
	}
	sum := sha256.Sum256([]byte(name))
	if b.Len() == 0 || b.Len() > 100 {
		return "user-" + hex.EncodeToString(sum[:6])
	}
	if other {
		b.WriteString("-" + hex.EncodeToString(sum[:3]))
	}
	return b.String()
}
