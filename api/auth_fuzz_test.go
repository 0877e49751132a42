package api

import (
	"bytes"
	"crypto/ed25519"
	"net/http"
	"testing"
)

// FuzzToken checks that no string a client may send as a bearer token, a
// stream ticket or a stream cookie makes the server panic, or lets it in:
// without the server's secret or private key none verifies, and each
// refusal is a 401 with a code. The seeds (testdata/fuzz/FuzzToken) are
// tokens of every shape the parser meets, well formed and not, signed
// with keys this server does not have, with "none", or with its public key
// used as an HMAC secret.
func FuzzToken(f *testing.F) {
	pub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)).Public()
	a := NewAuthWith(testSecret, AuthOptions{PublicKey: pub})
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.Verify(token)
		if err == nil {
			t.Fatalf("Verify(%q) = %+v; want it refused", token, id)
		}
		if e := tokenError(err); e.Status != http.StatusUnauthorized || e.Code == "" || e.Message == "" {
			t.Fatalf("Verify(%q) refused with %v, answered %+v; want a 401 with a code", token, err, e)
		}
		if p, _, err := a.redeem(token); err == nil {
			t.Fatalf("redeem(%q) = %+v; want it refused", token, p)
		}
		if p, ok := a.checkCookie(token); ok {
			t.Fatalf("checkCookie(%q) = %+v; want it refused", token, p)
		}
	})
}
