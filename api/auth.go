package api

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
)

// Identity is the authenticated caller.
type Identity struct {
	User    string
	Name    string
	Expires time.Time
	// IssuedAt is the token's iat in whole Unix seconds, 0 when it has
	// none: a disconnect's cut-off refuses the tokens issued before it.
	IssuedAt int64
}

// claims are the token claims Herald reads. The times are plain numbers
// rather than jwt.NumericDate, whose decoder runs a second JSON decoder per
// field: a third of the cost of verifying a token, paid on every stream
// that opens with a token not seen before.
type claims struct {
	Name      string           `json:"name,omitempty"`
	Subject   string           `json:"sub"`
	ExpiresAt *float64         `json:"exp,omitempty"`
	NotBefore *float64         `json:"nbf,omitempty"`
	IssuedAt  *float64         `json:"iat,omitempty"`
	Issuer    string           `json:"iss,omitempty"`
	Audience  jwt.ClaimStrings `json:"aud,omitempty"`
}

// errClaimKeys reports a payload whose claims could be read two ways: a
// key given twice, or a claim's name in another case ("Sub"), which
// encoding/json would take for the claim while another parser would not.
var errClaimKeys = errors.New("the token's claims repeat a key or change a claim name's case")

// claimNames are the claims Herald reads.
var claimNames = []string{"name", "sub", "exp", "nbf", "iat", "iss", "aud"}

// UnmarshalJSON decodes the claims strictly: every key once, and the
// claims Herald reads under their own names only.
func (c *claims) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("the token's claims are not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		key := t.(string)
		if seen[key] {
			return errClaimKeys
		}
		seen[key] = true
		for _, n := range claimNames {
			if key != n && strings.EqualFold(key, n) {
				return errClaimKeys
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	type plain claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

func numericDate(seconds *float64) *jwt.NumericDate {
	if seconds == nil {
		return nil
	}
	whole, frac := math.Modf(*seconds)
	return jwt.NewNumericDate(time.Unix(int64(whole), int64(frac*1e9)))
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return numericDate(c.ExpiresAt), nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return numericDate(c.NotBefore), nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return numericDate(c.IssuedAt), nil }
func (c *claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// AuthOptions are the keys besides the secret and the checks that tokens
// must pass.
type AuthOptions struct {
	// PublicKey, when set, verifies tokens of its algorithm family
	// (RS256, ES256 or EdDSA).
	PublicKey crypto.PublicKey
	// Keys, when set, finds the key of a token by its kid among an
	// identity provider's published keys (a JWKS); it verifies RS256,
	// ES256 and EdDSA tokens.
	Keys jwt.Keyfunc
	// Issuer and Audience, when set, must be the token's iss and among its
	// aud: a token the same provider issued for another application is
	// refused.
	Issuer, Audience string
}

// Auth verifies bearer tokens and issues the stream's tickets and cookies.
type Auth struct {
	secret    []byte
	publicKey crypto.PublicKey // optional; verifies RS256/ES256/EdDSA tokens
	keys      jwt.Keyfunc      // optional; a JWKS's keys by kid
	parser    *jwt.Parser

	// spent remembers used ticket nonces until the ticket expires, so a
	// ticket opens one stream only. Guarded by mu.
	mu    sync.Mutex
	spent map[string]time.Time
	sweep time.Time

	// verified caches tokens that passed verification, until they expire:
	// clients send the same token on every request, and checking it again
	// costs a signature and a JSON parse each time. Guarded by cacheMu.
	cacheMu  sync.RWMutex
	verified map[string]Identity
}

// maxVerified bounds the verified-token cache.
const maxVerified = 16384

// NewAuth accepts HS256 tokens signed with secret and, when publicKey is not
// nil, tokens signed with its algorithm family.
func NewAuth(secret []byte, publicKey crypto.PublicKey) *Auth {
	return NewAuthWith(secret, AuthOptions{PublicKey: publicKey})
}

// NewAuthWith accepts HS256 tokens signed with secret and tokens that the
// keys of opts verify, with opts' checks. The accepted algorithms are
// pinned: "none", and any algorithm not paired with its own key, is
// refused; so is a token whose iat is in the future, or whose encoding
// could be read two ways.
func NewAuthWith(secret []byte, opts AuthOptions) *Auth {
	methods := []string{"HS256"}
	switch opts.PublicKey.(type) {
	case *rsa.PublicKey:
		methods = append(methods, "RS256")
	case *ecdsa.PublicKey:
		methods = append(methods, "ES256")
	case ed25519.PublicKey:
		methods = append(methods, "EdDSA")
	}
	if opts.Keys != nil {
		methods = append(methods, "RS256", "ES256", "EdDSA")
	}
	popts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithLeeway(5 * time.Second), jwt.WithStrictDecoding()}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	return &Auth{
		secret:    secret,
		publicKey: opts.PublicKey,
		keys:      opts.Keys,
		parser:    jwt.NewParser(popts...),
		spent:     map[string]time.Time{},
		verified:  map[string]Identity{},
	}
}

// acceptedTypes are the typ headers of a token meant for an API: none, a
// plain JWT, or an OAuth access token (RFC 9068). Any other (an ID token
// typed so, a refresh or logout token) was issued for something else.
var acceptedTypes = map[string]bool{"": true, "jwt": true, "at+jwt": true, "application/at+jwt": true}

// errTokenKind reports a token that is not an access token for an API.
var errTokenKind = errors.New("the token is not of a kind this server accepts (its typ or crit header)")

// Verify checks a token and returns who it speaks for.
func (a *Auth) Verify(token string) (Identity, error) {
	a.cacheMu.RLock()
	id, ok := a.verified[token]
	a.cacheMu.RUnlock()
	if ok && time.Now().Before(id.Expires) {
		return id, nil
	}
	id, err := a.verify(token)
	if err != nil {
		return id, err
	}
	a.cacheMu.Lock()
	if len(a.verified) >= maxVerified {
		// Forget an arbitrary half; the cache refills with tokens in use.
		n := 0
		for k := range a.verified {
			delete(a.verified, k)
			if n++; n >= maxVerified/2 {
				break
			}
		}
	}
	a.verified[token] = id
	a.cacheMu.Unlock()
	return id, nil
}

func (a *Auth) verify(token string) (Identity, error) {
	var cl claims
	_, err := a.parser.ParseWithClaims(token, &cl, func(t *jwt.Token) (any, error) {
		// Headers this server does not understand must make it refuse the
		// token (RFC 7515 §4.1.11); it understands no crit extension.
		typ, _ := t.Header["typ"].(string)
		if _, crit := t.Header["crit"]; crit || !acceptedTypes[strings.ToLower(typ)] {
			return nil, errTokenKind
		}
		if t.Method.Alg() == "HS256" {
			return a.secret, nil
		}
		if a.publicKey != nil {
			return a.publicKey, nil
		}
		if a.keys != nil {
			return a.keys(t)
		}
		return nil, errors.New("no public key configured")
	})
	if err != nil {
		return Identity{}, err
	}
	if err := checkUserID("sub", cl.Subject); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", errBadSubject, err)
	}
	id := Identity{User: cl.Subject, Name: cleanName(cl.Name), Expires: numericDate(cl.ExpiresAt).Time}
	if cl.IssuedAt != nil {
		id.IssuedAt = int64(math.Floor(*cl.IssuedAt))
	}
	return id, nil
}

// cleanName makes a token's display name safe to store and show: control
// characters (NUL included, which PostgreSQL refuses) are dropped, as is
// invalid UTF-8, and so is what a room's name may not hold (direction
// controls, invisible characters: hiddenInName), since it is shown to
// others as a name is. The name is cut to 128 characters; one that shows
// as nothing is no name. The token is not refused for it: the name is
// the identity provider's, not the user's.
func cleanName(name string) string {
	if name == "" {
		return ""
	}
	var b strings.Builder
	n := 0
	var prev rune
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError || hiddenInName(prev, r) {
			continue
		}
		if n == 128 {
			break
		}
		b.WriteRune(r)
		prev = r
		n++
	}
	if blank(b.String()) {
		return ""
	}
	return strings.TrimSpace(b.String())
}

// Mint signs an HS256 token for user; it backs `herald token` and tests.
func Mint(secret []byte, user, name string, ttl time.Duration) (string, error) {
	now := time.Now()
	iat, exp := float64(now.Unix()), float64(now.Add(ttl).Unix())
	return jwt.NewWithClaims(jwt.SigningMethodHS256, &claims{
		Name: name, Subject: user, IssuedAt: &iat, ExpiresAt: &exp,
	}).SignedString(secret)
}

// bearer extracts the token of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get(echo.HeaderAuthorization)
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// noBearer is the 401 of a request that bearer found no token in: without
// an Authorization header, a token is required; with one of another form
// (a bare token, another scheme), the answer says the form expected.
func noBearer(r *http.Request) *Error {
	if r.Header.Get(echo.HeaderAuthorization) == "" {
		return errUnauthenticated
	}
	return errBearerFormat
}

// errBadSubject is Verify's error for a token whose sub is no user id.
var errBadSubject = errors.New("the sub claim is not a valid user id")

// tokenError is the 401 of a bearer token that Verify refused. Its code
// and message tell the kinds of failure a client acts on apart: malformed
// (not a JWT), a signature that does not verify (another key, an algorithm
// not accepted), expired. None says more than that, and a token is only
// said to be expired, or its claims refused, once its signature verified,
// which jwt checks before the claims. Every kind is error="invalid_token"
// in WWW-Authenticate, as RFC 6750 has it.
func tokenError(err error) *Error {
	code, msg := "invalid_token", "the bearer token is not accepted"
	switch {
	case errors.Is(err, errTokenKind):
		msg = "the bearer token is not an access token this server accepts (its typ or crit header)"
	case errors.Is(err, errClaimKeys):
		code, msg = "malformed_token", "the bearer token's claims repeat a key or change a claim name's case"
	case errors.Is(err, jwt.ErrTokenMalformed):
		code, msg = "malformed_token", "the bearer token is not a well-formed JWT (header.payload.signature, three base64url parts)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = "the bearer token's signature does not verify: it was signed with another key than this server's, or with an algorithm it does not accept"
	case errors.Is(err, jwt.ErrTokenExpired):
		code, msg = "expired_token", "the bearer token has expired"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = "the bearer token has no exp claim, which is required"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		msg = "the bearer token is not valid yet (its nbf claim is in the future)"
	case errors.Is(err, errBadSubject):
		msg = "the bearer token's sub claim is not a valid user id: 1 to 128 visible ASCII characters, without spaces"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		msg = "the bearer token's iat claim is in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = "the bearer token was issued for another application (its iss or aud claim)"
	case errors.Is(err, errRevoked):
		code, msg = "revoked_token", "the bearer token was issued before this user's tokens were revoked: sign in again for a new one"
	}
	e := errorf(http.StatusUnauthorized, code, "%s", msg)
	e.Challenge = challenge + `, error="invalid_token", error_description="` + msg + `"`
	return e
}

// refuseToken answers a bearer token that Verify refused, and logs why at
// info: the client learns the kind of failure, the log its detail (never
// the token).
func (s *Server) refuseToken(c echo.Context, err error) error {
	e := tokenError(err)
	s.logger.LogAttrs(c.Request().Context(), slog.LevelInfo, "token refused",
		slog.String("code", e.Code),
		slog.String("reason", err.Error()),
		slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
		slog.String("method", c.Request().Method),
		slog.String("path", c.Path()))
	return e
}

// authenticate is the middleware of every /v1 route but the stream and the
// server API.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, ok := bearer(c.Request())
		if !ok {
			return noBearer(c.Request())
		}
		id, err := s.auth.Verify(token)
		if err != nil {
			return s.refuseToken(c, err)
		}
		// The cut-offs this instance has read in the log: a disconnect
		// made elsewhere holds here once its event arrives, within the
		// log's delay. The stream, which a banned client would hold on
		// to, checks the store itself.
		if s.hub.Revoked(id.User, id.IssuedAt) {
			return s.refuseToken(c, errRevoked)
		}
		if c.Request().Method == http.MethodGet {
			// Reads are limited here, all of them: a loop of history or
			// member lists costs the others as much as a loop of posts.
			if err := s.limiter.allow(c.Request().Context(), id.User, actionRead); err != nil {
				return err
			}
		}
		c.Set(identityKey, id)
		return next(c)
	}
}

// errRevoked is the refusal of a token issued before its user's cut-off.
var errRevoked = errors.New("the token was issued before the user's tokens were revoked")

const identityKey = "herald.identity"

func identity(c echo.Context) Identity { return c.Get(identityKey).(Identity) }

// pass is the signed payload of a stream ticket or stream cookie.
type pass struct {
	Kind    string `json:"k"` // "t" ticket, "c" cookie
	User    string `json:"u"`
	Name    string `json:"n,omitempty"`
	Expires int64  `json:"e"`           // unix seconds
	Token   int64  `json:"x,omitempty"` // the bearer token's expiry, which a cookie never outlives
	Issued  int64  `json:"i,omitempty"` // the bearer token's iat, which a disconnect's cut-off may refuse
	Nonce   string `json:"r,omitempty"`
}

var errBadPass = errors.New("invalid or expired pass")

func (a *Auth) sign(p pass) string {
	body, _ := json.Marshal(p)
	enc := base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, a.passKey())
	mac.Write([]byte(enc))
	return enc + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// passKey derives the key of tickets and cookies from the secret, so that
// neither can ever be mistaken for a token.
func (a *Auth) passKey() []byte {
	mac := hmac.New(sha256.New, a.secret)
	mac.Write([]byte("herald stream pass"))
	return mac.Sum(nil)
}

// maxPass bounds the length of a ticket or cookie, so that garbage costs
// no more than a pass. The longest the server issues is about 2,200
// characters: a 128-character user id and name whose characters JSON
// escapes to six bytes each ("<" is "\u003c").
const maxPass = 4096

// open checks a pass's signature and kind; expiry is left to the caller.
func (a *Auth) open(s, kind string) (pass, error) {
	enc, sig, ok := strings.Cut(s, ".")
	if !ok || len(s) > maxPass {
		return pass{}, errBadPass
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return pass{}, errBadPass
	}
	mac := hmac.New(sha256.New, a.passKey())
	mac.Write([]byte(enc))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return pass{}, errBadPass
	}
	body, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return pass{}, errBadPass
	}
	var p pass
	if json.Unmarshal(body, &p) != nil || p.Kind != kind || p.User == "" {
		return pass{}, errBadPass
	}
	return p, nil
}

// Ticket issues a single-use stream ticket for id, valid for ttl.
// A ticket never outlives the token it came from.
func (a *Auth) Ticket(id Identity, ttl time.Duration) string {
	var n [12]byte
	rand.Read(n[:])
	exp := time.Now().Add(ttl)
	if !id.Expires.IsZero() && id.Expires.Before(exp) {
		exp = id.Expires
	}
	return a.sign(pass{Kind: "t", User: id.User, Name: id.Name, Expires: exp.Unix(),
		Token: id.Expires.Unix(), Issued: id.IssuedAt, Nonce: hex.EncodeToString(n[:])})
}

// redeem spends a ticket. It returns the ticket's pass even when the ticket
// is spent or expired (fresh is then false), so that the stream cookie can
// let the same user back in.
func (a *Auth) redeem(ticket string) (p pass, fresh bool, err error) {
	p, err = a.open(ticket, "t")
	if err != nil {
		return p, false, err
	}
	now := time.Now()
	if now.Unix() >= p.Expires {
		return p, false, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Sub(a.sweep) > time.Minute {
		for k, exp := range a.spent {
			if now.After(exp) {
				delete(a.spent, k)
			}
		}
		a.sweep = now
	}
	if _, used := a.spent[p.Nonce]; used {
		return p, false, nil
	}
	a.spent[p.Nonce] = time.Unix(p.Expires+1, 0)
	return p, true, nil
}

// streamCookie is the name of the cookie that lets an EventSource reconnect
// with the URL of a ticket it already spent.
const streamCookie = "herald_stream"

// cookieFor signs a cookie for a redeemed ticket, never outliving the token
// that obtained the ticket.
func (a *Auth) cookieFor(p pass, ttl time.Duration) (string, time.Time) {
	exp := time.Now().Add(ttl)
	if tok := time.Unix(p.Token, 0); p.Token > 0 && tok.Before(exp) {
		exp = tok
	}
	return a.sign(pass{Kind: "c", User: p.User, Name: p.Name, Expires: exp.Unix(), Issued: p.Issued}), exp
}

// checkCookie returns the cookie's pass when it is valid and unexpired.
func (a *Auth) checkCookie(v string) (pass, bool) {
	p, err := a.open(v, "c")
	if err != nil || time.Now().Unix() >= p.Expires {
		return pass{}, false
	}
	return p, true
}
