package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldchat/herald/api"
)

// Config is every setting of the server. Each has a flag (--max-text) and
// an environment variable (HERALD_MAX_TEXT) of the same name; the variable
// sets the default and the flag overrides it.
type Config struct {
	Addr              string
	DataDir           string
	DatabasePath      string
	DatabaseURL       string
	RedisURL          string
	JWTSecret         string
	JWTPublicKey      string
	CORSOrigins       []string
	RateLimits        bool
	RateMessages      float64
	RateWrites        float64
	RateTyping        float64
	Heartbeat         time.Duration
	Retry             time.Duration
	Retention         time.Duration
	ReplayBuffer      int
	QueueSize         int
	WriteTimeout      time.Duration
	MaxStreams        int
	MaxStreamsPerUser int
	PresenceGrace     time.Duration
	PresenceBatch     time.Duration
	TypingTimeout     time.Duration
	MaxBody           int64
	MaxText           int
	TicketTTL         time.Duration
	SQLiteSync        string
	ShutdownTimeout   time.Duration
	DebugAddr         string
	LogLevel          slog.Level
	LogFormat         string

	finish func() error // applies the flags that need parsing; set by configFlags
}

// configFlags defines the server's flags on a new flag set, with defaults
// taken from the environment. Callers may add flags before parsing.
func configFlags(name string, getenv func(string) string, output io.Writer) (*flag.FlagSet, *Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	var cors, rateLimits, logLevel string
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the SQLite database and the generated JWT secret")
	fs.StringVar(&c.DatabasePath, "database-path", "", "SQLite database file (default DATA_DIR/herald.db)")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "postgres:// URL for cluster mode")
	fs.StringVar(&c.RedisURL, "redis-url", "", "redis:// URL for cluster mode")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret (default: generated once into DATA_DIR/jwt-secret)")
	fs.StringVar(&c.JWTPublicKey, "jwt-public-key", "", "PEM file of an RSA, ECDSA P-256 or Ed25519 public key, or a certificate holding one, that also verifies tokens")
	fs.StringVar(&cors, "cors-origins", "", "comma-separated browser origins allowed by CORS (default: same origin only)")
	fs.StringVar(&rateLimits, "rate-limits", "on", "on or off: off disables every per-user rate limit")
	fs.Float64Var(&c.RateMessages, "rate-messages", 20, "messages per second per user (burst twice that; 0 disables)")
	fs.Float64Var(&c.RateWrites, "rate-writes", 10, "other actions per second per user (burst twice that; 0 disables)")
	fs.Float64Var(&c.RateTyping, "rate-typing", 10, "typing pings per second per user (burst twice that; 0 disables)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 15*time.Second, "interval of heartbeat comments on idle streams")
	fs.DurationVar(&c.Retry, "retry", 2*time.Second, "reconnection delay sent to clients in retry:")
	fs.DurationVar(&c.Retention, "retention", 24*time.Hour, "how long events stay replayable")
	fs.IntVar(&c.ReplayBuffer, "replay-buffer", 100_000, "recent events kept in memory for replay")
	fs.IntVar(&c.QueueSize, "queue-size", 1024, "frames queued per stream before a slow reader is disconnected")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 10*time.Second, "deadline of each write to a stream")
	fs.IntVar(&c.MaxStreams, "max-streams", 0, "open streams per instance (0: no cap)")
	fs.IntVar(&c.MaxStreamsPerUser, "max-streams-per-user", 32, "open streams per user (0: no cap)")
	fs.DurationVar(&c.PresenceGrace, "presence-grace", 5*time.Second, "how long a user stays online after their last stream closes")
	fs.DurationVar(&c.PresenceBatch, "presence-batch", 200*time.Millisecond, "how long presence changes are gathered to be sent together")
	fs.DurationVar(&c.TypingTimeout, "typing-timeout", 5*time.Second, "how long a typing indicator lasts without a new ping")
	fs.Int64Var(&c.MaxBody, "max-body", 64<<10, "largest request body in bytes")
	fs.IntVar(&c.MaxText, "max-text", 4000, "longest message in characters")
	fs.DurationVar(&c.TicketTTL, "ticket-ttl", time.Minute, "lifetime of a stream ticket")
	fs.StringVar(&c.SQLiteSync, "sqlite-sync", "FULL", "SQLite synchronous mode: FULL survives power loss, NORMAL a crash")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for requests to finish")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "address of an opt-in pprof listener, such as 127.0.0.1:6060")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "HERALD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		f.Usage += " [" + env + "]"
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	// Finish the settings that need parsing once flags are in.
	c.finish = func() error {
		c.CORSOrigins = nil
		for _, o := range strings.Split(cors, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.CORSOrigins = append(c.CORSOrigins, o)
			}
		}
		switch strings.ToLower(rateLimits) {
		case "on", "true", "1":
			c.RateLimits = true
		case "off", "false", "0":
			c.RateLimits = false
		default:
			return fmt.Errorf("--rate-limits must be on or off, not %q", rateLimits)
		}
		return c.LogLevel.UnmarshalText([]byte(logLevel))
	}
	return fs, c, nil
}

// parseConfig builds the server's Config from the environment and args.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	fs, c, err := configFlags("serve", getenv, output)
	if err != nil {
		return Config{}, err
	}
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return Config{}, err
	}
	if len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", rest[0])
	}
	return *c, c.validate()
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// validate checks the settings once, after parsing.
func (c *Config) validate() error {
	if c.finish != nil {
		if err := c.finish(); err != nil {
			return err
		}
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Addr != "", "--addr must not be empty")
	check(c.DataDir != "" || c.DatabasePath != "", "--data-dir must not be empty")
	check(c.DatabaseURL == "" && c.RedisURL == "", "cluster mode (--database-url, --redis-url) is not available in this version; unset them to run embedded")
	check(c.JWTSecret == "" || len(c.JWTSecret) >= 32, "--jwt-secret must be at least 32 characters")
	check(c.RateMessages >= 0 && c.RateWrites >= 0 && c.RateTyping >= 0, "rates must not be negative")
	check(c.Heartbeat >= 10*time.Millisecond, "--heartbeat must be at least 10ms")
	check(c.Retry >= 10*time.Millisecond, "--retry must be at least 10ms")
	check(c.Retention >= time.Minute, "--retention must be at least 1m")
	check(c.ReplayBuffer >= 16, "--replay-buffer must be at least 16")
	check(c.QueueSize >= 16, "--queue-size must be at least 16")
	check(c.WriteTimeout >= 100*time.Millisecond, "--write-timeout must be at least 100ms")
	check(c.MaxStreams >= 0 && c.MaxStreamsPerUser >= 0, "stream caps must not be negative")
	check(c.PresenceGrace >= 0 && c.TypingTimeout >= 10*time.Millisecond, "--presence-grace must not be negative and --typing-timeout at least 10ms")
	check(c.PresenceBatch >= time.Millisecond && c.PresenceBatch <= 10*time.Second, "--presence-batch must be between 1ms and 10s")
	check(c.MaxBody >= 1024, "--max-body must be at least 1024")
	check(c.MaxText >= 1, "--max-text must be at least 1")
	check(c.TicketTTL >= time.Second, "--ticket-ttl must be at least 1s")
	sync := strings.ToUpper(c.SQLiteSync)
	check(sync == "FULL" || sync == "NORMAL" || sync == "EXTRA", "--sqlite-sync must be FULL, NORMAL or EXTRA")
	c.SQLiteSync = sync
	check(c.ShutdownTimeout > 0, "--shutdown-timeout must be positive")
	check(c.LogFormat == "text" || c.LogFormat == "json", "--log-format must be text or json")
	return errors.Join(errs...)
}

func (c Config) dbPath() string {
	if c.DatabasePath != "" {
		return c.DatabasePath
	}
	return filepath.Join(c.DataDir, "herald.db")
}

func (c Config) rateLimits() api.RateLimits {
	if !c.RateLimits {
		return api.RateLimits{}
	}
	return api.RateLimits{Messages: c.RateMessages, Writes: c.RateWrites, Typing: c.RateTyping}
}

// loadPublicKey reads an optional PEM public key for RS256, ES256 or EdDSA.
// A key that none of them verifies with is refused: the server would start
// and then refuse every token signed for it.
func loadPublicKey(path string) (crypto.PublicKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s is not a PEM file", path)
	}
	var key crypto.PublicKey
	if block.Type == "CERTIFICATE" {
		// Identity providers publish their signing keys as certificates.
		// Only the key is used: tokens are verified against it as a pinned
		// key, and the certificate's issuer and validity are not checked.
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s holds a certificate that does not parse: %w", path, err)
		}
		key = cert.PublicKey
	} else if key, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		// OpenSSL's RSA PUBLIC KEY is PKCS #1.
		if key, err = x509.ParsePKCS1PublicKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("%s holds no RSA, ECDSA or Ed25519 public key", path)
		}
	}
	switch k := key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return key, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s holds an ECDSA key on %s; ES256 needs P-256", path, k.Curve.Params().Name)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%s holds a %T, not an RSA, ECDSA P-256 or Ed25519 public key", path, key)
}
