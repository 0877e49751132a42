package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
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
			s := startServer(t, map[string]string{"HERALD_JWT_PUBLIC_KEY": path,
				"HERALD_JWT_ISSUER": "https://id.example.com/", "HERALD_JWT_AUDIENCE": "herald"})
			claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
				"iss": "https://id.example.com/", "aud": "herald"}
			forOther := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
				"iss": "https://id.example.com/", "aud": "another-app"}
			tests := []struct {
				name   string
				token  string
				status int
			}{
				{f.method.Alg() + " signed with the private key", restSign(t, f.method, f.key, claims), http.StatusOK},
				{"HS256 signed with the secret", restSign(t, jwt.SigningMethodHS256, s.secret, claims), http.StatusOK},
				{f.method.Alg() + " signed with another key", restSign(t, f.method, others[i].key, claims), http.StatusUnauthorized},
				{"HS256 keyed with the public key file", restSign(t, jwt.SigningMethodHS256, mustRead(t, path), claims), http.StatusUnauthorized},
				{f.method.Alg() + " for another application", restSign(t, f.method, f.key, forOther), http.StatusUnauthorized},
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

const testSecret = "test-secret-test-secret-test-secret-0123"

// cluster is a valid cluster mode's settings, with k set to v.
func cluster(k, v string) map[string]string {
	env := map[string]string{
		"HERALD_DATABASE_URL": "postgres://herald@db/herald", "HERALD_REDIS_URL": "redis://127.0.0.1:6379",
		"HERALD_JWT_SECRET": testSecret,
	}
	env[k] = v
	return env
}

// TestConfigErrors checks that each invalid setting is refused with a
// message that names its flag and variable, repeats the value, and says
// what is wanted; and that every server setting that can be wrong has a
// case here.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testCert(t, dir, "1")
	otherCert, _, _ := testCert(t, t.TempDir(), "2")
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		flag string   // the setting refused
		want []string // in its message, besides the flag and variable
	}{
		{"heartbeat from env not a duration", map[string]string{"HERALD_HEARTBEAT": "abc"}, nil, "heartbeat", []string{`"abc"`, "Go duration such as 15s"}},
		{"heartbeat from flag not a duration", nil, []string{"--heartbeat", "abc"}, "heartbeat", []string{`"abc"`, "Go duration such as 15s"}},
		{"heartbeat too short", map[string]string{"HERALD_HEARTBEAT": "1ms"}, nil, "heartbeat", []string{`"1ms"`, "at least 10ms"}},
		{"heartbeat flag overrides a bad env", map[string]string{"HERALD_HEARTBEAT": "abc"}, []string{"--heartbeat=2s", "--retry", "1ms"}, "retry", []string{`"1ms"`, "at least 10ms"}},
		{"cors origin without scheme", nil, []string{"--cors-origins", "app.example.com"}, "cors-origins", []string{`"app.example.com"`, "scheme://host[:port]"}},
		{"cors origin host:port without scheme", map[string]string{"HERALD_CORS_ORIGINS": "https://ok.example.com, localhost:3000"}, nil, "cors-origins", []string{`"localhost:3000"`, "scheme://host[:port]"}},
		{"cors origin with a path", nil, []string{"--cors-origins", "https://app.example.com/"}, "cors-origins", []string{`"https://app.example.com/"`, "no path"}},
		{"cors origin with a query", nil, []string{"--cors-origins", "https://app.example.com?x=1"}, "cors-origins", []string{`"https://app.example.com?x=1"`, "no path"}},
		{"cors origin of another scheme", nil, []string{"--cors-origins", "ftp://app.example.com"}, "cors-origins", []string{`"ftp://app.example.com"`, "scheme://host[:port]"}},
		{"cors origin with the default port", nil, []string{"--cors-origins", "https://app.example.com:443"}, "cors-origins", []string{`"https://app.example.com:443"`, "want https://app.example.com, without the default port"}},
		{"cors wildcard", nil, []string{"--cors-origins", "*"}, "cors-origins", []string{`"*"`, "not *", "credentials", "names their origin"}},
		{"cors wildcard among origins", map[string]string{"HERALD_CORS_ORIGINS": "https://app.example.com, *"}, nil, "cors-origins", []string{`"*"`, "not *", "credentials"}},
		{"addr without colon", nil, []string{"--addr", "8080"}, "addr", []string{`"8080"`, "host:port or :port"}},
		{"addr empty", nil, []string{"--addr", ""}, "addr", []string{`""`, "host:port or :port"}},
		{"data dir empty", nil, []string{"--data-dir", ""}, "data-dir", []string{`""`, "a directory"}},
		{"database url of another database", cluster("HERALD_DATABASE_URL", "mysql://herald@db/herald"), nil, "database-url", []string{`"mysql://herald@db/herald"`, "postgres://"}},
		{"database url without redis", map[string]string{"HERALD_DATABASE_URL": "postgres://herald@db/herald", "HERALD_JWT_SECRET": testSecret}, nil, "redis-url", []string{`""`, "cluster mode (--database-url is set)"}},
		{"redis url of another scheme", cluster("HERALD_REDIS_URL", "http://127.0.0.1:6379"), nil, "redis-url", []string{`"http://127.0.0.1:6379"`, "redis://"}},
		{"redis url without a database", map[string]string{"HERALD_REDIS_URL": "redis://127.0.0.1:6379", "HERALD_JWT_SECRET": testSecret}, nil, "database-url", []string{`""`, "cluster mode (--redis-url is set)"}},
		{"cluster without a shared secret", map[string]string{"HERALD_REDIS_URL": "redis://127.0.0.1:6379", "HERALD_DATABASE_URL": "postgres://herald@db/herald"}, nil, "jwt-secret", []string{"every instance shares"}},
		{"database conns too few", nil, []string{"--database-conns", "1"}, "database-conns", []string{`"1"`, "at least 2"}},
		{"redis prefix with a space", nil, []string{"--redis-prefix", "my app:"}, "redis-prefix", []string{`"my app:"`, "without spaces"}},
		{"instance id with a space", nil, []string{"--instance-id", "web 1"}, "instance-id", []string{`"web 1"`, "without spaces"}},
		{"instance timeout too short", nil, []string{"--instance-timeout", "100ms"}, "instance-timeout", []string{`"100ms"`, "at least 1s"}},
		{"jwt secret short", map[string]string{"HERALD_JWT_SECRET": "short"}, nil, "jwt-secret", []string{"has 5 characters", "at least 32"}},
		{"jwks url over http", map[string]string{"HERALD_JWKS_URL": "http://id.example.com/jwks.json", "HERALD_JWT_ISSUER": "i", "HERALD_JWT_AUDIENCE": "a"}, nil, "jwks-url", []string{`"http://id.example.com/jwks.json"`, "https://"}},
		{"public key without an issuer", map[string]string{"HERALD_JWT_PUBLIC_KEY": "key.pem", "HERALD_JWT_AUDIENCE": "a"}, nil, "jwt-issuer", []string{"required with a public key or JWKS"}},
		{"jwks without an audience", map[string]string{"HERALD_JWKS_URL": "https://id.example.com/jwks.json", "HERALD_JWT_ISSUER": "i"}, nil, "jwt-audience", []string{"required with a public key or JWKS"}},
		{"rate limits maybe", map[string]string{"HERALD_RATE_LIMITS": "maybe"}, nil, "rate-limits", []string{`"maybe"`, "on or off"}},
		{"rate messages negative", map[string]string{"HERALD_RATE_MESSAGES": "-1"}, nil, "rate-messages", []string{`"-1"`, "not negative"}},
		{"rate messages not a number", map[string]string{"HERALD_RATE_MESSAGES": "fast"}, nil, "rate-messages", []string{`"fast"`, "a number"}},
		{"rate messages NaN", map[string]string{"HERALD_RATE_MESSAGES": "NaN"}, nil, "rate-messages", []string{`"NaN"`, "not negative"}},
		{"rate writes negative", nil, []string{"--rate-writes", "-0.5"}, "rate-writes", []string{`"-0.5"`, "not negative"}},
		{"rate typing negative", nil, []string{"--rate-typing=-2"}, "rate-typing", []string{`"-2"`, "not negative"}},
		{"rate reads negative", nil, []string{"--rate-reads=-2"}, "rate-reads", []string{`"-2"`, "not negative"}},
		{"rate streams negative", nil, []string{"--rate-streams=-2"}, "rate-streams", []string{`"-2"`, "not negative"}},
		{"retry too short", nil, []string{"--retry", "1ms"}, "retry", []string{`"1ms"`, "at least 10ms"}},
		{"retention too short", nil, []string{"--retention", "30s"}, "retention", []string{`"30s"`, "at least 1m"}},
		{"replay buffer too small", nil, []string{"--replay-buffer", "8"}, "replay-buffer", []string{`"8"`, "at least 16"}},
		{"replay buffer bytes too few", nil, []string{"--replay-buffer-bytes", "1000"}, "replay-buffer-bytes", []string{`"1000"`, "at least 1048576"}},
		{"max replay zero", nil, []string{"--max-replay", "0"}, "max-replay", []string{`"0"`, "at least 1"}},
		{"queue bytes too few", nil, []string{"--queue-bytes", "1000"}, "queue-bytes", []string{`"1000"`, "at least 65536"}},
		{"queue size not a number", map[string]string{"HERALD_QUEUE_SIZE": "lots"}, nil, "queue-size", []string{`"lots"`, "a whole number"}},
		{"queue size too small", map[string]string{"HERALD_QUEUE_SIZE": "1"}, nil, "queue-size", []string{`"1"`, "at least 16"}},
		{"write timeout too short", nil, []string{"--write-timeout", "10ms"}, "write-timeout", []string{`"10ms"`, "at least 100ms"}},
		{"max streams negative", map[string]string{"HERALD_MAX_STREAMS": "-1"}, nil, "max-streams", []string{`"-1"`, "not negative"}},
		{"max streams per user negative", nil, []string{"--max-streams-per-user", "-1"}, "max-streams-per-user", []string{`"-1"`, "not negative"}},
		{"member adds of another kind", nil, []string{"--member-adds", "auto"}, "member-adds", []string{`"auto"`, "invite", "direct"}},
		{"max rooms per user negative", nil, []string{"--max-rooms-per-user", "-1"}, "max-rooms-per-user", []string{`"-1"`, "not negative"}},
		{"max room members negative", map[string]string{"HERALD_MAX_ROOM_MEMBERS": "-5"}, nil, "max-room-members", []string{`"-5"`, "not negative"}},
		{"presence grace negative", nil, []string{"--presence-grace", "-1s"}, "presence-grace", []string{`"-1s"`, "not negative"}},
		{"presence batch too long", nil, []string{"--presence-batch", "1m"}, "presence-batch", []string{`"1m0s"`, "between 1ms and 10s"}},
		{"presence room limit one", nil, []string{"--presence-room-limit", "1"}, "presence-room-limit", []string{`"1"`, "at least 2"}},
		{"presence count interval zero", map[string]string{"HERALD_PRESENCE_COUNT_INTERVAL": "0s"}, nil, "presence-count-interval", []string{`"0s"`, "at least 10ms"}},
		{"typing timeout too short", nil, []string{"--typing-timeout", "1ms"}, "typing-timeout", []string{`"1ms"`, "at least 10ms"}},
		{"max body tiny", map[string]string{"HERALD_MAX_BODY": "10"}, nil, "max-body", []string{`"10"`, "at least 1024"}},
		{"max text zero", map[string]string{"HERALD_MAX_TEXT": "0"}, nil, "max-text", []string{`"0"`, "at least 1"}},
		{"ticket ttl too short", nil, []string{"--ticket-ttl", "500ms"}, "ticket-ttl", []string{`"500ms"`, "at least 1s"}},
		{"edit window negative", nil, []string{"--edit-window", "-1m"}, "edit-window", []string{`"-1m0s"`, "not negative"}},
		{"api key too short", map[string]string{"HERALD_API_KEYS": "0123456789abcdef0123456789abcdef, short"}, nil, "api-keys", []string{"key 2 of 2 has 5 characters", "at least 32"}},
		{"api key with a space", nil, []string{"--api-keys", "an api key with spaces that is long enough"}, "api-keys", []string{"key 1 of 1 has a space", "without spaces"}},
		{"server addr without colon", nil, []string{"--server-addr", "9090"}, "server-addr", []string{`"9090"`, "host:port"}},
		{"server addr the main one", nil, []string{"--addr", ":8080", "--server-addr", ":8080"}, "server-addr", []string{`":8080"`, "other than --addr"}},
		{"metrics addr without colon", map[string]string{"HERALD_METRICS_ADDR": "9100"}, nil, "metrics-addr", []string{`"9100"`, "host:port"}},
		{"metrics addr the main one", nil, []string{"--addr", ":8080", "--metrics-addr", ":8080"}, "metrics-addr", []string{`":8080"`, "other than --addr"}},
		{"metrics addr the server API's", nil, []string{"--server-addr", "10.0.0.5:8081", "--metrics-addr", "10.0.0.5:8081"}, "metrics-addr", []string{"--server-addr"}},
		{"sqlite sync off", map[string]string{"HERALD_SQLITE_SYNC": "OFF"}, nil, "sqlite-sync", []string{`"OFF"`, "FULL, NORMAL or EXTRA"}},
		{"shutdown timeout zero", nil, []string{"--shutdown-timeout", "0s"}, "shutdown-timeout", []string{`"0s"`, "positive duration"}},
		{"drain delay negative", nil, []string{"--drain-delay", "-1s"}, "drain-delay", []string{`"-1s"`, "between 0s and 5m"}},
		{"drain delay too long", map[string]string{"HERALD_DRAIN_DELAY": "1h"}, nil, "drain-delay", []string{`"1h0m0s"`, "between 0s and 5m"}},
		{"read timeout too short", map[string]string{"HERALD_READ_TIMEOUT": "10ms"}, nil, "read-timeout", []string{`"10ms"`, "at least 100ms"}},
		{"read timeout not a duration", nil, []string{"--read-timeout", "30"}, "read-timeout", []string{`"30"`, "Go duration"}},
		{"max header bytes too few", nil, []string{"--max-header-bytes", "1000"}, "max-header-bytes", []string{`"1000"`, "at least 4096"}},
		{"debug addr without colon", map[string]string{"HERALD_DEBUG_ADDR": "6060"}, nil, "debug-addr", []string{`"6060"`, "host:port"}},
		{"log level loud", map[string]string{"HERALD_LOG_LEVEL": "loud"}, nil, "log-level", []string{`"loud"`, "debug, info, warn or error"}},
		{"log format xml", map[string]string{"HERALD_LOG_FORMAT": "xml"}, nil, "log-format", []string{`"xml"`, "text or json"}},
		{"dev maybe", map[string]string{"HERALD_DEV": "maybe"}, nil, "dev", []string{`"maybe"`, "on or off"}},
		{"dev flag with a bad value", nil, []string{"--dev=yes please"}, "dev", []string{`"yes please"`, "on or off"}},
		{"tls cert without a key", nil, []string{"--tls-cert", certFile}, "tls-key", []string{`""`, "give both or neither"}},
		{"tls key without a cert", map[string]string{"HERALD_TLS_KEY": keyFile}, nil, "tls-cert", []string{`""`, "give both or neither"}},
		{"tls cert missing", nil, []string{"--tls-cert", missing, "--tls-key", keyFile}, "tls-cert", []string{missing, "readable", "no such file"}},
		{"tls cert that is a key", nil, []string{"--tls-cert", keyFile, "--tls-key", keyFile}, "tls-cert", []string{keyFile, "CERTIFICATE"}},
		{"tls key missing", nil, []string{"--tls-cert", certFile, "--tls-key", missing}, "tls-key", []string{missing, "readable"}},
		{"tls key of another certificate", nil, []string{"--tls-cert", otherCert, "--tls-key", keyFile}, "tls-key", []string{keyFile, "private key of the certificate"}},
	}
	// Settings no value of which is refused at parsing: any path is a
	// database path, and the public key is checked as serve reads it
	// (TestServePublicKeyError).
	unchecked := map[string]bool{"database-path": true, "jwt-public-key": true}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.flag] = true
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err == nil {
				t.Fatalf("parseConfig(%q, %v) = nil; want an error about --%s", tt.args, tt.env, tt.flag)
			}
			// Other settings are valid: the error is this setting's alone.
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 1 {
				t.Errorf("parseConfig(%q, %v) = %d errors:\n%v\nwant one, about --%s", tt.args, tt.env, len(lines), err, tt.flag)
			}
			for _, want := range append([]string{"--" + tt.flag + " (", envName(tt.flag)}, tt.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("parseConfig(%q, %v) = %q; want it to say %q", tt.args, tt.env, err, want)
				}
			}
		})
	}
	fs, _, err := configFlags("serve", func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !covered[f.Name] && !unchecked[f.Name] {
			t.Errorf("no case refuses a value of --%s; every setting is validated, with a message that names it", f.Name)
		}
	})
}

// TestConfigErrorsTogether checks that every invalid setting is reported at
// once, those that do not parse with those out of range, and that secrets
// are not repeated.
func TestConfigErrorsTogether(t *testing.T) {
	env := map[string]string{
		"HERALD_HEARTBEAT":  "abc",
		"HERALD_JWT_SECRET": "hunter2-hunter2",
		"HERALD_REDIS_URL":  "redis://herald:s3cr3t-pa55@127.0.0.1:6379/not-a-db",
		"HERALD_API_KEYS":   "k3y-0f-the-app",
	}
	_, err := parseConfig([]string{"--queue-size", "lots", "--cors-origins", "app.example.com", "--max-text", "0"}, func(k string) string { return env[k] }, io.Discard)
	if err == nil {
		t.Fatal("parseConfig with seven bad settings = nil; want seven errors")
	}
	for _, want := range []string{"--heartbeat (HERALD_HEARTBEAT)", "--jwt-secret (HERALD_JWT_SECRET)", "--redis-url (HERALD_REDIS_URL)", "--queue-size (HERALD_QUEUE_SIZE)", "--cors-origins (HERALD_CORS_ORIGINS)", "--max-text (HERALD_MAX_TEXT)", "--api-keys (HERALD_API_KEYS)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("parseConfig error =\n%v\nwant it to name %s", err, want)
		}
	}
	for _, secret := range []string{"hunter2", "s3cr3t-pa55", "k3y-0f-the-app"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("parseConfig error =\n%v\nwant it not to repeat the secret %q", err, secret)
		}
	}
}

// TestConfigCORSOrigins checks the origins that are accepted, as browsers
// send them in Origin.
func TestConfigCORSOrigins(t *testing.T) {
	c, err := parseConfig([]string{"--cors-origins", " https://app.example.com, http://localhost:3000,HTTPS://Admin.Example.com:8443,http://[::1]:5173 "}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig = %v; want no error", err)
	}
	want := []string{"https://app.example.com", "http://localhost:3000", "https://admin.example.com:8443", "http://[::1]:5173"}
	if !slices.Equal(c.CORSOrigins, want) {
		t.Errorf("CORSOrigins = %q; want %q", c.CORSOrigins, want)
	}
}

// TestServePublicKeyError checks that a public key that cannot be used
// stops the server with a message that names the setting.
func TestServePublicKeyError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.pem")
	cfg, err := parseConfig([]string{"--jwt-public-key", path, "--jwt-issuer", "i", "--jwt-audience", "a",
		"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "--jwt-public-key (HERALD_JWT_PUBLIC_KEY)") || !strings.Contains(err.Error(), path) {
		t.Errorf("serve with a missing public key = %v; want an error naming --jwt-public-key (HERALD_JWT_PUBLIC_KEY) and %s", err, path)
	}
}

// TestSubcommandHelp checks that each subcommand's help lists its own
// flags: the server's for serve, and for token and bench only those that
// find the secret besides their own.
func TestSubcommandHelp(t *testing.T) {
	fs, _, err := configFlags("serve", func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var server []string
	fs.VisitAll(func(f *flag.Flag) { server = append(server, f.Name) })
	benchOwn := []string{"api-key", "cpuprofile", "duration", "idle", "json", "pid", "prefix", "publishers", "rate", "rooms", "size", "sources", "streams", "target", "url"}

	tests := []struct {
		args []string
		want []string // the flags listed, in any order
	}{
		{[]string{"serve", "-h"}, server},
		{[]string{"-h"}, server},
		{[]string{"token", "--help"}, []string{"data-dir", "jwt-secret", "name", "ttl"}},
		{[]string{"token", "alice", "-h"}, []string{"data-dir", "jwt-secret", "name", "ttl"}},
		{[]string{"bench", "-h"}, append([]string{"data-dir", "jwt-secret"}, benchOwn...)},
	}
	listed := regexp.MustCompile(`(?m)^  --([a-z-]+)`)
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errw bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errw)
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("run(%q) = %v; want flag.ErrHelp", tt.args, err)
			}
			var got []string
			for _, m := range listed.FindAllStringSubmatch(errw.String(), -1) {
				got = append(got, m[1])
			}
			want := slices.Clone(tt.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("run(%q) lists flags %q; want %q\n%s", tt.args, got, want, errw.String())
			}
			if !strings.HasPrefix(errw.String(), "usage: herald ") {
				t.Errorf("run(%q) help starts %q; want a usage line", tt.args, strings.SplitN(errw.String(), "\n", 2)[0])
			}
		})
	}
}

// TestExitStatus runs the binary: help that was asked for exits 0, as
// scripts and package managers expect, and a bad flag exits 1.
func TestExitStatus(t *testing.T) {
	bin := buildHerald(t)
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"serve", "-h"}, 0},
		{[]string{"token", "--help"}, 0},
		{[]string{"bench", "-h"}, 0},
		{[]string{"help"}, 0},
		{[]string{"serve", "--no-such-flag"}, 1},
		{[]string{"frobnicate"}, 1},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = []string{"HERALD_DATA_DIR=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		got := 0
		if ee, ok := err.(*exec.ExitError); ok {
			got = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("herald %q: %v", tt.args, err)
		}
		if got != tt.want {
			t.Errorf("herald %q exits %d; want %d\n%s", tt.args, got, tt.want, out)
		}
	}
}

// TestSubcommandSettings checks that token reads only the settings it
// lists: a server setting that is wrong in the environment is no concern
// of it, and a server flag is unknown to it.
func TestSubcommandSettings(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"HERALD_HEARTBEAT": "abc", "HERALD_DATA_DIR": dir}
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"token", "alice"}, func(k string) string { return env[k] }, &out, &errw); err != nil {
		t.Fatalf("herald token with HERALD_HEARTBEAT=abc = %v; want a token", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jwt-secret")); err != nil {
		t.Errorf("herald token did not use HERALD_DATA_DIR: %v", err)
	}
	err := run(context.Background(), []string{"token", "alice", "--heartbeat", "1s", "--data-dir", dir}, func(string) string { return "" }, &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "-heartbeat") || !strings.Contains(err.Error(), "herald token -h") {
		t.Errorf("herald token --heartbeat 1s = %v; want an error about the flag that points at herald token -h", err)
	}
}

// jwksHandler serves a JWKS of the RSA keys in keys (kid → key) and counts
// the fetches.
type jwksHandler struct {
	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	fetches int
	latency time.Duration // how long the provider takes to answer
}

func (h *jwksHandler) set(keys map[string]*rsa.PublicKey, latency time.Duration) {
	h.mu.Lock()
	h.keys, h.latency = keys, latency
	h.mu.Unlock()
}

func (h *jwksHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fetches++
	time.Sleep(h.latency)
	type jwk struct{ Kty, Kid, Alg, Use, N, E string }
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range h.keys {
		set.Keys = append(set.Keys, map[string]string{
			"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

// TestServeJWKS: a server given an identity provider's JWKS accepts the
// tokens its keys sign for this API, picks the key by kid, follows a
// rotation, and refuses the rest, without fetching the keys on every
// unknown kid.
func TestServeJWKS(t *testing.T) {
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys := &jwksHandler{keys: map[string]*rsa.PublicKey{"k1": &k1.PublicKey}}
	provider := httptest.NewServer(keys)
	defer provider.Close()
	s := startServer(t, map[string]string{"HERALD_JWKS_URL": provider.URL + "/jwks.json",
		"HERALD_JWT_ISSUER": "https://id.example.com/", "HERALD_JWT_AUDIENCE": "herald"})
	sign := func(kid string, key *rsa.PrivateKey, aud string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
			"iss": "https://id.example.com/", "aud": aud})
		tok.Header["kid"] = kid
		out, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	check := func(name, token string, want int) {
		t.Helper()
		if status, body := s.do("GET", "/v1/rooms", token, nil); status != want {
			t.Errorf("GET /v1/rooms with %s = %d %s; want %d", name, status, body, want)
		}
	}
	check("a token of key k1", sign("k1", k1, "herald"), http.StatusOK)
	check("k1's kid signed by another key", sign("k1", k2, "herald"), http.StatusUnauthorized)
	check("a token of k1 for another application", sign("k1", k1, "another-app"), http.StatusUnauthorized)

	// The provider rotates to k2: a token naming it makes the server fetch
	// the keys again, once, and wait for them as long as a provider across
	// the internet takes to answer.
	keys.set(map[string]*rsa.PublicKey{"k1": &k1.PublicKey, "k2": &k2.PublicKey}, 100*time.Millisecond)
	check("a token of the new key k2", sign("k2", k2, "herald"), http.StatusOK)
	for i := range 5 {
		check(fmt.Sprintf("a token of unknown key k3 (%d)", i), sign("k3", k2, "herald"), http.StatusUnauthorized)
	}
	keys.mu.Lock()
	fetches := keys.fetches
	keys.mu.Unlock()
	if fetches > 2 {
		t.Errorf("the keys were fetched %d times; want at most 2 (at start, and once for the new kid)", fetches)
	}
}

// The bounds on sending a request and on shutting down have defaults, and
// the environment and the flags set them.
func TestConfigRequestAndDrainBounds(t *testing.T) {
	tests := []struct {
		name           string
		env            map[string]string
		args           []string
		read, drain    time.Duration
		maxHeaderBytes int
	}{
		{"defaults", nil, nil, 30 * time.Second, 5 * time.Second, 32 << 10},
		{"env", map[string]string{"HERALD_READ_TIMEOUT": "2s", "HERALD_DRAIN_DELAY": "0s", "HERALD_MAX_HEADER_BYTES": "8192"}, nil, 2 * time.Second, 0, 8192},
		{"flags over env", map[string]string{"HERALD_READ_TIMEOUT": "2s", "HERALD_DRAIN_DELAY": "0s", "HERALD_MAX_HEADER_BYTES": "8192"},
			[]string{"--read-timeout", "1m", "--drain-delay", "15s", "--max-header-bytes", "65536"}, time.Minute, 15 * time.Second, 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.ReadTimeout != tt.read || c.DrainDelay != tt.drain || c.MaxHeaderBytes != tt.maxHeaderBytes {
				t.Errorf("read timeout, drain delay, max header bytes = %v, %v, %d; want %v, %v, %d",
					c.ReadTimeout, c.DrainDelay, c.MaxHeaderBytes, tt.read, tt.drain, tt.maxHeaderBytes)
			}
		})
	}
}
