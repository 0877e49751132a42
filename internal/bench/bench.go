// Package bench is the load generator behind `herald bench`. Run mints
// tokens with the server's secret, creates rooms, joins users, opens the
// streams, posts, and reports what arrived, how late, and what it cost the
// server.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldchat/herald/api"
	"github.com/heraldchat/herald/internal/event"
	"github.com/heraldchat/herald/stream"
)

// Options are the parameters of one run. Check validates them and fills in
// the defaults given below; Run checks them itself. Check's messages name
// the flags of `herald bench`, which sets these fields.
type Options struct {
	// URLs are the base URLs of the server under test, http:// or https://:
	// one, or one per instance of a cluster. With several, the streams of
	// each room take the URLs in turn, and each publisher posts to a room
	// through another URL than the room's first stream reads from: a
	// message then travels from one instance to the others before it is
	// measured. Rooms are created and joined through the first URL.
	URLs []string

	Streams    int            // subscriber streams, one user each; at least 1
	Rooms      int            // rooms, 1 to Streams; the streams are spread evenly over them
	Publishers int            // posting clients, spread over the rooms; at least 1 unless Idle
	Rate       float64        // total posts/s; 0 = flat out, each publisher posting back to back
	Size       int            // bytes of message text; at least 1
	Duration   time.Duration  // how long to post (Idle: to hold the streams open); positive
	Sources    int            // loopback source addresses 127.0.0.1..N; 0: one per StreamsPerSource streams when every URL is on loopback, else 1
	Idle       bool           // connect the streams and post nothing
	Prefix     string         // prefix of user and room names, so runs don't collide; "": bench-RANDOM
	Secret     []byte         // HS256 secret the server verifies tokens with; required
	Roots      *x509.CertPool // trusted by https URLs; nil: the system's
	Progress   io.Writer      // progress lines and warnings; nil: discarded

	// Target is the server's kind: TargetHerald ("" too) or
	// TargetCentrifugo, to compare with; APIKey is the latter's HTTP API
	// key, and Secret its client.token.hmac_secret_key.
	Target string
	APIKey string

	// PIDs are the server's processes, whose CPU time and memory /proc
	// reports (summed when there are several); none: not reported.
	PIDs []int
}

// StreamsPerSource is the default number of streams per loopback source
// address. connect(2) searches the ephemeral ports for a free one, and the
// search slows as they fill: 19,800 streams from one address cost this
// process 8.5 s of CPU in connect alone, 4 addresses a fraction.
const StreamsPerSource = 5000

// Time bounds of the phases around the measured one, so a run always ends.
const (
	drainTimeout   = 5 * time.Second        // after the last post, for deliveries still on their way
	settleQuiet    = 500 * time.Millisecond // no event for this long: the server is done announcing the streams
	settleTimeout  = time.Minute            // measure anyway after this long
	maxRetryWait   = 5 * time.Second        // cap on a server's retry: hint before reconnecting
	postTimeout    = 30 * time.Second       // one POST, including a slow durable commit
	setupWorkers   = 32                     // concurrent room creations and joins
	connectWorkers = 256                    // streams connecting at once, below the listen backlog
)

// setupTimeout and connectTimeout grow with the stream count: joins and
// connects each cost the server a little.
func setupTimeout(streams int) time.Duration {
	return 2*time.Minute + time.Duration(streams)*5*time.Millisecond
}

func connectTimeout(streams int) time.Duration {
	return time.Minute + time.Duration(streams)*5*time.Millisecond
}

var errRateLimited = errors.New("the server answered 429 rate_limited: run it with HERALD_RATE_LIMITS=off (or serve --rate-limits off) to benchmark it")

// Check validates the options and fills in the defaults that depend on
// others. Checking options a second time changes nothing.
func (o *Options) Check() error {
	if len(o.URLs) == 0 {
		return errors.New("--url must name the server")
	}
	// Source addresses 127.0.0.x only reach servers on loopback.
	loopback := true
	for i, raw := range o.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--url must be an http:// or https:// URL, not %q", raw)
		}
		o.URLs[i] = strings.TrimSuffix(raw, "/")
		host := u.Hostname()
		ip := net.ParseIP(host)
		loopback = loopback && (host == "localhost" || (ip != nil && ip.To4() != nil && ip.IsLoopback()))
	}
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	if o.Target == "" {
		o.Target = TargetHerald
	}
	check(o.Target == TargetHerald || o.Target == TargetCentrifugo, "--target must be herald or centrifugo")
	check(o.Target != TargetCentrifugo || o.APIKey != "", "--target centrifugo needs --api-key, the server's http_api.key")
	check(o.Streams >= 1, "--streams must be at least 1")
	check(o.Rooms >= 1 && o.Rooms <= o.Streams, "--rooms must be between 1 and --streams")
	check(o.Idle || o.Publishers >= 1, "--publishers must be at least 1")
	check(o.Rate >= 0, "--rate must not be negative")
	check(o.Size >= 1, "--size must be at least 1")
	check(o.Duration > 0, "--duration must be positive")
	check(!slices.ContainsFunc(o.PIDs, func(pid int) bool { return pid <= 0 }), "--pid must list positive PIDs")
	check(o.Sources >= 0 && o.Sources <= 254, "--sources must be between 1 and 254")
	if o.Prefix == "" {
		o.Prefix = "bench-" + randomHex(4)
	}
	check(len(o.Prefix) <= 64 && strings.Trim(o.Prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == "",
		"--prefix must be at most 64 letters, digits, '-', '_' or '.'")
	if o.Sources == 0 {
		o.Sources = 1
		if loopback {
			o.Sources = (o.Streams + StreamsPerSource - 1) / StreamsPerSource
		}
	}
	check(o.Sources <= 1 || loopback, "--sources above 1 needs a server on IPv4 loopback (127.0.0.1 or localhost)")
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runner is one run. Its counters are shared by every goroutine of the run;
// the rest is set up before the goroutines start and read after they end.
type runner struct {
	o    Options
	run  string // random id in every payload: messages of other runs are ignored
	fail context.CancelCauseFunc

	setupClient *http.Client // room creation and joins
	postClient  *http.Client // publishers
	transports  []*http.Transport
	dialers     [][]*streamDialer // streams: by URL, one per source address

	roomIDs     []string
	roomStreams []int // streams in each room
	streams     []*subscriber
	pubs        []*publisher
	connSem     chan struct{} // bounds streams connecting at once

	phase     atomic.Int32
	phaseAt   atomic.Int64  // when the phase began, Unix ns; draining counts as publishing
	ready     atomic.Int64  // streams that received their first ready event
	allReady  chan struct{} // closed when ready reaches the stream count
	posts     atomic.Int64  // answered 201
	delivered atomic.Int64  // distinct message:created events of this run
	events    atomic.Int64  // other events with data (presence, joins): tells when the server settled
	dups      atomic.Int64
	gaps      atomic.Int64 // sequence numbers skipped and not filled (so far)
	errs      errorCounts

	pubStart atomic.Int64 // when publishing began, Unix ns

	latMu sync.Mutex // guards the histograms of end-to-end latency in ns:
	lat   histogram  // every delivery
	early histogram  // of posts sent in the first second of publishing
	later histogram  // of the others: the steady state
}

// latencySample is one delivery's latency, and whether its post was sent
// in the first second of publishing.
type latencySample struct {
	ns    int64
	early bool
}

const (
	phaseConnect = iota
	phaseSettle
	phasePublish
	phaseDrain
	phaseIdle
)

// setPhase tells the progress line what the run is doing.
func (b *runner) setPhase(p int32) {
	if p != phaseDrain {
		b.phaseAt.Store(time.Now().UnixNano())
	}
	b.phase.Store(p)
}

// subscriber is one subscriber: one user, one room, one stream at a time.
// Its fields belong to its goroutine; Run reads them once it has ended.
type subscriber struct {
	user, token string
	room        int
	base        string // the URL it reads from
	dialer      *streamDialer
	lastID      []byte        // id of the last event received: Last-Event-ID on reconnect
	retry       time.Duration // the server's retry: hint
	wasReady    bool
	seqs        []*seqSet // by publisher; nil until one arrives
	last        time.Time // when the last message arrived

	// Latency samples, merged into runner.lat in batches so that streams
	// share one histogram without contending on every event (a histogram
	// per stream would cost 29 KiB each).
	samples [32]latencySample
	n       int
	flushed time.Time
}

// publisher posts to its rooms in turn. Its fields belong to its goroutine
// until that ends.
type publisher struct {
	id          int
	user, token string
	rooms       []*pubRoom
	lat         histogram // POST round trip in ns
}

// pubRoom is one publisher's sequence in one room: the numbers 1..seq were
// sent there, and each stream of the room must receive every one that was
// answered 201.
type pubRoom struct {
	room   int
	base   string // the URL it posts through
	seq    int64
	failed []int64 // sent but not answered 201: they may or may not arrive
}

// errorCounts counts errors by kind.
type errorCounts struct {
	mu    sync.Mutex
	m     map[string]int64 // guarded by mu
	total atomic.Int64
}

func (e *errorCounts) add(kind string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	e.m[kind]++
	e.mu.Unlock()
	e.total.Add(1)
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		m[k] = v
	}
	return m
}

// newTransport, for setup calls and posts, keeps idle connections for
// reuse and per-connection memory small, and never limits connections per
// host. It ignores proxy settings: only the given URLs are contacted.
func newTransport(idle int, roots *x509.CertPool) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxConnsPerHost:     0,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     time.Minute,
		ReadBufferSize:      2048,
		WriteBufferSize:     1024,
		DisableCompression:  true,
	}
}

// streamDialer opens stream connections from one source address, each
// address bringing its own ephemeral ports. A stream is one HTTP/1.1
// request on a connection of its own that never ends, so net/http's
// Transport buys nothing for it, and it would add a reader and a writer
// goroutine to each of tens of thousands of connections.
type streamDialer struct {
	d    net.Dialer
	addr string      // host:port of the server
	tls  *tls.Config // set for https URLs
}

func newStreamDialer(u *url.URL, local net.IP, roots *x509.CertPool) *streamDialer {
	sd := &streamDialer{d: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
	if local != nil {
		sd.d.LocalAddr = &net.TCPAddr{IP: local}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	sd.addr = net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		sd.tls = &tls.Config{ServerName: u.Hostname(), RootCAs: roots}
	}
	return sd
}

// dial connects to the server. The connection ends with a reset instead
// of a FIN: the side that closes first holds each closed connection's
// address pair in TIME_WAIT for a minute, and tens of thousands of those
// slow down the next run's connects from the same addresses.
func (sd *streamDialer) dial(ctx context.Context) (net.Conn, error) {
	c, err := sd.d.DialContext(ctx, "tcp", sd.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	if sd.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, sd.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func newRunner(o Options, fail context.CancelCauseFunc) *runner {
	b := &runner{
		o: o, run: randomHex(4), fail: fail,
		connSem:  make(chan struct{}, connectWorkers),
		allReady: make(chan struct{}),
	}
	setup := newTransport(setupWorkers, o.Roots)
	post := newTransport(max(o.Publishers, 1), o.Roots)
	b.transports = append(b.transports, setup, post)
	b.setupClient = &http.Client{Transport: setup, Timeout: postTimeout}
	b.postClient = &http.Client{Transport: post, Timeout: postTimeout}
	b.dialers = make([][]*streamDialer, len(o.URLs))
	for k, raw := range o.URLs {
		u, _ := url.Parse(raw) // checked
		for i := range o.Sources {
			var local net.IP
			if o.Sources > 1 {
				local = net.IPv4(127, 0, 0, byte(i+1))
			}
			b.dialers[k] = append(b.dialers[k], newStreamDialer(u, local, o.Roots))
		}
	}

	b.roomStreams = make([]int, o.Rooms)
	b.streams = make([]*subscriber, o.Streams)
	onURL := make([]int, len(o.URLs)) // streams given to each URL so far
	for i := range b.streams {
		room := i % o.Rooms
		k := streamURL(i, o.Rooms, len(o.URLs))
		b.roomStreams[room]++
		b.streams[i] = &subscriber{
			user: fmt.Sprintf("%s-s%d", o.Prefix, i), room: room,
			base:   o.URLs[k],
			dialer: b.dialers[k][onURL[k]%o.Sources],
			retry:  time.Second,
		}
		onURL[k]++
	}
	npub := o.Publishers
	if o.Idle {
		npub = 0
	}
	for j := range npub {
		p := &publisher{id: j, user: fmt.Sprintf("%s-p%d", o.Prefix, j)}
		for _, r := range publisherRooms(j, npub, o.Rooms) {
			p.rooms = append(p.rooms, &pubRoom{room: r, base: o.URLs[postURL(j, r, o.Rooms, len(o.URLs))]})
		}
		b.pubs = append(b.pubs, p)
	}
	return b
}

// publisherRooms spreads k publishers over m rooms: with at least as many
// publishers as rooms, publisher j posts to room j mod m; with fewer, it
// takes every k-th room and posts to them in turn.
func publisherRooms(j, k, m int) []int {
	if k >= m {
		return []int{j % m}
	}
	var rooms []int
	for r := j; r < m; r += k {
		rooms = append(rooms, r)
	}
	return rooms
}

// streamURL is the index of the URL stream i reads from, of n. The
// streams of each room take the URLs in turn, starting from one that
// moves on from room to room: every room has streams on every instance
// it can, and the rooms' first streams are spread over them too.
func streamURL(i, rooms, n int) int {
	room, nth := i%rooms, i/rooms
	return (room + nth) % n
}

// postURL is the index of the URL publisher j posts to room through, of
// n. With several, it is never the URL of the room's first stream, so
// that a message is measured from one instance to another; the room's
// publishers take the other URLs in turn.
func postURL(j, room, rooms, n int) int {
	if n == 1 {
		return 0
	}
	first := streamURL(room, rooms, n)
	nth := j / rooms // among the room's publishers, j = room + nth*rooms
	return (first + 1 + nth%(n-1)) % n
}

func (b *runner) closeIdle() {
	for _, t := range b.transports {
		t.CloseIdleConnections()
	}
}

// Run checks o, runs the scenario and returns its report. It owns every
// goroutine it starts and returns after they have all ended; ctx ends the
// run early, and a fatal error (a 429, a refused token) ends it through
// context.Cause.
func Run(parent context.Context, o Options) (*Report, error) {
	o.URLs = slices.Clone(o.URLs) // Check trims them in place
	if err := o.Check(); err != nil {
		return nil, err
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("no secret to sign tokens with")
	}
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	ctx, fail := context.WithCancelCause(parent)
	defer fail(nil)
	b := newRunner(o, fail)
	defer b.closeIdle()
	if err := b.checkLimits(out); err != nil {
		return nil, err
	}

	start := time.Now()
	fmt.Fprintf(out, "bench: setup: %d rooms, %d users joining\n", o.Rooms, o.Streams+len(b.pubs))
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout(o.Streams))
	err := b.setup(setupCtx)
	cancel()
	if err != nil {
		return nil, b.cause(ctx, fmt.Errorf("setup: %w", err))
	}
	fmt.Fprintf(out, "bench: setup done in %.2fs; connecting %d streams\n", time.Since(start).Seconds(), o.Streams)

	sample := func() ([]procSample, error) {
		samples := make([]procSample, len(o.PIDs))
		for i, pid := range o.PIDs {
			var err error
			if samples[i], err = readProc(pid); err != nil {
				return nil, err
			}
		}
		return samples, nil
	}
	before, err := sample()
	if err != nil {
		return nil, err
	}

	// The streams live until the end of the run; stopping them is the
	// last step, also on an early return.
	streamCtx, stopStreams := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer func() {
		stopStreams()
		streams.Wait()
	}()
	connStart := time.Now()
	b.setPhase(phaseConnect)
	progress := b.startProgress(out)
	defer progress()
	for _, s := range b.streams {
		streams.Go(func() { b.runStream(streamCtx, s) })
	}
	connTimer := time.NewTimer(connectTimeout(o.Streams))
	defer connTimer.Stop()
	select {
	case <-b.allReady:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-connTimer.C:
		return nil, fmt.Errorf("only %d of %d streams connected within %s (errors: %s)",
			b.ready.Load(), o.Streams, connectTimeout(o.Streams), formatErrors(b.errs.snapshot()))
	}
	connectTime := time.Since(connStart)

	// The server may still be announcing the new streams: each stream that
	// opens is announced to every stream sharing a small room with it, n²
	// frames for a room of n up to Herald's --presence-room-limit. Measure once the streams have been quiet for a
	// moment, so that the figures are those of the message path.
	b.setPhase(phaseSettle)
	settleStart := time.Now()
	last, quietSince := b.events.Load(), settleStart
	for time.Since(quietSince) < settleQuiet {
		if time.Since(settleStart) > settleTimeout {
			fmt.Fprintf(out, "bench: warning: the streams still receive events %s after connecting; measuring anyway\n", settleTimeout)
			break
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, context.Cause(ctx)
		}
		if n := b.events.Load(); n != last {
			last, quietSince = n, time.Now()
		}
	}
	settleTime := time.Since(settleStart)
	connectEvents := b.events.Load()
	connected, err := sample()
	if err != nil {
		return nil, err
	}
	clientBefore := selfCPU()

	// The measured phase: post for the duration, or hold the streams idle.
	measureStart := time.Now()
	var measureEnd, postEnd time.Time
	var expected int64
	if o.Idle {
		b.setPhase(phaseIdle)
		if err := sleepCtx(ctx, o.Duration); err != nil {
			return nil, context.Cause(ctx)
		}
		measureEnd = time.Now()
	} else {
		b.setPhase(phasePublish)
		b.pubStart.Store(time.Now().UnixNano())
		stop := make(chan struct{})
		var pubs sync.WaitGroup
		for _, p := range b.pubs {
			pubs.Go(func() { b.runPublisher(ctx, stop, p) })
		}
		sleepCtx(ctx, o.Duration)
		close(stop)
		pubs.Wait()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		postEnd = time.Now()
		measureEnd = postEnd

		// Wait for the deliveries still on their way; what has not arrived
		// after drainTimeout counts as lost.
		b.setPhase(phaseDrain)
		expected = b.expected()
		deadline := time.Now().Add(drainTimeout)
		for b.delivered.Load() < expected && time.Now().Before(deadline) {
			if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
				return nil, context.Cause(ctx)
			}
		}
	}
	after, err := sample()
	if err != nil {
		return nil, err
	}
	clientCPU := selfCPU() - clientBefore
	stopStreams()
	streams.Wait()
	progress()

	// Every goroutine has ended: the streams' and publishers' state is ours.
	for _, s := range b.streams {
		if s.last.After(measureEnd) {
			measureEnd = s.last
		}
	}
	seconds := measureEnd.Sub(measureStart).Seconds()
	postLat := &histogram{}
	for _, p := range b.pubs {
		postLat.Merge(&p.lat)
	}
	r := &Report{
		Scenario: Scenario{
			Target: o.Target, URL: strings.Join(o.URLs, ","), Streams: o.Streams, Rooms: o.Rooms, Publishers: o.Publishers, Rate: o.Rate,
			Size: o.Size, Duration: o.Duration.String(), Idle: o.Idle, Sources: o.Sources, Prefix: o.Prefix,
		},
		ConnectSeconds: connectTime.Seconds(),
		SettleSeconds:  settleTime.Seconds(),
		ConnectEvents:  connectEvents,
		ClientCPU:      clientCPU.Seconds(),
		Seconds:        seconds,
		Posts:          b.posts.Load(),
		Deliveries:     b.delivered.Load(),
		Expected:       expected,
		Latency:        summarize(&b.lat),
		LatencyEarly:   summarize(&b.early),
		LatencyLater:   summarize(&b.later),
		PostLatency:    summarize(postLat),
		Lost:           b.lost(),
		Duplicated:     b.dups.Load(),
		Errors:         b.errs.snapshot(),
	}
	if o.Idle {
		r.Scenario.Publishers = 0
	}
	if seconds > 0 {
		r.DeliveriesPerSec = float64(r.Deliveries) / seconds
	}
	if d := postEnd.Sub(measureStart).Seconds(); d > 0 {
		r.PostsPerSec = float64(r.Posts) / d
	}
	r.Server = serverReport(o.PIDs, before, connected, after, r.Deliveries, o.Streams)
	return r, nil
}

// selfCPU is the CPU time this process has used, user and system: the
// load generator's own share of a machine it shares with the server.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cause prefers the reason the run was cancelled (a 429, say) to the error
// it caused.
func (b *runner) cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkLimits raises the open-file limit to its hard limit and checks that
// the streams fit, in files and in ephemeral ports.
func (b *runner) checkLimits(out io.Writer) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("read open-file limit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			fmt.Fprintf(out, "bench: could not raise the open-file limit: %v\n", err)
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		}
	}
	fmt.Fprintf(out, "bench: open-file limit %d (hard %d)\n", rl.Cur, rl.Max)
	need := uint64(b.o.Streams + len(b.pubs) + setupWorkers + 32)
	if rl.Cur < need {
		return fmt.Errorf("%d streams need about %d open files; the limit is %d (raise it with ulimit -n, or run fewer streams)", b.o.Streams, need, rl.Cur)
	}
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(raw), &lo, &hi); err == nil {
			perSource := (b.o.Streams + b.o.Sources - 1) / b.o.Sources
			if ports := hi - lo + 1; perSource > ports-1000 {
				fmt.Fprintf(out, "bench: warning: %d streams per source address but only %d ephemeral ports; raise --sources\n", perSource, ports)
			}
		}
	}
	return nil
}

// setup mints the tokens, creates the rooms and joins every user to its
// room, a bounded number of requests at a time.
func (b *runner) setup(ctx context.Context) error {
	ttl := b.o.Duration + 2*time.Hour
	var err error
	if b.o.Target == TargetCentrifugo {
		return b.setupCentrifugo(ttl)
	}
	for _, s := range b.streams {
		if s.token, err = api.Mint(b.o.Secret, s.user, "", ttl); err != nil {
			return err
		}
	}
	for _, p := range b.pubs {
		if p.token, err = api.Mint(b.o.Secret, p.user, "", ttl); err != nil {
			return err
		}
	}

	// Each room has an owner of its own, who creates it and has no
	// stream: one user creating them all would meet the server's cap on
	// a user's rooms (--max-rooms-per-user) in the scenarios of a room
	// per stream.
	b.roomIDs = make([]string, b.o.Rooms)
	err = parallel(ctx, b.o.Rooms, func(ctx context.Context, r int) error {
		owner, err := api.Mint(b.o.Secret, fmt.Sprintf("%s-o%d", b.o.Prefix, r), "", ttl)
		if err != nil {
			return err
		}
		var room struct {
			ID string `json:"id"`
		}
		body := fmt.Sprintf(`{"name":"%s-r%d"}`, b.o.Prefix, r)
		if err := b.call(ctx, "POST", "/v1/rooms", owner, body, http.StatusCreated, &room); err != nil {
			return fmt.Errorf("create room: %w", err)
		}
		b.roomIDs[r] = room.ID
		return nil
	})
	if err != nil {
		return err
	}

	type join struct {
		token string
		room  int
	}
	var joins []join
	for _, s := range b.streams {
		joins = append(joins, join{s.token, s.room})
	}
	for _, p := range b.pubs {
		for _, pr := range p.rooms {
			joins = append(joins, join{p.token, pr.room})
		}
	}
	return parallel(ctx, len(joins), func(ctx context.Context, i int) error {
		j := joins[i]
		if err := b.call(ctx, "POST", "/v1/rooms/"+b.roomIDs[j.room]+"/join", j.token, "", http.StatusOK, nil); err != nil {
			return fmt.Errorf("join room: %w", err)
		}
		return nil
	})
}

// setupCentrifugo names the rooms' channels and mints the streams'
// tokens, each subscribing its stream to its room's channel: Centrifugo
// has nothing to create, and its publishers use the API key.
func (b *runner) setupCentrifugo(ttl time.Duration) error {
	b.roomIDs = make([]string, b.o.Rooms)
	for r := range b.roomIDs {
		b.roomIDs[r] = centrifugoChannel(b.o.Prefix, r)
	}
	for _, s := range b.streams {
		var err error
		if s.token, err = centrifugoToken(b.o.Secret, s.user, b.roomIDs[s.room], ttl); err != nil {
			return err
		}
	}
	return nil
}

// parallel runs f(0..n-1) on setupWorkers goroutines and returns the first
// error, which stops the rest.
func parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(setupWorkers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// call sends one setup request, through the first URL, and checks its
// status; out, when not nil, receives the JSON answer.
func (b *runner) call(ctx context.Context, method, path, token, body string, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, b.o.URLs[0]+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.setupClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return b.refused(method+" "+path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// refused turns an unexpected answer into an error, with advice for the
// answers a misconfigured run gets.
func (b *runner) refused(what string, status int, body []byte) error {
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(body, &e)
	switch status {
	case http.StatusTooManyRequests:
		return errRateLimited
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: 401 %s: the server refuses tokens signed with this secret; give bench the server's --data-dir or --jwt-secret", what, e.Error.Code)
	}
	if e.Error.Code == "" {
		return fmt.Errorf("%s: status %d: %.200s", what, status, body)
	}
	return fmt.Errorf("%s: %d %s: %s", what, status, e.Error.Code, e.Error.Message)
}

// runStream keeps one subscriber's stream open until ctx ends, reconnecting
// after a drop with Last-Event-ID like a real client, after the server's
// retry: hint.
func (b *runner) runStream(ctx context.Context, s *subscriber) {
	defer b.flushLatency(s, time.Now())
	// A bounded number of streams connect at once; each frees its slot
	// when it is ready.
	select {
	case b.connSem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	held := true
	release := func() {
		if held {
			held = false
			<-b.connSem
		}
	}
	defer release()
	for {
		kind := b.streamOnce(ctx, s, release)
		if ctx.Err() != nil {
			return
		}
		b.errs.add(kind)
		if sleepCtx(ctx, min(s.retry, maxRetryWait)) != nil {
			return
		}
	}
}

// streamOnce opens the stream once and reads it to its end. It returns the
// kind of error that ended it.
func (b *runner) streamOnce(ctx context.Context, s *subscriber, release func()) string {
	centrifugo := b.o.Target == TargetCentrifugo
	req, err := b.streamRequest(ctx, s)
	if err != nil {
		return "connect_error"
	}
	conn, err := s.dialer.dial(ctx)
	if err != nil {
		return "connect_" + netErrorKind(err)
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if err := req.Write(conn); err != nil {
		return "connect_" + netErrorKind(err)
	}
	// A chunked stream (Centrifugo's, or any behind a proxy) is read
	// through this buffer, an unchunked one straight into the decoder's:
	// both the same size, so that either takes as much in one read(2).
	size := streamBuffer(len(b.streams))
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, size), req)
	if err != nil {
		return "connect_" + netErrorKind(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusUnauthorized {
			b.fail(b.refused("stream", resp.StatusCode, body))
		}
		return "connect_" + strconv.Itoa(resp.StatusCode)
	}
	dec := stream.NewDecoderSize(resp.Body, size)
	closing := "" // the reason of a closing comment, when the server gave one
	for {
		// Raw frames: the hot path allocates nothing per event.
		f, err := dec.NextRaw()
		if err != nil {
			if closing != "" {
				return "stream_closed_" + closing
			}
			return "stream_dropped"
		}
		if f.Retry > 0 {
			s.retry = time.Duration(f.Retry) * time.Millisecond
		}
		if reason, ok := bytes.CutPrefix(f.Comment, []byte("closing ")); ok {
			closing = string(reason)
		}
		if centrifugo {
			b.onPush(s, release, f.Data)
			continue
		}
		switch f.Event {
		case event.Ready:
			b.onReady(s, release)
		case "message:created":
			b.onMessage(s, f.Data)
		case event.Resync:
			// The server could not resume from our id: what was missed is
			// lost, and will show as such.
			b.errs.add("resync")
		default:
			if f.HasData {
				b.events.Add(1)
			}
		}
		if f.HasID {
			s.lastID = append(s.lastID[:0], f.ID...)
		}
	}
}

// streamBuffer is the size of each stream's two read buffers (the
// connection's and the decoder's): as large as 32 KiB, so that a busy stream
// takes what the server wrote in few reads, while each kind together holds
// at most 32 MiB (2 KiB each at least), so that tens of thousands of streams
// stay small.
func streamBuffer(streams int) int {
	return min(max((32<<20)/max(streams, 1), 2<<10), 32<<10)
}

// streamRequest is the request that opens s's stream: Herald's, resuming
// from the last id received, or Centrifugo's uni-SSE connection.
func (b *runner) streamRequest(ctx context.Context, s *subscriber) (*http.Request, error) {
	if b.o.Target == TargetCentrifugo {
		return centrifugoStreamRequest(ctx, s.base, s.token)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/v1/stream", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Accept", "text/event-stream")
	if len(s.lastID) > 0 {
		req.Header.Set("Last-Event-ID", string(s.lastID))
	}
	return req, nil
}

// onReady counts a stream that is ready to receive, the first time.
func (b *runner) onReady(s *subscriber, release func()) {
	if s.wasReady {
		return
	}
	s.wasReady = true
	release()
	if b.ready.Add(1) == int64(len(b.streams)) {
		close(b.allReady)
	}
}

// onPush accounts one Centrifugo uni-SSE push, as streamOnce does
// Herald's events.
func (b *runner) onPush(s *subscriber, release func(), data []byte) {
	switch centrifugoPush(data) {
	case pushConnect:
		b.onReady(s, release)
	case pushPublication:
		b.onMessage(s, data)
	case pushChannel:
		b.events.Add(1)
	}
}

// netErrorKind names a transport error for the error counts.
func netErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_ephemeral_ports" // raise --sources
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}

// onMessage accounts one message:created event: sequence (loss,
// duplicates) and latency.
func (b *runner) onMessage(s *subscriber, data []byte) {
	now := time.Now()
	run, pub, seq, sent, ok := parsePayload(messageText(data))
	if !ok || string(run) != b.run || pub < 0 || pub >= len(b.pubs) || seq > maxSeq {
		return // not ours: another client posting in the room
	}
	if s.seqs == nil {
		s.seqs = make([]*seqSet, len(b.pubs))
	}
	set := s.seqs[pub]
	if set == nil {
		set = &seqSet{}
		s.seqs[pub] = set
	}
	if set.has(seq) {
		b.dups.Add(1)
		return
	}
	if d := set.add(seq); d != 0 {
		b.gaps.Add(d)
	}
	b.delivered.Add(1)
	s.last = now
	s.samples[s.n] = latencySample{now.UnixNano() - sent, sent < b.pubStart.Load()+int64(time.Second)}
	s.n++
	if s.n == len(s.samples) || now.Sub(s.flushed) >= time.Second {
		b.flushLatency(s, now)
	}
}

// flushLatency merges a stream's latency samples into the run's histogram.
func (b *runner) flushLatency(s *subscriber, now time.Time) {
	s.flushed = now
	if s.n == 0 {
		return
	}
	b.latMu.Lock()
	for _, v := range s.samples[:s.n] {
		b.lat.Record(v.ns)
		if v.early {
			b.early.Record(v.ns)
		} else {
			b.later.Record(v.ns)
		}
	}
	b.latMu.Unlock()
	s.n = 0
}

// runPublisher posts until stop is closed: back to back, or paced to its
// share of --rate. Each post waits for its answer, as a chat client does.
func (b *runner) runPublisher(ctx context.Context, stop <-chan struct{}, p *publisher) {
	var interval time.Duration
	if b.o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(b.pubs)) / b.o.Rate)
	}
	start := time.Now()
	body := make([]byte, 0, b.o.Size+64)
	for n := 0; ; n++ {
		if interval > 0 {
			// Post on schedule; a publisher that fell behind catches up
			// back to back rather than lowering the rate.
			if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-stop:
					t.Stop()
					return
				}
			}
		}
		select {
		case <-stop:
			return
		default:
		}
		pr := p.rooms[n%len(p.rooms)]
		pr.seq++
		sent := time.Now()
		var kind string
		if b.o.Target == TargetCentrifugo {
			body = appendPayload(body[:0], b.run, p.id, pr.seq, sent.UnixNano(), b.o.Size)
			kind = b.centrifugoPublish(ctx, pr.base, b.roomIDs[pr.room], body)
		} else {
			body = append(body[:0], `{"text":"`...)
			body = appendPayload(body, b.run, p.id, pr.seq, sent.UnixNano(), b.o.Size)
			body = append(body, `"}`...)
			kind = b.post(ctx, p, pr, body)
		}
		if kind != "" {
			pr.failed = append(pr.failed, pr.seq)
			if ctx.Err() != nil {
				return
			}
			b.errs.add(kind)
			continue
		}
		p.lat.Record(int64(time.Since(sent)))
		b.posts.Add(1)
	}
}

// post sends one message and returns "" when it was answered 201, or the
// kind of error. A 4xx means the scenario cannot run (rate limits on, a
// text over the server's limit), so it ends the run; a 5xx or a transport
// error is counted and the publisher goes on.
func (b *runner) post(ctx context.Context, p *publisher, pr *pubRoom, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, "POST", pr.base+"/v1/rooms/"+b.roomIDs[pr.room]+"/messages", bytes.NewReader(body))
	if err != nil {
		return "post_error"
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.postClient.Do(req)
	if err != nil {
		return "post_" + netErrorKind(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		io.Copy(io.Discard, resp.Body) // so the connection is reused
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		b.fail(b.refused("post", resp.StatusCode, data))
	}
	return "post_" + strconv.Itoa(resp.StatusCode)
}

// expected is the number of deliveries the posts answered 201 call for.
// Call it once the publishers have ended.
func (b *runner) expected() int64 {
	var n int64
	for _, p := range b.pubs {
		for _, pr := range p.rooms {
			n += (pr.seq - int64(len(pr.failed))) * int64(b.roomStreams[pr.room])
		}
	}
	return n
}

// lost counts, over every stream, the messages answered 201 in its room
// that it never received. Call it once every goroutine has ended.
func (b *runner) lost() int64 {
	type source struct {
		pub int
		pr  *pubRoom
	}
	byRoom := make([][]source, b.o.Rooms)
	for _, p := range b.pubs {
		for _, pr := range p.rooms {
			byRoom[pr.room] = append(byRoom[pr.room], source{p.id, pr})
		}
	}
	var lost int64
	for _, s := range b.streams {
		for _, src := range byRoom[s.room] {
			acked := src.pr.seq - int64(len(src.pr.failed))
			var set *seqSet
			if s.seqs != nil {
				set = s.seqs[src.pub]
			}
			if set == nil {
				lost += acked
				continue
			}
			got := set.count
			for _, f := range src.pr.failed {
				if set.has(f) {
					got-- // stored despite the error: not one of the expected
				}
			}
			lost += acked - got
		}
	}
	return lost
}

// startProgress prints a progress line each second to w, until the
// returned function is called; that function waits for the printer to
// stop and may be called more than once.
func (b *runner) startProgress(w io.Writer) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lastPosts, lastDelivered int64
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				elapsed := time.Duration(now.UnixNano() - b.phaseAt.Load()).Seconds()
				posts, delivered := b.posts.Load(), b.delivered.Load()
				switch b.phase.Load() {
				case phaseConnect:
					fmt.Fprintf(w, "%5.1fs connecting: %d/%d streams ready, errors %d\n", elapsed, b.ready.Load(), len(b.streams), b.errs.total.Load())
				case phaseSettle:
					fmt.Fprintf(w, "%5.1fs settling: %d events since connecting (presence, joins), errors %d\n", elapsed, b.events.Load(), b.errs.total.Load())
				case phaseIdle:
					fmt.Fprintf(w, "%5.1fs idle: %d streams, errors %d\n", elapsed, len(b.streams), b.errs.total.Load())
				default:
					b.latMu.Lock()
					p99 := float64(b.lat.Quantile(0.99)) / 1e6
					b.latMu.Unlock()
					label := ""
					if b.phase.Load() == phaseDrain {
						label = " (draining)"
					}
					fmt.Fprintf(w, "%5.1fs deliveries %d/s  posts %d/s  p99 %.3f ms  lost %d  dup %d  errors %d%s\n",
						elapsed, delivered-lastDelivered, posts-lastPosts, p99, b.gaps.Load(), b.dups.Load(), b.errs.total.Load(), label)
				}
				lastPosts, lastDelivered = posts, delivered
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-stopped
	}
}
