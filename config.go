package main

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldchat/herald/api"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Config is every setting of the server. Each has a flag (--max-text) and
// an environment variable (HERALD_MAX_TEXT) of the same name; the variable
// sets the default and the flag overrides it.
type Config struct {
	Addr              string
	DataDir           string
	DatabasePath      string
	DatabaseURL       string
	DatabaseConns     int
	RedisURL          string
	RedisPrefix       string
	InstanceID        string
	InstanceTimeout   time.Duration
	JWTSecret         string
	JWTPublicKey      string
	JWKSURL           string
	JWTIssuer         string
	JWTAudience       string
	CORSOrigins       []string
	RateLimits        bool
	RateMessages      float64
	RateWrites        float64
	RateTyping        float64
	RateReads         float64
	RateStreams       float64
	Heartbeat         time.Duration
	Retry             time.Duration
	Retention         time.Duration
	ReplayBuffer      int
	ReplayBufferBytes int
	QueueSize         int
	QueueBytes        int
	MaxReplay         int
	WriteTimeout      time.Duration
	MaxStreams        int
	MaxStreamsPerUser int
	PresenceGrace     time.Duration
	PresenceBatch     time.Duration
	PresenceRoomLimit int
	PresenceCount     time.Duration
	TypingTimeout     time.Duration
	MaxBody           int64
	MaxText           int
	EditWindow        time.Duration
	MemberAdds        string
	MaxRoomsPerUser   int
	MaxRoomMembers    int
	APIKeys           []string
	ServerAddr        string
	TicketTTL         time.Duration
	SQLiteSync        string
	ShutdownTimeout   time.Duration
	DrainDelay        time.Duration
	ReadTimeout       time.Duration
	MaxHeaderBytes    int
	DebugAddr         string
	MetricsAddr       string
	TLSCert           string
	TLSKey            string
	Dev               bool
	LogLevel          slog.Level
	LogFormat         string

	finish func() error // applies the flags that need parsing; set by configFlags

	// serverReady, when set (by tests), receives the address the server
	// API listens on when it has a listener of its own.
	serverReady chan<- string
	// metricsReady, likewise, the address of the metrics' listener.
	metricsReady chan<- string
}

// configFlags defines the server's flags on a new flag set, with defaults
// taken from the environment. Callers may add flags before parsing. With
// only, the set holds just the flags named there (a subcommand's: token
// needs only those that find the secret), and their variables alone are
// read; the rest of Config keeps its defaults.
func configFlags(name string, getenv func(string) string, output io.Writer, only ...string) (*flag.FlagSet, *Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	var cors, rateLimits, logLevel, apiKeys string
	dev := &switchValue{}
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the SQLite database and the generated JWT secret")
	fs.StringVar(&c.DatabasePath, "database-path", "", "SQLite database file (default DATA_DIR/herald.db)")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "postgres:// URL of the cluster's shared database (cluster mode, with --redis-url)")
	fs.IntVar(&c.DatabaseConns, "database-conns", 20, "PostgreSQL connections per instance")
	fs.StringVar(&c.RedisURL, "redis-url", "", "redis:// URL of the cluster's Redis (cluster mode, with --database-url)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "herald:", "prefix of every Redis key, so that deployments can share a Redis")
	fs.StringVar(&c.InstanceID, "instance-id", "", "this instance's name in a cluster, unique among its instances (default: the host name and a random suffix)")
	fs.DurationVar(&c.InstanceTimeout, "instance-timeout", 15*time.Second, "how long a cluster instance may miss heartbeats before its streams count as closed")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 secret (default: generated once into DATA_DIR/jwt-secret)")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "https URL of an identity provider's published keys (JWKS), which also verify tokens, chosen by kid")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "the iss every token must have (required with --jwt-public-key or --jwks-url)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "a value every token's aud must hold (required with --jwt-public-key or --jwks-url)")
	fs.StringVar(&c.JWTPublicKey, "jwt-public-key", "", "PEM file of an RSA, ECDSA P-256 or Ed25519 public key, or a certificate holding one, that also verifies tokens")
	fs.StringVar(&cors, "cors-origins", "", "comma-separated browser origins allowed by CORS (default: same origin only)")
	fs.StringVar(&rateLimits, "rate-limits", "on", "on or off: off disables every per-user rate limit")
	fs.Float64Var(&c.RateMessages, "rate-messages", 20, "messages per second per user (burst twice that; 0 disables)")
	fs.Float64Var(&c.RateWrites, "rate-writes", 10, "other actions per second per user (burst twice that; 0 disables)")
	fs.Float64Var(&c.RateTyping, "rate-typing", 10, "typing pings per second per user (burst twice that; 0 disables)")
	fs.Float64Var(&c.RateReads, "rate-reads", 50, "GET requests per second per user (burst twice that; 0 disables)")
	fs.Float64Var(&c.RateStreams, "rate-streams", 5, "streams opened per second per user (burst twice that; 0 disables)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 15*time.Second, "interval of heartbeat comments on idle streams")
	fs.DurationVar(&c.Retry, "retry", 2*time.Second, "reconnection delay sent to clients in retry:")
	fs.DurationVar(&c.Retention, "retention", 24*time.Hour, "how long events stay replayable")
	fs.IntVar(&c.ReplayBuffer, "replay-buffer", 100_000, "recent events kept in memory for replay")
	fs.IntVar(&c.ReplayBufferBytes, "replay-buffer-bytes", 64<<20, "bytes the recent events kept in memory for replay may take")
	fs.IntVar(&c.QueueSize, "queue-size", 1024, "frames queued per stream before a slow reader is disconnected")
	fs.IntVar(&c.QueueBytes, "queue-bytes", 4<<20, "bytes queued per stream before a slow reader is disconnected")
	fs.IntVar(&c.MaxReplay, "max-replay", 10_000, "events one stream replays as it opens; past that it sends resync (reason too_far)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 10*time.Second, "deadline of each write to a stream")
	fs.IntVar(&c.MaxStreams, "max-streams", 0, "open streams per instance (0: no cap)")
	fs.IntVar(&c.MaxStreamsPerUser, "max-streams-per-user", 32, "open streams per user (0: no cap)")
	fs.DurationVar(&c.PresenceGrace, "presence-grace", 5*time.Second, "how long a user stays online after their last stream closes")
	fs.DurationVar(&c.PresenceBatch, "presence-batch", 200*time.Millisecond, "how long presence changes are gathered to be sent together")
	fs.IntVar(&c.PresenceRoomLimit, "presence-room-limit", 100, "members of the largest room whose members hear each other's presence changes; larger rooms get their online count (room:online)")
	fs.DurationVar(&c.PresenceCount, "presence-count-interval", 5*time.Second, "least time between two online counts (room:online) of a room over --presence-room-limit")
	fs.DurationVar(&c.TypingTimeout, "typing-timeout", 5*time.Second, "how long a typing indicator lasts without a new ping")
	fs.Int64Var(&c.MaxBody, "max-body", 64<<10, "largest request body in bytes")
	fs.IntVar(&c.MaxText, "max-text", 4000, "longest message in characters")
	fs.DurationVar(&c.EditWindow, "edit-window", 0, "how long after posting an author may edit a message (0: no limit)")
	fs.StringVar(&c.MemberAdds, "member-adds", "invite", "invite: a room's owner (or a DM) invites, and the user accepts; direct: the owner adds without asking")
	fs.IntVar(&c.MaxRoomsPerUser, "max-rooms-per-user", 1000, "rooms one user may be a member of, DMs included (0: no cap)")
	fs.IntVar(&c.MaxRoomMembers, "max-room-members", 50_000, "members one room may have, and open invitations (0: no cap)")
	fs.StringVar(&apiKeys, "api-keys", "", "comma-separated keys of the server API (X-API-Key), several during a rotation (default: none, the server API is off)")
	fs.StringVar(&c.ServerAddr, "server-addr", "", "address of a listener of its own for the server API, which the main one then does not serve (default: the main listener)")
	fs.DurationVar(&c.TicketTTL, "ticket-ttl", time.Minute, "lifetime of a stream ticket")
	fs.StringVar(&c.SQLiteSync, "sqlite-sync", "FULL", "when a commit is on disk: FULL answers after its fsync (streams hear of it before), NORMAL never waits for the disk, EXTRA syncs before streams hear of it")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for requests to finish")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 5*time.Second, "how long /readyz answers 503 at shutdown, while all else is served, before the server stops accepting (0: stop at once)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 30*time.Second, "how long a client may take to send a request's headers and body (408 past it); streams and answers are not bound by it")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", 32<<10, "largest request header in bytes (431 past it)")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "address of an opt-in pprof listener, such as 127.0.0.1:6060")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "address of a listener of its own for /metrics, which the main one then does not serve (default: the main listener)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate chain: serve HTTPS, with HTTP/2, instead of plain HTTP (with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.Var(dev, "dev", "dev mode: a chat page at / and a token for any name at POST /dev/token; never in production")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")

	if len(only) > 0 {
		all := fs
		fs = flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(output)
		for _, n := range only {
			f := all.Lookup(n)
			fs.Var(f.Value, f.Name, f.Usage)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: herald %s [flags]\n", name)
		printFlags(fs.Output(), fs)
	}
	checkValues(fs)

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		f.Usage += " [" + env + "]"
		if v, ok := f.Value.(*parsedValue); ok {
			v.env = env
		}
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s (--%s) = %q: %w", env, f.Name, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	// Finish the settings that need parsing once flags are in.
	c.finish = func() error {
		// The set holds the flags a caller added too.
		errs := []error{valueErrors(fs)}
		c.CORSOrigins = nil
		for _, o := range strings.Split(cors, ",") {
			if o = strings.TrimSpace(o); o == "" {
				continue
			}
			if o == "*" {
				// echo would answer Access-Control-Allow-Origin: * with
				// credentials allowed, which browsers refuse: every
				// cross-origin stream would fail, with nothing said here.
				errs = append(errs, badSetting("cors-origins", envName("cors-origins"), o,
					"the origins themselves, such as https://app.example.com, not *: browsers send credentials (the stream cookie of EventSource withCredentials) only to a server that names their origin, and refuse an answer that allows any"))
				continue
			}
			origin, err := parseOrigin(o)
			if err != nil {
				errs = append(errs, badSetting("cors-origins", envName("cors-origins"), o, err.Error()))
				continue
			}
			c.CORSOrigins = append(c.CORSOrigins, origin)
		}
		c.APIKeys = nil
		keys := strings.Split(apiKeys, ",")
		for i, k := range keys {
			if k = strings.TrimSpace(k); k == "" {
				continue
			}
			// A key itself is never repeated.
			const want = "want at least 32 printable characters without spaces, such as the output of openssl rand -hex 32"
			switch {
			case strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsControl(r) }):
				errs = append(errs, fmt.Errorf("--api-keys (%s): key %d of %d has a space or a control character: %s", envName("api-keys"), i+1, len(keys), want))
			case len(k) < 32:
				errs = append(errs, fmt.Errorf("--api-keys (%s): key %d of %d has %d characters: %s", envName("api-keys"), i+1, len(keys), len(k), want))
			default:
				c.APIKeys = append(c.APIKeys, k)
			}
		}
		var err error
		if c.RateLimits, err = onOff(rateLimits); err != nil {
			errs = append(errs, badSetting("rate-limits", envName("rate-limits"), rateLimits, "on or off"))
		}
		if c.Dev = dev.on; dev.bad != "" {
			errs = append(errs, badSetting("dev", envName("dev"), dev.bad, "on or off (the flag alone is on)"))
		}
		if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
			errs = append(errs, badSetting("log-level", envName("log-level"), logLevel, "debug, info, warn or error"))
		}
		return errors.Join(errs...)
	}
	return fs, c, nil
}

// onOff parses a switch: on, true or 1; off, false or 0.
func onOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "true", "1":
		return true, nil
	case "off", "false", "0":
		return false, nil
	}
	return false, errors.New("want on or off")
}

// switchValue is a setting that is on or off. As a flag it needs no
// value (--dev is on), and takes one after an equals sign (--dev=off);
// its variable takes on, off, true, false, 1 or 0. A value that is none
// of these is kept for validate to report.
type switchValue struct {
	on  bool
	bad string
}

func (v *switchValue) String() string {
	if v != nil && v.on {
		return "on"
	}
	return "off"
}

func (v *switchValue) Set(s string) error {
	on, err := onOff(s)
	v.on, v.bad = on, ""
	if err != nil {
		v.bad = s
	}
	return nil
}

func (v *switchValue) IsBoolFlag() bool { return true }

// envName is the environment variable of a flag: HERALD_MAX_TEXT for max-text.
func envName(flagName string) string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// badSetting says what is wrong with a setting: its flag and variable (env
// is empty for a flag that has none), the value given, and what is wanted.
func badSetting(name, env, value, want string) error {
	if env == "" {
		return fmt.Errorf("--%s = %q: want %s", name, value, want)
	}
	return fmt.Errorf("--%s (%s) = %q: want %s", name, env, value, want)
}

// parseOrigin checks a browser origin as a browser sends it in Origin, and
// returns it lowercased as browsers do. Anything else would be accepted
// here and then never match a request.
func parseOrigin(s string) (string, error) {
	const want = "an origin as browsers send it, scheme://host[:port] with no path, such as https://app.example.com"
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", errors.New(want)
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(s, "#") {
		return "", errors.New(want)
	}
	if port := u.Port(); (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		return "", fmt.Errorf("%s, without the default port, which browsers leave out of Origin", strings.ToLower(u.Scheme+"://"+strings.TrimSuffix(u.Host, ":"+port)))
	}
	return strings.ToLower(s), nil
}

// parsedValue wraps a flag's typed value, so that a value that does not
// parse is reported after parsing like any other invalid setting (with its
// flag, variable and expected form) instead of as the flag package's
// "parse error". It hides the value's type from flag.PrintDefaults:
// printFlags shows it.
type parsedValue struct {
	flag.Value
	kind string // the type shown in help
	want string // the form expected
	env  string // the setting's environment variable; empty for a flag without one

	bad    string // the last value given that did not parse
	failed bool
}

// Set keeps the previous value when s does not parse, so that validate
// reports the value given rather than what the flag package left instead.
func (v *parsedValue) Set(s string) error {
	prev := v.Value.String()
	if v.Value.Set(s) != nil {
		v.Value.Set(prev)
		v.bad, v.failed = s, true
		return nil
	}
	v.failed = false
	return nil
}

// checkValues wraps the values of a set's numeric and duration flags in
// parsedValues; flags already wrapped are left alone.
func checkValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*parsedValue); ok {
			return
		}
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch g.Get().(type) {
		case time.Duration:
			f.Value = &parsedValue{Value: f.Value, kind: "duration", want: "a Go duration such as 15s, 500ms or 1h30m"}
		case int, int64:
			f.Value = &parsedValue{Value: f.Value, kind: "int", want: "a whole number"}
		case uint, uint64:
			f.Value = &parsedValue{Value: f.Value, kind: "uint", want: "a whole number, not negative"}
		case float64:
			f.Value = &parsedValue{Value: f.Value, kind: "float", want: "a number such as 20 or 0.5"}
		}
	})
}

// valueErrors reports every value given to a set's flags that did not parse.
func valueErrors(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := f.Value.(*parsedValue); ok && v.failed {
			errs = append(errs, badSetting(f.Name, v.env, v.bad, v.want))
		}
	})
	return errors.Join(errs...)
}

// printFlags lists a set's flags like flag.PrintDefaults, with the types
// that parsedValue hides from it.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if v, ok := f.Value.(*parsedValue); ok {
			typ = v.kind
		}
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch def := f.DefValue; {
		case def == "" || def == "0" || def == "0s" || def == "false":
		case typ == "string":
			fmt.Fprintf(w, " (default %q)", def)
		default:
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	})
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
// Values that do not parse are kept for validate to report with the other
// invalid settings. An error is returned without the usage: thirty flags
// printed after it would bury it. -h prints the usage, and returns
// flag.ErrHelp.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	checkValues(fs)
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			if usage != nil {
				usage()
			} else {
				printFlags(out, fs)
			}
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("%w (herald %s -h lists the flags)", err, fs.Name())
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// validate checks the settings once, after parsing. Each error names the
// setting's flag and variable, the value, and what is wanted.
func (c *Config) validate() error {
	var errs []error
	if c.finish != nil {
		errs = append(errs, c.finish())
	}
	check := func(ok bool, name string, value any, want string) {
		if !ok {
			errs = append(errs, badSetting(name, envName(name), fmt.Sprint(value), want))
		}
	}
	const hostPort = "host:port or :port, such as :8080 or 127.0.0.1:8080"
	check(isHostPort(c.Addr), "addr", c.Addr, hostPort)
	check(c.DataDir != "" || c.DatabasePath != "", "data-dir", c.DataDir, "a directory")
	c.validateCluster(check)
	if n := len(c.JWTSecret); n > 0 && n < 32 {
		// The secret itself is not repeated.
		errs = append(errs, fmt.Errorf("--jwt-secret (%s) has %d characters: want at least 32, such as the output of openssl rand -hex 32", envName("jwt-secret"), n))
	}
	c.validateTokens(check)
	check(c.RateMessages >= 0, "rate-messages", c.RateMessages, "a rate that is not negative (0 disables the limit)")
	check(c.RateWrites >= 0, "rate-writes", c.RateWrites, "a rate that is not negative (0 disables the limit)")
	check(c.RateTyping >= 0, "rate-typing", c.RateTyping, "a rate that is not negative (0 disables the limit)")
	check(c.RateReads >= 0, "rate-reads", c.RateReads, "a rate that is not negative (0 disables the limit)")
	check(c.RateStreams >= 0, "rate-streams", c.RateStreams, "a rate that is not negative (0 disables the limit)")
	check(c.Heartbeat >= 10*time.Millisecond, "heartbeat", c.Heartbeat, "at least 10ms")
	check(c.Retry >= 10*time.Millisecond, "retry", c.Retry, "at least 10ms")
	check(c.Retention >= time.Minute, "retention", c.Retention, "at least 1m")
	check(c.ReplayBuffer >= 16, "replay-buffer", c.ReplayBuffer, "at least 16")
	check(c.ReplayBufferBytes >= 1<<20, "replay-buffer-bytes", c.ReplayBufferBytes, "at least 1048576 (1 MiB)")
	check(c.QueueSize >= 16, "queue-size", c.QueueSize, "at least 16")
	check(c.MaxReplay >= 1, "max-replay", c.MaxReplay, "at least 1")
	check(c.QueueBytes >= 64<<10, "queue-bytes", c.QueueBytes, "at least 65536 (64 KiB): a whole message, escaped, must fit")
	check(c.WriteTimeout >= 100*time.Millisecond, "write-timeout", c.WriteTimeout, "at least 100ms")
	check(c.MaxStreams >= 0, "max-streams", c.MaxStreams, "a number that is not negative (0: no cap)")
	check(c.MaxStreamsPerUser >= 0, "max-streams-per-user", c.MaxStreamsPerUser, "a number that is not negative (0: no cap)")
	check(c.PresenceGrace >= 0, "presence-grace", c.PresenceGrace, "a duration that is not negative")
	check(c.PresenceBatch >= time.Millisecond && c.PresenceBatch <= 10*time.Second, "presence-batch", c.PresenceBatch, "between 1ms and 10s")
	check(c.PresenceRoomLimit >= 2, "presence-room-limit", c.PresenceRoomLimit, "at least 2 (a direct conversation's two members)")
	check(c.PresenceCount >= 10*time.Millisecond, "presence-count-interval", c.PresenceCount, "at least 10ms")
	check(c.TypingTimeout >= 10*time.Millisecond, "typing-timeout", c.TypingTimeout, "at least 10ms")
	check(c.MaxBody >= 1024, "max-body", c.MaxBody, "at least 1024 (bytes)")
	check(c.MaxText >= 1, "max-text", c.MaxText, "at least 1 (characters)")
	check(c.EditWindow >= 0, "edit-window", c.EditWindow, "a duration that is not negative (0: no limit)")
	check(c.MemberAdds == "invite" || c.MemberAdds == "direct", "member-adds", c.MemberAdds, "invite (the user accepts) or direct (the owner adds without asking)")
	check(c.MaxRoomsPerUser >= 0, "max-rooms-per-user", c.MaxRoomsPerUser, "a number that is not negative (0: no cap)")
	check(c.MaxRoomMembers >= 0, "max-room-members", c.MaxRoomMembers, "a number that is not negative (0: no cap)")
	check(c.ServerAddr == "" || isHostPort(c.ServerAddr) && !sameAddr(c.ServerAddr, c.Addr), "server-addr", c.ServerAddr, "empty (the main listener) or "+hostPort+", other than --addr")
	check(c.TicketTTL >= time.Second, "ticket-ttl", c.TicketTTL, "at least 1s")
	sync := strings.ToUpper(c.SQLiteSync)
	check(sync == "FULL" || sync == "NORMAL" || sync == "EXTRA", "sqlite-sync", c.SQLiteSync, "FULL, NORMAL or EXTRA")
	c.SQLiteSync = sync
	check(c.ShutdownTimeout > 0, "shutdown-timeout", c.ShutdownTimeout, "a positive duration such as 10s")
	check(c.DrainDelay >= 0 && c.DrainDelay <= 5*time.Minute, "drain-delay", c.DrainDelay, "between 0s and 5m")
	check(c.ReadTimeout >= 100*time.Millisecond, "read-timeout", c.ReadTimeout, "at least 100ms")
	check(c.MaxHeaderBytes >= 4<<10, "max-header-bytes", c.MaxHeaderBytes, "at least 4096 (bytes)")
	check(c.DebugAddr == "" || isHostPort(c.DebugAddr), "debug-addr", c.DebugAddr, "empty (off) or "+hostPort)
	check(c.MetricsAddr == "" || isHostPort(c.MetricsAddr) && !sameAddr(c.MetricsAddr, c.Addr) && !sameAddr(c.MetricsAddr, c.ServerAddr),
		"metrics-addr", c.MetricsAddr, "empty (the main listener) or "+hostPort+", other than --addr and --server-addr")
	check(c.LogFormat == "text" || c.LogFormat == "json", "log-format", c.LogFormat, "text or json")
	errs = append(errs, c.validateTLS())
	return errors.Join(errs...)
}

// validateTokens checks the settings of tokens signed by an identity
// provider: its key accepts every token it signs, so the issuer and the
// audience must say which of them are for this server.
func (c *Config) validateTokens(check func(ok bool, name string, value any, want string)) {
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		loopback := err == nil && u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")
		check(err == nil && u.Host != "" && (u.Scheme == "https" || loopback), "jwks-url", c.JWKSURL,
			"an https:// URL such as https://id.example.com/.well-known/jwks.json (http:// only on loopback, for testing)")
	}
	if c.JWTPublicKey != "" || c.JWKSURL != "" {
		check(c.JWTIssuer != "", "jwt-issuer", c.JWTIssuer, "the issuer of your tokens (their iss), required with a public key or JWKS: the provider signs tokens for other applications with the same key")
		check(c.JWTAudience != "", "jwt-audience", c.JWTAudience, "this API's name in your tokens (their aud), required with a public key or JWKS")
	}
}

// cluster reports whether the settings ask for cluster mode.
func (c *Config) cluster() bool { return c.DatabaseURL != "" || c.RedisURL != "" }

// validateCluster checks the settings of cluster mode, and names the
// instance when no name was given.
func (c *Config) validateCluster(check func(ok bool, name string, value any, want string)) {
	if u, err := url.Parse(c.DatabaseURL); c.DatabaseURL != "" {
		check(err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Host != "",
			"database-url", redactURL(c.DatabaseURL), "a URL such as postgres://herald:PASSWORD@db.example.com:5432/herald")
	}
	if c.RedisURL != "" {
		_, err := redis.ParseURL(c.RedisURL)
		check(err == nil, "redis-url", redactURL(c.RedisURL), "a URL such as redis://:PASSWORD@redis.example.com:6379/0 (or rediss:// for TLS)")
	}
	check(c.DatabaseConns >= 2, "database-conns", c.DatabaseConns, "at least 2")
	check(len(c.RedisPrefix) <= 64 && !strings.ContainsFunc(c.RedisPrefix, unicode.IsSpace), "redis-prefix", c.RedisPrefix, "at most 64 characters, without spaces")
	check(c.InstanceTimeout >= time.Second, "instance-timeout", c.InstanceTimeout, "at least 1s")
	check(len(c.InstanceID) <= 64 && !strings.ContainsFunc(c.InstanceID, func(r rune) bool { return r <= ' ' || r == 0x7f }),
		"instance-id", c.InstanceID, "at most 64 printable characters, without spaces")
	if !c.cluster() {
		return
	}
	check(c.DatabaseURL != "", "database-url", c.DatabaseURL, "a postgres:// URL: cluster mode (--redis-url is set) keeps its state in PostgreSQL")
	check(c.RedisURL != "", "redis-url", c.RedisURL, "a redis:// URL: cluster mode (--database-url is set) carries events between instances in Redis")
	// Each instance would generate a secret of its own, and refuse the
	// tokens and stream tickets of the others.
	check(c.JWTSecret != "", "jwt-secret", "", "the secret every instance shares (it also signs stream tickets): cluster mode cannot generate one per instance")
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		rand.Read(b[:])
		c.InstanceID = cmp.Or(host, "herald") + "-" + hex.EncodeToString(b[:])
	}
}

// sameAddr reports whether two listen addresses are one: the same text,
// and not port 0, which picks a free port each time.
func sameAddr(a, b string) bool {
	_, port, _ := net.SplitHostPort(a)
	return a == b && port != "0"
}

// isHostPort reports whether addr is an address net.Listen takes: a host,
// possibly empty, and a port.
func isHostPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port != ""
}

// redactURL hides the password of a URL that is repeated in an error.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if s != "" {
		return "(a URL that does not parse)"
	}
	return s
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
	return api.RateLimits{Messages: c.RateMessages, Writes: c.RateWrites, Typing: c.RateTyping,
		Reads: c.RateReads, Streams: c.RateStreams}
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

// jwks fetches an identity provider's published keys now, then every 10
// minutes and, at most every 30 seconds, when a token names a key it does
// not know (the provider rotated its keys), until ctx ends. A provider that
// does not answer at start is logged, not fatal: tokens signed with the
// secret still work, and its keys are fetched when it answers.
func jwks(ctx context.Context, url string, logger *slog.Logger) (jwt.Keyfunc, error) {
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		HTTPTimeout:       10 * time.Second,
		RefreshInterval:   10 * time.Minute,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(30*time.Second), 1),
		// The library bounds both the wait for the limit and the fetch
		// itself by this: long enough for a provider across the internet
		// to answer, short enough that a request with an unknown kid is
		// refused at once when the next fetch the limit allows is further
		// away (the limiter does not wait past the bound).
		RateLimitWaitMax: 5 * time.Second,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.Warn("fetch the identity provider's keys", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return k.Keyfunc, nil
}
