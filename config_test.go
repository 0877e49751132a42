package main

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keyFamily is a key pair of one of the families a public key may verify.
type keyFamily struct {
	name   string
	method jwt.SigningMethod
	key    crypto.Signer
}

// keyFamilies generates a key pair of each family loadPublicKey accepts.
func keyFamilies(t *testing.T) []keyFamily {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []keyFamily{
		{"RSA", jwt.SigningMethodRS256, rsaKey},
		{"P-256", jwt.SigningMethodES256, ecKey},
		{"Ed25519", jwt.SigningMethodEdDSA, edKey},
	}
}

// pemFile writes a PEM file of one block to a new file in dir.
func pemFile(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pkixDER is the PKIX encoding of a public key.
func pkixDER(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// certDER is a self-signed certificate of key.
func certDER(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "herald test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadPublicKey(t *testing.T) {
	dir := t.TempDir()
	fams := keyFamilies(t)
	rsaKey, ecKey, edKey := fams[0].key.(*rsa.PrivateKey), fams[1].key.(*ecdsa.PrivateKey), fams[2].key.(ed25519.PrivateKey)
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	tests := []struct {
		name string
		path string
		want crypto.PublicKey // nil: an error
	}{
		{"PKIX RSA", pemFile(t, dir, "rsa.pem", "PUBLIC KEY", pkixDER(t, rsaKey.Public())), rsaKey.Public()},
		{"PKCS#1 RSA", pemFile(t, dir, "rsa1.pem", "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), rsaKey.Public()},
		{"P-256", pemFile(t, dir, "p256.pem", "PUBLIC KEY", pkixDER(t, ecKey.Public())), ecKey.Public()},
		{"Ed25519", pemFile(t, dir, "ed25519.pem", "PUBLIC KEY", pkixDER(t, edKey.Public())), edKey.Public()},
		{"PEM after a comment", write("comment.pem", append([]byte("# the issuer's key\n"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkixDER(t, edKey.Public())})...)), edKey.Public()},

		{"missing file", filepath.Join(dir, "missing.pem"), nil},
		{"empty file", write("empty.pem", nil), nil},
		{"not PEM", write("text.pem", []byte("not a key\n")), nil},
		{"DER without PEM", write("rsa.der", pkixDER(t, rsaKey.Public())), nil},
		{"PEM of garbage", pemFile(t, dir, "garbage.pem", "PUBLIC KEY", []byte("garbage")), nil},
		{"PKCS#1 RSA private key", pemFile(t, dir, "rsa-priv1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), nil},
		{"PKCS#8 RSA private key", pemFile(t, dir, "rsa-priv8.pem", "PRIVATE KEY", pkcs8(rsaKey)), nil},
		{"SEC 1 P-256 private key", pemFile(t, dir, "p256-priv.pem", "EC PRIVATE KEY", sec1), nil},
		{"PKCS#8 P-256 private key", pemFile(t, dir, "p256-priv8.pem", "PRIVATE KEY", pkcs8(ecKey)), nil},
		{"PKCS#8 Ed25519 private key", pemFile(t, dir, "ed25519-priv.pem", "PRIVATE KEY", pkcs8(edKey)), nil},
		{"RSA certificate", pemFile(t, dir, "rsa.crt", "CERTIFICATE", certDER(t, rsaKey)), rsaKey.Public()},
		{"P-256 certificate", pemFile(t, dir, "p256.crt", "CERTIFICATE", certDER(t, ecKey)), ecKey.Public()},
		{"Ed25519 certificate", pemFile(t, dir, "ed25519.crt", "CERTIFICATE", certDER(t, edKey)), edKey.Public()},
		{"P-384 certificate", pemFile(t, dir, "p384.crt", "CERTIFICATE", certDER(t, p384)), nil},
		{"certificate of garbage", pemFile(t, dir, "garbage.crt", "CERTIFICATE", []byte("garbage")), nil},
		// Keys that no accepted algorithm verifies with.
		{"P-384", pemFile(t, dir, "p384.pem", "PUBLIC KEY", pkixDER(t, p384.Public())), nil},
		{"X25519", pemFile(t, dir, "x25519.pem", "PUBLIC KEY", pkixDER(t, x25519.PublicKey())), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadPublicKey(tt.path)
			if tt.want == nil {
				if err == nil {
					t.Errorf("loadPublicKey(%s) = %T; want an error", tt.name, got)
				}
				return
			}
			if k, ok := got.(interface{ Equal(crypto.PublicKey) bool }); err != nil || !ok || !k.Equal(tt.want) {
				t.Errorf("loadPublicKey(%s) = %T, %v; want the %T written", tt.name, got, err, tt.want)
			}
		})
	}
	if got, err := loadPublicKey(""); got != nil || err != nil {
		t.Errorf("loadPublicKey(\"\") = %T, %v; want nil, nil", got, err)
	}
}

// TestServePublicKey starts a server with a public key of each family and
// checks that it accepts tokens signed with the private key, along with
// the secret's, and no other key's.
func TestServePublicKey(t *testing.T) {
	fams := keyFamilies(t)
	others := keyFamilies(t)
	for i, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			path := pemFile(t, t.TempDir(), "key.pem", "PUBLIC KEY", pkixDER(t, f.key.Public()))
			s := startServer(t, map[string]string{"HERALD_JWT_PUBLIC_KEY": path})
			claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
			tests := []struct {
				name   string
				token  string
				status int
			}{
				{f.method.Alg() + " signed with the private key", restSign(t, f.method, f.key, claims), http.StatusOK},
				{"HS256 signed with the secret", restSign(t, jwt.SigningMethodHS256, s.secret, claims), http.StatusOK},
				{f.method.Alg() + " signed with another key", restSign(t, f.method, others[i].key, claims), http.StatusUnauthorized},
				{"HS256 keyed with the public key file", restSign(t, jwt.SigningMethodHS256, mustRead(t, path), claims), http.StatusUnauthorized},
			}
			for _, tt := range tests {
				if status, body := s.do("GET", "/v1/rooms", tt.token, nil); status != tt.status {
					t.Errorf("GET /v1/rooms with %s = %d %s; want %d", tt.name, status, body, tt.status)
				}
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
