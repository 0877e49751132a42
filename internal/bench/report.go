package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// histogram counts non-negative int64 values (nanoseconds in `herald bench`)
// in log-linear buckets, like an HDR histogram with two significant digits:
// values below 128 have a bucket each; above that every power of two is cut
// into 64 equal buckets. A bucket is then at most 1/64 of its values wide,
// and reporting its midpoint errs by at most 1/128 (0.8%), with a fixed
// 29 KiB of counters whatever the range. The zero value is ready to use; it
// is not safe for concurrent use, so each goroutine records into its own
// (or under its own lock) and Merge combines them.
type histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	min, max int64
	sum      float64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	// The largest int64 has bits.Len64 = 63, so its index is
	// (63-histSubBits-1)*histSub + 2*histSub-1: one less than this.
	histBuckets = (64 - histSubBits) * histSub
)

// histIndex maps v to its bucket. For v < 2*histSub the index is v itself;
// above, e is the number of low bits dropped so that v>>e keeps 7
// significant bits, and index = e*histSub + v>>e continues without a hole.
func histIndex(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1)
	return e*histSub + int(v>>e)
}

// histBounds returns the smallest value of bucket i and the bucket's width.
func histBounds(i int) (lower, width int64) {
	if i < 2*histSub {
		return int64(i), 1
	}
	e := i/histSub - 1
	m := int64(i - e*histSub)
	return m << e, 1 << e
}

// Record counts one value; negative values count as 0 (a clock step).
func (h *histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's counts to h.
func (h *histogram) Merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *histogram) Count() uint64 { return h.n }

// Max is the largest recorded value, exactly.
func (h *histogram) Max() int64 { return h.max }

// Quantile returns the value below which a fraction q of the values fall,
// within 1%: the midpoint of the bucket holding the value of rank ceil(q*n),
// clamped to the exact min and max. It returns 0 when h is empty.
func (h *histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lower, width := histBounds(i)
			v := lower + width/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Latency is a histogram of durations as the report shows it, in
// milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// summarize reports h (nanoseconds) in milliseconds.
func summarize(h *histogram) Latency {
	ms := func(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }
	s := Latency{Count: h.n}
	if h.n == 0 {
		return s
	}
	s.Mean = math.Round(h.sum/float64(h.n)/1e3) / 1e3
	s.P50, s.P90, s.P99 = ms(h.Quantile(0.50)), ms(h.Quantile(0.90)), ms(h.Quantile(0.99))
	s.P999, s.Max = ms(h.Quantile(0.999)), ms(h.max)
	return s
}

// Scenario echoes the parameters of a run in its report, so that saved
// reports can be compared.
type Scenario struct {
	Target     string  `json:"target"` // herald or centrifugo
	URL        string  `json:"url"`    // Options.URLs, comma-separated
	Streams    int     `json:"streams"`
	Rooms      int     `json:"rooms"`
	Publishers int     `json:"publishers"`
	Rate       float64 `json:"rate"` // total posts/s; 0 = flat out
	Size       int     `json:"size"`
	Duration   string  `json:"duration"`
	Idle       bool    `json:"idle"`
	Sources    int     `json:"sources"`
	Prefix     string  `json:"prefix"`
}

// Report is the final result of a run; `herald bench --json` writes it as
// is.
type Report struct {
	Scenario         Scenario         `json:"scenario"`
	ConnectSeconds   float64          `json:"connect_seconds"` // until every stream had its ready event
	SettleSeconds    float64          `json:"settle_seconds"`  // then until the streams were quiet for 0.5s
	ConnectEvents    int64            `json:"connect_events"`  // events other than messages received until then (presence, joins)
	Seconds          float64          `json:"seconds"`         // measured: first post to last delivery (or the idle hold)
	Posts            int64            `json:"posts"`           // answered 201
	PostsPerSec      float64          `json:"posts_per_sec"`   // over the posting time, --duration
	Deliveries       int64            `json:"deliveries"`      // distinct message:created events received
	DeliveriesPerSec float64          `json:"deliveries_per_sec"`
	Expected         int64            `json:"expected_deliveries"`
	Latency          Latency          `json:"latency_ms"`              // post sent → event received
	LatencyEarly     Latency          `json:"latency_first_second_ms"` // of posts sent in the first second
	LatencyLater     Latency          `json:"latency_steady_ms"`       // of the posts sent after it
	PostLatency      Latency          `json:"post_latency_ms"`         // post sent → 201 received
	Lost             int64            `json:"lost"`
	Duplicated       int64            `json:"duplicated"`
	Errors           map[string]int64 `json:"errors"`
	ClientCPU        float64          `json:"client_cpu_seconds"` // this load generator's CPU during the measured phase
	Server           *ServerReport    `json:"server,omitempty"`
}

// ServerReport is what /proc tells about the server under test
// (Options.PIDs). With several processes, each figure is the sum over
// them, and Processes gives each one's.
type ServerReport struct {
	PID                  int             `json:"pid,omitempty"` // the process, when there is one
	CPUSeconds           float64         `json:"cpu_seconds"`   // user+system during the measured phase
	CPUMicrosPerDelivery float64         `json:"cpu_us_per_delivery,omitempty"`
	ConnectCPUSeconds    float64         `json:"connect_cpu_seconds"` // user+system while the streams connected and settled
	RSSBeforeKB          int64           `json:"rss_before_kb"`
	RSSAfterConnectKB    int64           `json:"rss_after_connect_kb"` // once the streams settled
	KBPerStream          float64         `json:"kb_per_stream"`        // RSS growth while connecting / streams
	PeakRSSKB            int64           `json:"peak_rss_kb"`          // VmHWM: the process's peak, since it started
	Processes            []ProcessReport `json:"processes,omitempty"`  // each of several, in the order of Options.PIDs
}

// ProcessReport is one of several server processes' share of a
// ServerReport.
type ProcessReport struct {
	PID               int     `json:"pid"`
	CPUSeconds        float64 `json:"cpu_seconds"`
	ConnectCPUSeconds float64 `json:"connect_cpu_seconds"`
	RSSBeforeKB       int64   `json:"rss_before_kb"`
	RSSAfterConnectKB int64   `json:"rss_after_connect_kb"`
	PeakRSSKB         int64   `json:"peak_rss_kb"`
}

// serverReport sums the readings of the processes pids taken before the
// streams connected, once they had settled, and after the measured phase,
// one per process in each. It returns nil when there are no processes.
func serverReport(pids []int, before, connected, after []procSample, deliveries int64, streams int) *ServerReport {
	if len(pids) == 0 {
		return nil
	}
	srv := &ServerReport{}
	if len(pids) == 1 {
		srv.PID = pids[0]
	}
	var cpu, connectCPU time.Duration
	for i, pid := range pids {
		cpu += after[i].cpu - connected[i].cpu
		connectCPU += connected[i].cpu - before[i].cpu
		srv.RSSBeforeKB += before[i].rssKB
		srv.RSSAfterConnectKB += connected[i].rssKB
		srv.PeakRSSKB += after[i].hwmKB
		if len(pids) > 1 {
			srv.Processes = append(srv.Processes, ProcessReport{
				PID:               pid,
				CPUSeconds:        (after[i].cpu - connected[i].cpu).Seconds(),
				ConnectCPUSeconds: (connected[i].cpu - before[i].cpu).Seconds(),
				RSSBeforeKB:       before[i].rssKB,
				RSSAfterConnectKB: connected[i].rssKB,
				PeakRSSKB:         after[i].hwmKB,
			})
		}
	}
	srv.CPUSeconds = cpu.Seconds()
	if deliveries > 0 {
		srv.CPUMicrosPerDelivery = float64(cpu) / float64(time.Microsecond) / float64(deliveries)
	}
	srv.ConnectCPUSeconds = connectCPU.Seconds()
	srv.KBPerStream = float64(srv.RSSAfterConnectKB-srv.RSSBeforeKB) / float64(streams)
	return srv
}

// procSample is one reading of a process's counters.
type procSample struct {
	cpu   time.Duration // utime + stime
	rssKB int64         // VmRSS
	hwmKB int64         // VmHWM, the peak RSS
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times. It is 100 on
// every Linux architecture Go supports; reading it needs sysconf (cgo).
const clockTicks = 100

// readProc reads pid's CPU time and memory from /proc.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("server process: %w", err)
	}
	// The command name, in parentheses, may hold spaces: count fields after
	// its closing parenthesis. There, utime and stime are the 12th and 13th
	// (fields 14 and 15 of the whole line).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks

	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("server process: %w", err)
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), ":")
		kb := func() int64 {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
			return n
		}
		switch key {
		case "VmRSS":
			s.rssKB = kb()
		case "VmHWM":
			s.hwmKB = kb()
		}
	}
	return s, sc.Err()
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	sc := r.Scenario
	load := "idle (no posts)"
	if !sc.Idle {
		rate := "flat out"
		if sc.Rate > 0 {
			rate = fmt.Sprintf("%g posts/s in total", sc.Rate)
		}
		load = fmt.Sprintf("%d publisher(s) %s, %d-byte text", sc.Publishers, rate, sc.Size)
	}
	fmt.Fprintf(w, "herald bench (%s) %s: %d streams over %d room(s), %s, %s\n", sc.Target, sc.URL, sc.Streams, sc.Rooms, load, sc.Duration)
	fmt.Fprintf(w, "  connect      %d streams ready in %.2fs (%d source address(es)); settled %.2fs later, after %d other events\n",
		sc.Streams, r.ConnectSeconds, sc.Sources, r.SettleSeconds, r.ConnectEvents)
	if !sc.Idle {
		fmt.Fprintf(w, "  posts        %d: %.0f/s\n", r.Posts, r.PostsPerSec)
		fmt.Fprintf(w, "  deliveries   %d of %d expected, in %.2fs to the last: %.0f/s\n", r.Deliveries, r.Expected, r.Seconds, r.DeliveriesPerSec)
		l := r.Latency
		fmt.Fprintf(w, "  latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (end to end, %d samples)\n",
			l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
		e, s := r.LatencyEarly, r.LatencyLater
		fmt.Fprintf(w, "  over time    first second p50 %.3f p99 %.3f (%d samples); after it p50 %.3f p99 %.3f (%d samples)\n",
			e.P50, e.P99, e.Count, s.P50, s.P99, s.Count)
		l = r.PostLatency
		fmt.Fprintf(w, "  post rtt ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
		fmt.Fprintf(w, "  lost %d  duplicated %d\n", r.Lost, r.Duplicated)
	}
	fmt.Fprintf(w, "  errors       %s\n", formatErrors(r.Errors))
	fmt.Fprintf(w, "  bench cpu    %.2fs (this load generator, measured phase)\n", r.ClientCPU)
	if s := r.Server; s != nil {
		if len(s.Processes) == 0 {
			fmt.Fprintf(w, "  server pid %d: cpu %.2fs", s.PID, s.CPUSeconds)
		} else {
			pids := make([]string, len(s.Processes))
			for i, p := range s.Processes {
				pids[i] = strconv.Itoa(p.PID)
			}
			fmt.Fprintf(w, "  server pids %s, summed: cpu %.2fs", strings.Join(pids, "+"), s.CPUSeconds)
		}
		if s.CPUMicrosPerDelivery > 0 {
			fmt.Fprintf(w, " (%.2f µs/delivery)", s.CPUMicrosPerDelivery)
		}
		fmt.Fprintf(w, ", connect cpu %.2fs\n", s.ConnectCPUSeconds)
		fmt.Fprintf(w, "  server rss   %.1f MB before, %.1f MB after connecting (%.1f KB/stream), peak %.1f MB\n",
			float64(s.RSSBeforeKB)/1024, float64(s.RSSAfterConnectKB)/1024, s.KBPerStream, float64(s.PeakRSSKB)/1024)
		for _, p := range s.Processes {
			fmt.Fprintf(w, "    pid %d: cpu %.2fs, connect cpu %.2fs, rss %.1f MB before, %.1f MB after connecting, peak %.1f MB\n",
				p.PID, p.CPUSeconds, p.ConnectCPUSeconds, float64(p.RSSBeforeKB)/1024, float64(p.RSSAfterConnectKB)/1024, float64(p.PeakRSSKB)/1024)
		}
	}
}

// WriteJSON saves the report to path as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// formatErrors lists error counts by kind, most frequent first.
func formatErrors(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if m[kinds[i]] != m[kinds[j]] {
			return m[kinds[i]] > m[kinds[j]]
		}
		return kinds[i] < kinds[j]
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// The message text of a bench post: "hb1 RUN PUBLISHER SEQ SENT_UNIX_NANO"
// and padding to the size. It is plain ASCII, which JSON leaves as is, so a
// subscriber finds it in the event's data without decoding the JSON.
const payloadMagic = "hb1 "

// maxSeq bounds the sequence numbers a subscriber tracks, so a bad payload
// cannot make it allocate without limit.
const maxSeq = 1 << 32

// appendPayload appends the text of post seq of publisher pub, sent at
// sent (Unix ns), padded with 'x' to size bytes; the text is never
// shorter than its header.
func appendPayload(b []byte, run string, pub int, seq, sent int64, size int) []byte {
	start := len(b)
	b = append(b, payloadMagic...)
	b = append(b, run...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, sent, 10)
	if len(b)-start < size {
		b = append(b, ' ')
	}
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

// parsePayload reads a text written by appendPayload.
func parsePayload(text []byte) (run []byte, pub int, seq, sent int64, ok bool) {
	rest, found := bytes.CutPrefix(text, []byte(payloadMagic))
	if !found {
		return nil, 0, 0, 0, false
	}
	var p, sq []byte
	run, rest, _ = bytes.Cut(rest, []byte(" "))
	p, rest, _ = bytes.Cut(rest, []byte(" "))
	sq, rest, _ = bytes.Cut(rest, []byte(" "))
	st, _, _ := bytes.Cut(rest, []byte(" ")) // the padding follows a space
	pub64, ok1 := parseDecimal(p, 31)
	seq, ok2 := parseDecimal(sq, 63)
	sent, ok3 := parseDecimal(st, 63)
	if len(run) == 0 || !ok1 || !ok2 || !ok3 || seq < 1 {
		return nil, 0, 0, 0, false
	}
	return run, int(pub64), seq, sent, true
}

// parseDecimal reads a non-negative decimal number below 1<<bits, without
// the string strconv would need.
func parseDecimal(b []byte, bits uint) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n >= 1<<bits {
		return 0, false
	}
	return int64(n), true
}

// messageText finds the text field in a message:created event's data. It
// stops at the first quote, so it returns escaped texts cut short; bench
// texts have no characters JSON escapes.
func messageText(data []byte) []byte {
	const key = `"text":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return nil
	}
	data = data[i+len(key):]
	if j := bytes.IndexByte(data, '"'); j >= 0 {
		return data[:j]
	}
	return nil
}

// seqSet is the set of sequence numbers (from 1) that one stream received
// from one publisher, as a bitmap: one bit per post.
type seqSet struct {
	words []uint64
	count int64 // numbers in the set
	high  int64 // the highest number in the set
}

func (s *seqSet) has(n int64) bool {
	i := n >> 6
	return i < int64(len(s.words)) && s.words[i]&(1<<(n&63)) != 0
}

// add puts n, which is not in s, into s and returns the change in the
// count of missing numbers below the highest: a jump ahead opens a gap, a
// late arrival fills one.
func (s *seqSet) add(n int64) (gapDelta int64) {
	i := n >> 6
	for i >= int64(len(s.words)) {
		s.words = append(s.words, 0)
	}
	s.words[i] |= 1 << (n & 63)
	s.count++
	if n > s.high {
		gapDelta = n - s.high - 1
		s.high = n
		return gapDelta
	}
	return -1
}
