package api

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// These tests sit inside the package: tickets are redeemed, and stream
// cookies issued and checked, only by the stream handler. Tokens go through
// the exported NewAuth, Verify and Mint.

var (
	testSecret  = []byte("test-secret-test-secret-test-secret-0123")
	otherSecret = []byte("other-secret-other-secret-other-secret-0")
)

// testLeeway is the clock skew NewAuth allows on exp and nbf.
const testLeeway = 5 * time.Second

// keyPairs holds a key pair of each accepted family, one more of each that
// no Auth is given, and keys of algorithms that are never accepted.
type keyPairs struct {
	rsa, otherRSA *rsa.PrivateKey
	ec, otherEC   *ecdsa.PrivateKey
	ec384         *ecdsa.PrivateKey
	ed, otherEd   ed25519.PrivateKey
}

// generateKeys runs once: RSA keys take a while, and every test shares them.
var generateKeys = sync.OnceValues(func() (k keyPairs, err error) {
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.otherRSA} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return k, err
		}
	}
	for _, p := range []**ecdsa.PrivateKey{&k.ec, &k.otherEC} {
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return k, err
		}
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return k, err
	}
	for _, p := range []*ed25519.PrivateKey{&k.ed, &k.otherEd} {
		if _, *p, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return k, err
		}
	}
	return k, nil
})

func testKeys(t *testing.T) keyPairs {
	t.Helper()
	k, err := generateKeys()
	if err != nil {
		t.Fatalf("generate keys: %v", err)
	}
	return k
}

// signToken signs claims with method and key.
func signToken(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return tok
}

// forgeToken builds a token by hand from a header, claims and a signature
// over "header.claims".
func forgeToken(t *testing.T, header string, claims jwt.MapClaims, sig func(signingInput string) []byte) string {
	t.Helper()
	body, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(body)
	return in + "." + enc.EncodeToString(sig(in))
}

// mac is the HMAC-SHA256 of msg under key.
func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// publicDER is the PKIX encoding of pub, and publicPEM its PEM file.
func publicDER(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func publicPEM(t *testing.T, pub any) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER(t, pub)})
}

// flip changes the base64 character at i. The first characters of a
// signature carry bits of its first byte, unlike the last, whose low bits
// may be padding the decoder ignores.
func flip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func TestVerifyAlgorithms(t *testing.T) {
	k := testKeys(t)
	claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	sign := func(method jwt.SigningMethod, key any) string { return signToken(t, method, key, claims) }
	hmacOf := func(key []byte) func(string) []byte { return func(in string) []byte { return mac(key, in) } }

	secretOnly := NewAuth(testSecret, nil)
	withRSA := NewAuth(testSecret, k.rsa.Public())
	withEC := NewAuth(testSecret, k.ec.Public())
	withEd := NewAuth(testSecret, k.ed.Public())
	withEC384 := NewAuth(testSecret, k.ec384.Public())

	unsigned := forgeToken(t, `{"alg":"none","typ":"JWT"}`, claims, func(string) []byte { return nil })
	rs256, es256, edDSA := sign(jwt.SigningMethodRS256, k.rsa), sign(jwt.SigningMethodES256, k.ec), sign(jwt.SigningMethodEdDSA, k.ed)
	tests := []struct {
		name  string
		auth  *Auth
		token string
		ok    bool
	}{
		{"HS256 with the secret", secretOnly, sign(jwt.SigningMethodHS256, testSecret), true},
		{"HS256 with the secret, RSA key configured", withRSA, sign(jwt.SigningMethodHS256, testSecret), true},
		{"HS256 with the secret, P-256 key configured", withEC, sign(jwt.SigningMethodHS256, testSecret), true},
		{"HS256 with the secret, Ed25519 key configured", withEd, sign(jwt.SigningMethodHS256, testSecret), true},
		{"RS256 with the RSA key", withRSA, rs256, true},
		{"ES256 with the P-256 key", withEC, es256, true},
		{"EdDSA with the Ed25519 key", withEd, edDSA, true},

		{"none, secret only", secretOnly, unsigned, false},
		{"none, RSA key configured", withRSA, unsigned, false},
		{"none, P-256 key configured", withEC, unsigned, false},
		{"none, Ed25519 key configured", withEd, unsigned, false},
		{"none with an HMAC of the secret", secretOnly, forgeToken(t, `{"alg":"none","typ":"JWT"}`, claims, hmacOf(testSecret)), false},
		{"no alg", secretOnly, forgeToken(t, `{"typ":"JWT"}`, claims, hmacOf(testSecret)), false},

		// Algorithm confusion: the public key, which anyone may hold, used
		// as the HMAC secret.
		{"HS256 keyed with the RSA key's PEM", withRSA, sign(jwt.SigningMethodHS256, publicPEM(t, k.rsa.Public())), false},
		{"HS256 keyed with the RSA key's DER", withRSA, sign(jwt.SigningMethodHS256, publicDER(t, k.rsa.Public())), false},
		{"HS256 keyed with the P-256 key's PEM", withEC, sign(jwt.SigningMethodHS256, publicPEM(t, k.ec.Public())), false},
		{"HS256 keyed with the Ed25519 key's PEM", withEd, sign(jwt.SigningMethodHS256, publicPEM(t, k.ed.Public())), false},
		{"HS256 keyed with the Ed25519 key's bytes", withEd, sign(jwt.SigningMethodHS256, []byte(k.ed.Public().(ed25519.PublicKey))), false},
		{"RS256 header over an HMAC of the secret", withRSA, forgeToken(t, `{"alg":"RS256","typ":"JWT"}`, claims, hmacOf(testSecret)), false},
		{"ES256 header over an HMAC of the secret", withEC, forgeToken(t, `{"alg":"ES256","typ":"JWT"}`, claims, hmacOf(testSecret)), false},
		{"EdDSA header over an HMAC of the secret", withEd, forgeToken(t, `{"alg":"EdDSA","typ":"JWT"}`, claims, hmacOf(testSecret)), false},

		// A family whose key is not the one configured.
		{"RS256, secret only", secretOnly, rs256, false},
		{"RS256, P-256 key configured", withEC, rs256, false},
		{"RS256, Ed25519 key configured", withEd, rs256, false},
		{"ES256, secret only", secretOnly, es256, false},
		{"ES256, RSA key configured", withRSA, es256, false},
		{"ES256, Ed25519 key configured", withEd, es256, false},
		{"EdDSA, secret only", secretOnly, edDSA, false},
		{"EdDSA, RSA key configured", withRSA, edDSA, false},
		{"EdDSA, P-256 key configured", withEC, edDSA, false},

		// The right family with another key.
		{"HS256 with another secret", secretOnly, sign(jwt.SigningMethodHS256, otherSecret), false},
		{"RS256 with another RSA key", withRSA, sign(jwt.SigningMethodRS256, k.otherRSA), false},
		{"ES256 with another P-256 key", withEC, sign(jwt.SigningMethodES256, k.otherEC), false},
		{"EdDSA with another Ed25519 key", withEd, sign(jwt.SigningMethodEdDSA, k.otherEd), false},

		// Algorithms that are not pinned, even with the configured key.
		{"HS384 with the secret", secretOnly, sign(jwt.SigningMethodHS384, testSecret), false},
		{"HS512 with the secret", secretOnly, sign(jwt.SigningMethodHS512, testSecret), false},
		{"RS384 with the RSA key", withRSA, sign(jwt.SigningMethodRS384, k.rsa), false},
		{"RS512 with the RSA key", withRSA, sign(jwt.SigningMethodRS512, k.rsa), false},
		{"PS256 with the RSA key", withRSA, sign(jwt.SigningMethodPS256, k.rsa), false},
		{"ES384 with the P-384 key", withEC384, sign(jwt.SigningMethodES384, k.ec384), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.auth.Verify(tt.token)
			if tt.ok && (err != nil || id.User != "alice") {
				t.Errorf("Verify(%s) = %q, %v; want alice", tt.name, id.User, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("Verify(%s) = %q, nil; want an error", tt.name, id.User)
			}
		})
	}
}

// TestVerifyClaims runs the same claims through every accepted algorithm.
func TestVerifyClaims(t *testing.T) {
	k := testKeys(t)
	families := []struct {
		alg    string
		auth   *Auth
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", NewAuth(testSecret, nil), jwt.SigningMethodHS256, testSecret},
		{"RS256", NewAuth(testSecret, k.rsa.Public()), jwt.SigningMethodRS256, k.rsa},
		{"ES256", NewAuth(testSecret, k.ec.Public()), jwt.SigningMethodES256, k.ec},
		{"EdDSA", NewAuth(testSecret, k.ed.Public()), jwt.SigningMethodEdDSA, k.ed},
	}
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	past, future := now.Add(-time.Minute).Unix(), now.Add(time.Minute).Unix()
	tests := []struct {
		name   string
		claims jwt.MapClaims
		ok     bool
	}{
		{"valid", jwt.MapClaims{"sub": "alice", "exp": exp}, true},
		{"with name, iat and nbf", jwt.MapClaims{"sub": "alice", "name": "Alice", "iat": past, "nbf": past, "exp": exp}, true},
		{"without exp", jwt.MapClaims{"sub": "alice"}, false},
		{"exp in the past", jwt.MapClaims{"sub": "alice", "exp": past}, false},
		{"exp as a string", jwt.MapClaims{"sub": "alice", "exp": "tomorrow"}, false},
		{"nbf in the future", jwt.MapClaims{"sub": "alice", "exp": exp, "nbf": future}, false},
		{"without sub", jwt.MapClaims{"exp": exp}, false},
		{"empty sub", jwt.MapClaims{"sub": "", "exp": exp}, false},
		{"sub with a space", jwt.MapClaims{"sub": "ali ce", "exp": exp}, false},
		{"sub with NUL", jwt.MapClaims{"sub": "ali\x00ce", "exp": exp}, false},
		{"sub of 129 characters", jwt.MapClaims{"sub": strings.Repeat("a", 129), "exp": exp}, false},
		{"sub as a number", jwt.MapClaims{"sub": 42, "exp": exp}, false},
	}
	for _, f := range families {
		for _, tt := range tests {
			t.Run(f.alg+"/"+tt.name, func(t *testing.T) {
				id, err := f.auth.Verify(signToken(t, f.method, f.key, tt.claims))
				if !tt.ok {
					if err == nil {
						t.Errorf("Verify(%s %s) = %+v; want an error", f.alg, tt.name, id)
					}
					return
				}
				if err != nil || id.User != "alice" || !id.Expires.Equal(time.Unix(exp, 0)) {
					t.Errorf("Verify(%s %s) = %+v, %v; want alice until %v", f.alg, tt.name, id, err, time.Unix(exp, 0))
				}
			})
		}
	}
}

// TestVerifyLeeway checks the edges of the clock skew allowed on exp and
// nbf, on the fake clock of a synctest bubble.
func TestVerifyLeeway(t *testing.T) {
	tests := []struct {
		name     string
		exp, nbf time.Duration // from now; nbf 0 means none
		ok       bool
	}{
		{"exp a second within the leeway", -testLeeway + time.Second, 0, true},
		{"exp as long ago as the leeway", -testLeeway, 0, false},
		{"nbf as far ahead as the leeway", time.Hour, testLeeway, true},
		{"nbf a second past the leeway", time.Hour, testLeeway + time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				now := time.Now()
				c := jwt.MapClaims{"sub": "alice", "exp": now.Add(tt.exp).Unix()}
				if tt.nbf != 0 {
					c["nbf"] = now.Add(tt.nbf).Unix()
				}
				_, err := NewAuth(testSecret, nil).Verify(signToken(t, jwt.SigningMethodHS256, testSecret, c))
				if (err == nil) != tt.ok {
					t.Errorf("Verify(%s) = %v; want ok %v", tt.name, err, tt.ok)
				}
			})
		})
	}
}

// TestVerifyCacheExpiry checks that a verified token, served from the
// cache afterwards, is refused once it expires.
func TestVerifyCacheExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewAuth(testSecret, nil)
		const ttl = time.Minute
		token, err := Mint(testSecret, "alice", "Alice", ttl)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		steps := []struct {
			at time.Duration // since the token was minted
			ok bool
		}{
			{0, true},
			{time.Second, true},
			{ttl - time.Second, true},
			{ttl + testLeeway - time.Second, true},
			{ttl + testLeeway, false},
			{ttl + time.Hour, false},
		}
		for i, s := range steps {
			time.Sleep(time.Until(start.Add(s.at)))
			id, err := a.Verify(token)
			if ok := err == nil && id.User == "alice"; ok != s.ok {
				t.Errorf("Verify(token for %v, %v after minting) = %q, %v; want ok %v", ttl, s.at, id.User, err, s.ok)
			}
			if i == 0 {
				a.cacheMu.RLock()
				_, cached := a.verified[token]
				a.cacheMu.RUnlock()
				if !cached {
					t.Fatalf("Verify(token) left it out of the cache; this test needs it there")
				}
			}
		}
	})
}

// passOf decodes the payload of a ticket or cookie, without checking it.
func passOf(t *testing.T, s string) pass {
	t.Helper()
	enc, _, _ := strings.Cut(s, ".")
	body, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("decode pass %q: %v", s, err)
	}
	var p pass
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode pass %s: %v", body, err)
	}
	return p
}

// encodePass encodes p as a pass payload, without its MAC.
func encodePass(p pass) string {
	body, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(body)
}

// forgeries are passes of kind "t" or "c" for mallory built from a
// genuine one, each without the MAC the server would give it.
func forgeries(t *testing.T, a *Auth, genuine string) []struct{ name, pass string } {
	enc, sig, _ := strings.Cut(genuine, ".")
	p := passOf(t, genuine)
	p.User = "mallory"
	altered := encodePass(p)
	unkeyed := sha256.Sum256([]byte(altered))
	b64 := base64.RawURLEncoding.EncodeToString
	return []struct{ name, pass string }{
		{"signature altered", enc + "." + flip(sig, 0)},
		{"signature stripped", enc + "."},
		{"signature missing", enc},
		{"signature not base64", enc + ".!" + sig[1:]},
		{"payload altered, signature kept", altered + "." + sig},
		{"payload altered, MAC with the token secret", altered + "." + b64(mac(testSecret, altered))},
		{"payload altered, unkeyed hash", altered + "." + b64(unkeyed[:])},
		{"signed with another secret", NewAuth(otherSecret, nil).sign(p)},
	}
}

func TestRedeem(t *testing.T) {
	a := NewAuth(testSecret, nil)
	now := time.Now()
	alice := Identity{User: "alice", Name: "Alice", Expires: now.Add(time.Hour)}
	bob := Identity{User: "bob", Name: "Bob", Expires: now.Add(time.Hour)}
	later := now.Add(time.Hour).Unix()
	p, _, err := a.redeem(a.Ticket(alice, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cookie, _ := a.cookieFor(p, time.Hour)
	token, err := Mint(testSecret, "alice", "Alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	goodMAC := func(enc string) string {
		return enc + "." + base64.RawURLEncoding.EncodeToString(mac(a.passKey(), enc))
	}

	tests := []struct {
		name   string
		ticket string
		user   string // "" when refused
		fresh  bool
	}{
		{"valid", a.Ticket(alice, time.Minute), "alice", true},
		{"of another user", a.Ticket(bob, time.Minute), "bob", true},
		{"of the longest user id and name", a.Ticket(Identity{User: strings.Repeat("<", 128), Name: strings.Repeat("&", 128), Expires: now.Add(time.Hour)}, time.Minute), strings.Repeat("<", 128), true},
		// An expired ticket still names its user, whose stream cookie may
		// let them back in, but it is never fresh.
		{"expired", a.sign(pass{Kind: "t", User: "alice", Expires: now.Add(-time.Second).Unix(), Token: later, Nonce: "expired"}), "alice", false},
		{"a stream cookie", cookie, "", false},
		{"a bearer token", token, "", false},
		{"empty", "", "", false},
		{"garbage", "garbage", "", false},
		{"payload not base64, valid MAC", goodMAC("!!!"), "", false},
		{"payload not JSON, valid MAC", goodMAC(base64.RawURLEncoding.EncodeToString([]byte("ticket"))), "", false},
		{"without user, valid MAC", a.sign(pass{Kind: "t", Expires: later, Nonce: "nouser"}), "", false},
		{"oversized, valid MAC", a.sign(pass{Kind: "t", User: "alice", Name: strings.Repeat("n", 4096), Expires: later, Nonce: "big"}), "", false},
		{"oversized garbage", strings.Repeat("a.", 1<<16), "", false},
	}
	for _, f := range forgeries(t, a, a.Ticket(alice, time.Minute)) {
		tests = append(tests, struct {
			name   string
			ticket string
			user   string
			fresh  bool
		}{"forged: " + f.name, f.pass, "", false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, fresh, err := a.redeem(tt.ticket)
			if tt.user == "" {
				if err == nil || p.User != "" || fresh {
					t.Errorf("redeem(%s) = %q, fresh %v, %v; want an error", tt.name, p.User, fresh, err)
				}
				return
			}
			if err != nil || p.User != tt.user || fresh != tt.fresh {
				t.Errorf("redeem(%s) = %q, fresh %v, %v; want %q, fresh %v", tt.name, p.User, fresh, err, tt.user, tt.fresh)
			}
		})
	}
}

// TestRedeemSpent checks that a ticket is fresh once only, also when it is
// redeemed many times at once.
func TestRedeemSpent(t *testing.T) {
	a := NewAuth(testSecret, nil)
	alice := Identity{User: "alice", Expires: time.Now().Add(time.Hour)}
	ticket := a.Ticket(alice, time.Minute)
	if p, fresh, err := a.redeem(ticket); err != nil || p.User != "alice" || !fresh {
		t.Fatalf("redeem(new ticket) = %q, fresh %v, %v; want alice, fresh", p.User, fresh, err)
	}
	if p, fresh, err := a.redeem(ticket); err != nil || p.User != "alice" || fresh {
		t.Errorf("redeem(spent ticket) = %q, fresh %v, %v; want alice, not fresh", p.User, fresh, err)
	}

	ticket = a.Ticket(alice, time.Minute)
	const n = 16
	results := make(chan bool, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, fresh, _ := a.redeem(ticket)
			results <- fresh
		})
	}
	wg.Wait()
	close(results)
	freshCount := 0
	for fresh := range results {
		if fresh {
			freshCount++
		}
	}
	if freshCount != 1 {
		t.Errorf("%d concurrent redeem(ticket) = %d fresh; want 1", n, freshCount)
	}
}

// TestTicketExpiry follows tickets through their lifetime on the fake
// clock of a synctest bubble.
func TestTicketExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewAuth(testSecret, nil)
		alice := Identity{User: "alice", Expires: time.Now().Add(24 * time.Hour)}
		const ttl = time.Minute
		early, late := a.Ticket(alice, ttl), a.Ticket(alice, ttl)
		time.Sleep(ttl - time.Second)
		if p, fresh, err := a.redeem(early); err != nil || p.User != "alice" || !fresh {
			t.Errorf("redeem(ticket for %v, %v later) = %q, fresh %v, %v; want alice, fresh", ttl, ttl-time.Second, p.User, fresh, err)
		}
		time.Sleep(time.Second)
		if p, fresh, err := a.redeem(late); err != nil || p.User != "alice" || fresh {
			t.Errorf("redeem(ticket for %v, %v later) = %q, fresh %v, %v; want alice, not fresh", ttl, ttl, p.User, fresh, err)
		}

		// A spent ticket stays spent while the sweep forgets others.
		long := a.Ticket(alice, 10*time.Minute)
		if _, fresh, _ := a.redeem(long); !fresh {
			t.Fatalf("redeem(new ticket) not fresh")
		}
		time.Sleep(2 * time.Minute)
		a.redeem(a.Ticket(alice, ttl)) // sweeps
		if _, fresh, _ := a.redeem(long); fresh {
			t.Errorf("redeem(spent ticket for 10m, after a sweep 2m later) fresh; want not fresh")
		}
		// Once every ticket expired, the sweep forgets its nonce.
		time.Sleep(10 * time.Minute)
		a.redeem(a.Ticket(alice, ttl))
		a.mu.Lock()
		n := len(a.spent)
		a.mu.Unlock()
		if n != 1 {
			t.Errorf("spent nonces after the others expired = %d; want 1", n)
		}
	})
}

func TestCheckCookie(t *testing.T) {
	a := NewAuth(testSecret, nil)
	now := time.Now()
	later := now.Add(time.Hour).Unix()
	ticket := func(user string) pass {
		return pass{Kind: "t", User: user, Expires: now.Add(time.Minute).Unix(), Token: later, Nonce: "n-" + user}
	}
	valid, _ := a.cookieFor(ticket("alice"), time.Hour)
	bobs, _ := a.cookieFor(ticket("bob"), time.Hour)
	token, err := Mint(testSecret, "alice", "Alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cookie string
		user   string // "" when refused
	}{
		{"valid", valid, "alice"},
		{"of another user", bobs, "bob"},
		{"expired", a.sign(pass{Kind: "c", User: "alice", Expires: now.Add(-time.Second).Unix()}), ""},
		{"a ticket", a.Ticket(Identity{User: "alice", Expires: now.Add(time.Hour)}, time.Minute), ""},
		{"a bearer token", token, ""},
		{"empty", "", ""},
		{"garbage", "garbage", ""},
		{"without user, valid MAC", a.sign(pass{Kind: "c", Expires: later}), ""},
		{"oversized, valid MAC", a.sign(pass{Kind: "c", User: "alice", Name: strings.Repeat("n", 4096), Expires: later}), ""},
	}
	for _, f := range forgeries(t, a, valid) {
		tests = append(tests, struct{ name, cookie, user string }{"forged: " + f.name, f.pass, ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := a.checkCookie(tt.cookie)
			if ok != (tt.user != "") || p.User != tt.user {
				t.Errorf("checkCookie(%s) = %q, %v; want %q, %v", tt.name, p.User, ok, tt.user, tt.user != "")
			}
		})
	}
}

// TestCookieLifetime follows a token through its ticket to the stream
// cookie, which must never outlive the token.
func TestCookieLifetime(t *testing.T) {
	tests := []struct {
		name             string
		token, cookieTTL time.Duration
		want             time.Duration
	}{
		{"token outlives the cookie", 24 * time.Hour, 12 * time.Hour, 12 * time.Hour},
		{"token expires first", 10 * time.Minute, 12 * time.Hour, 10 * time.Minute},
		{"token expires with the ticket", time.Minute, 12 * time.Hour, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := NewAuth(testSecret, nil)
				token, err := Mint(testSecret, "alice", "Alice", tt.token)
				if err != nil {
					t.Fatal(err)
				}
				id, err := a.Verify(token)
				if err != nil {
					t.Fatal(err)
				}
				p, fresh, err := a.redeem(a.Ticket(id, time.Minute))
				if err != nil || !fresh {
					t.Fatalf("redeem(new ticket) = fresh %v, %v; want fresh", fresh, err)
				}
				start := time.Now()
				cookie, exp := a.cookieFor(p, tt.cookieTTL)
				if got := exp.Sub(start); got != tt.want {
					t.Errorf("cookieFor(ticket of a token for %v, %v) expires in %v; want %v", tt.token, tt.cookieTTL, got, tt.want)
				}
				time.Sleep(tt.want - time.Second)
				if p, ok := a.checkCookie(cookie); !ok || p.User != "alice" {
					t.Errorf("checkCookie(cookie, %v later) = %q, %v; want alice", tt.want-time.Second, p.User, ok)
				}
				time.Sleep(time.Second)
				if p, ok := a.checkCookie(cookie); ok {
					t.Errorf("checkCookie(cookie, %v later) = %q, %v; want refused", tt.want, p.User, ok)
				}
			})
		})
	}
}

// TestVerifyHardening: tokens that an identity provider issued for another
// use, or whose encoding could be read two ways, are refused.
func TestVerifyHardening(t *testing.T) {
	k := testKeys(t)
	strict := NewAuthWith(testSecret, AuthOptions{PublicKey: k.rsa.Public(), Issuer: "https://id.example.com/", Audience: "herald"})
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	good := jwt.MapClaims{"sub": "alice", "exp": exp, "iss": "https://id.example.com/", "aud": "herald"}
	with := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range good {
			c[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	rs := func(c jwt.MapClaims) string { return signToken(t, jwt.SigningMethodRS256, k.rsa, c) }
	header := func(h map[string]any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		for k, v := range h {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(k.rsa)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// rawClaims signs a payload written by hand, as a parser other than
	// encoding/json would read it.
	rawClaims := func(payload string) string {
		enc := base64.RawURLEncoding
		in := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
		return in + "." + enc.EncodeToString(mac(testSecret, in))
	}
	hs := NewAuth(testSecret, nil)
	tests := []struct {
		name  string
		auth  *Auth
		token string
		ok    bool
	}{
		{"iss and aud right", strict, rs(good), true},
		{"aud among several", strict, rs(with("aud", []string{"other", "herald"})), true},
		{"typ JWT", strict, header(map[string]any{"typ": "JWT"}, good), true},
		{"typ at+jwt", strict, header(map[string]any{"typ": "at+jwt"}, good), true},
		{"another issuer", strict, rs(with("iss", "https://evil.example.com/")), false},
		{"no issuer", strict, rs(with("iss", nil)), false},
		{"another audience", strict, rs(with("aud", "another-app")), false},
		{"no audience", strict, rs(with("aud", nil)), false},
		{"typ of a refresh token", strict, header(map[string]any{"typ": "refresh+jwt"}, good), false},
		{"typ of a logout token", strict, header(map[string]any{"typ": "logout+jwt"}, good), false},
		{"a crit header", strict, header(map[string]any{"crit": []string{"exp"}}, good), false},
		{"iat in the future", hs, signToken(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "alice", "exp": exp, "iat": now.Add(time.Hour).Unix()}), false},
		{"a duplicate sub", hs, rawClaims(fmt.Sprintf(`{"sub":"alice","exp":%d,"sub":"admin"}`, exp)), false},
		{"a case-variant sub", hs, rawClaims(fmt.Sprintf(`{"Sub":"admin","exp":%d}`, exp)), false},
		{"a case-variant exp", hs, rawClaims(fmt.Sprintf(`{"sub":"alice","EXP":%d}`, exp)), false},
		{"plain claims written by hand", hs, rawClaims(fmt.Sprintf(`{"sub":"alice","exp":%d,"x":1}`, exp)), true},
	}
	sig := rs(good)
	dot := strings.LastIndexByte(sig, '.')
	last := sig[len(sig)-1:]
	// The last character of a 256-byte signature carries 4 bits of padding;
	// another character with the same 2 data bits decodes the same, unless
	// decoding is strict.
	alt := map[string]string{"A": "B", "Q": "R", "g": "h", "w": "x"}[last]
	if alt == "" {
		alt = string(rune(last[0]) ^ 1)
	}
	tests = append(tests, struct {
		name  string
		auth  *Auth
		token string
		ok    bool
	}{"non-canonical base64 signature", strict, sig[:dot+1] + sig[dot+1:len(sig)-1] + alt, false})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.auth.Verify(tt.token)
			if tt.ok && (err != nil || id.User != "alice") {
				t.Errorf("Verify(%s) = %+v, %v; want alice", tt.name, id, err)
			}
			if !tt.ok && err == nil {
				t.Errorf("Verify(%s) = %+v; want an error", tt.name, id)
			}
		})
	}
}

// A ticket never outlives the token it came from.
func TestTicketCappedByToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewAuth(testSecret, nil)
		id := Identity{User: "alice", Expires: time.Now().Add(10 * time.Second)}
		ticket := a.Ticket(id, time.Minute)
		time.Sleep(11 * time.Second)
		if _, fresh, err := a.redeem(ticket); err != nil || fresh {
			t.Fatalf("redeem a minute-long ticket 11s after its 10s token = fresh %v, %v; want refused (not fresh)", fresh, err)
		}
	})
}
