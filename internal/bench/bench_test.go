package bench

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestHistogramQuantiles(t *testing.T) {
	// Exact percentiles of the data, sorted, by the same rank rule.
	exact := func(sorted []int64, q float64) int64 {
		rank := int(math.Ceil(q * float64(len(sorted))))
		return sorted[max(rank, 1)-1]
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		data []int64
	}{
		{"uniform 1µs..100ms", func() []int64 {
			var d []int64
			for i := int64(1); i <= 100_000; i++ {
				d = append(d, i*1000)
			}
			return d
		}()},
		{"log-normal around 1ms", func() []int64 {
			var d []int64
			for range 200_000 {
				d = append(d, int64(math.Exp(rng.NormFloat64()*1.5)*1e6))
			}
			return d
		}()},
		{"small integers", []int64{0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h histogram
			for _, v := range c.data {
				h.Record(v)
			}
			sorted := slices.Clone(c.data)
			slices.Sort(sorted)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.Quantile(q), exact(sorted, q)
				if diff := math.Abs(float64(got - want)); diff > 0.01*float64(want) {
					t.Errorf("Quantile(%v) = %d; want %d within 1%%", q, got, want)
				}
			}
			if h.Count() != uint64(len(c.data)) || h.Max() != sorted[len(sorted)-1] {
				t.Errorf("Count, Max = %d, %d; want %d, %d", h.Count(), h.Max(), len(c.data), sorted[len(sorted)-1])
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var all, a, b histogram
	for i := int64(0); i < 10_000; i++ {
		v := i * i
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var merged histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&histogram{}) // empty: no change
	if merged != all {
		t.Errorf("Merge(a, b) differs from recording everything in one histogram: count %d, max %d; want %d, %d",
			merged.Count(), merged.Max(), all.Count(), all.Max())
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Bucket indexes are contiguous and each value falls in its bucket.
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := histIndex(v)
		lower, width := histBounds(i)
		if i < 0 || i >= histBuckets || v < lower || v-lower >= width {
			t.Errorf("histIndex(%d) = %d, bucket [%d, +%d); want a bucket holding it", v, i, lower, width)
		}
	}
	for i := 1; i < histBuckets; i++ {
		lo, w := histBounds(i - 1)
		next, _ := histBounds(i)
		if lo+w != next {
			t.Fatalf("histBounds(%d) ends at %d; bucket %d starts at %d", i-1, lo+w, i, next)
		}
	}
}

func TestPayload(t *testing.T) {
	cases := []struct {
		name          string
		pub           int
		seq, sent     int64
		size, wantLen int
	}{
		{"padded", 3, 17, 1_700_000_000_123_456_789, 100, 100},
		{"header longer than size", 0, 1, 1_700_000_000_000_000_000, 10, 36},
		{"one byte of padding", 12, 999, 1_700_000_000_000_000_000, 40, 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := string(appendPayload(nil, "abcd1234", c.pub, c.seq, c.sent, c.size))
			if len(text) != c.wantLen {
				t.Errorf("len(appendPayload(size %d)) = %d; want %d (%q)", c.size, len(text), c.wantLen, text)
			}
			// The subscriber reads it out of the event's JSON data.
			data, _ := json.Marshal(map[string]any{"id": 5, "room": "r1", "user": "u", "text": text, "created_at": 1})
			run, pub, seq, sent, ok := parsePayload(messageText(data))
			if !ok || string(run) != "abcd1234" || pub != c.pub || seq != c.seq || sent != c.sent {
				t.Errorf("parsePayload(%q) = %q, %d, %d, %d, %v; want abcd1234, %d, %d, %d, true",
					text, run, pub, seq, sent, ok, c.pub, c.seq, c.sent)
			}
		})
	}
	for _, bad := range []string{"", "hello", "hb1 ", "hb1 run x 1 2", "hb1 run 1 0 2", "hb1 run 1 2 now",
		"hb1 run -1 2 3", "hb1 run 2147483648 2 3", "hb1 run 1 2 99999999999999999999", "hb1 run 1 2 "} {
		if _, _, _, _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsePayload(%q) ok = true; want false", bad)
		}
	}
}

func TestSeqSet(t *testing.T) {
	var s seqSet
	var gaps int64
	for _, n := range []int64{1, 2, 5, 3, 4, 200} {
		if s.has(n) {
			t.Fatalf("has(%d) before add = true", n)
		}
		gaps += s.add(n)
	}
	if gaps != 194 || s.count != 6 || !s.has(200) || s.has(6) {
		t.Errorf("after 1,2,5,3,4,200: gaps %d, count %d; want 194, 6", gaps, s.count)
	}
}

// Streams spread over one loopback source address per 5,000 by default;
// a server elsewhere is reached from one address only.
func TestSourcesDefault(t *testing.T) {
	tests := []struct {
		url     string
		streams int
		sources int // as given; 0 is the default
		want    int // -1: refused
	}{
		{"http://127.0.0.1:8080", 1000, 0, 1},
		{"http://127.0.0.1:8080", 5000, 0, 1},
		{"http://127.0.0.1:8080", 19800, 0, 4},
		{"http://localhost:8080", 19800, 0, 4},
		{"http://127.0.0.1:8080", 19800, 2, 2},
		{"http://chat.example:8080", 19800, 0, 1},
		{"http://chat.example:8080", 19800, 2, -1},
		{"http://127.0.0.1:8080,http://localhost:8081", 19800, 0, 4},
		{"http://127.0.0.1:8080,http://chat.example:8080", 19800, 0, 1},
		{"http://127.0.0.1:8080,http://chat.example:8080", 19800, 2, -1},
	}
	for _, tt := range tests {
		o := Options{URLs: strings.Split(tt.url, ","), Streams: tt.streams, Rooms: 1, Publishers: 1, Size: 100, Duration: time.Second, Sources: tt.sources}
		err := o.Check()
		switch {
		case tt.want < 0 && err == nil:
			t.Errorf("%s, %d streams, --sources %d: accepted; want refused", tt.url, tt.streams, tt.sources)
		case tt.want >= 0 && err != nil:
			t.Errorf("%s, %d streams, --sources %d: %v", tt.url, tt.streams, tt.sources, err)
		case tt.want >= 0 && o.Sources != tt.want:
			t.Errorf("%s, %d streams, --sources %d: %d sources; want %d", tt.url, tt.streams, tt.sources, o.Sources, tt.want)
		}
	}
}

// With several URLs, every room's streams spread over them, and no
// publisher posts through the URL its room's first stream reads from; with
// one, streams take the source addresses in turn, as they always did.
func TestURLAssignment(t *testing.T) {
	tests := []struct {
		name                                      string
		urls, streams, rooms, publishers, sources int
	}{
		{"one URL", 1, 15000, 3, 2, 3},
		{"one room, two URLs", 2, 1000, 1, 16, 1},
		{"as many rooms as URLs", 2, 50, 2, 2, 1},
		{"100 rooms, three URLs", 3, 5000, 100, 8, 2},
		{"one stream per room", 4, 6, 6, 12, 1},
		{"fewer publishers than rooms", 3, 23, 5, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Streams: tt.streams, Rooms: tt.rooms, Publishers: tt.publishers, Size: 100, Duration: time.Second, Sources: tt.sources}
			index := map[string]int{}
			for k := range tt.urls {
				u := "http://127.0.0.1:" + strconv.Itoa(8080+k)
				o.URLs = append(o.URLs, u)
				index[u] = k
			}
			if err := o.Check(); err != nil {
				t.Fatal(err)
			}
			b := newRunner(o, nil)
			defer b.closeIdle()

			total := make([]int, tt.urls)
			perRoom := make([][]int, tt.rooms)
			perSource := make([][]int, tt.urls)
			for k := range perSource {
				perSource[k] = make([]int, tt.sources)
			}
			for i, s := range b.streams {
				k := index[s.base]
				if perRoom[s.room] == nil {
					perRoom[s.room] = make([]int, tt.urls)
				}
				total[k]++
				perRoom[s.room][k]++
				src := slices.Index(b.dialers[k], s.dialer)
				perSource[k][src]++
				if tt.urls == 1 && src != i%tt.sources {
					t.Errorf("stream %d: source %d; want %d", i, src, i%tt.sources)
				}
			}
			if spread(total) >= tt.urls {
				t.Errorf("streams per URL = %v; want within %d of each other", total, tt.urls-1)
			}
			for r, counts := range perRoom {
				if spread(counts) > 1 {
					t.Errorf("room %d: streams per URL = %v; want within 1 of each other", r, counts)
				}
			}
			for k, counts := range perSource {
				if spread(counts) > 1 {
					t.Errorf("URL %d: streams per source = %v; want within 1 of each other", k, counts)
				}
			}

			// The publishers of a room post through the URLs other than its
			// first stream's, in turn.
			posts := make([][]int, tt.rooms)
			for _, p := range b.pubs {
				for _, pr := range p.rooms {
					k, first := index[pr.base], index[b.streams[pr.room].base]
					if tt.urls > 1 && k == first {
						t.Errorf("publisher %d posts to room %d through URL %d, its first stream's", p.id, pr.room, k)
					}
					if posts[pr.room] == nil {
						posts[pr.room] = make([]int, tt.urls)
					}
					posts[pr.room][k]++
				}
			}
			for r, counts := range posts {
				if counts == nil {
					t.Errorf("room %d has no publisher", r)
					continue
				}
				if tt.urls > 1 {
					first := index[b.streams[r].base]
					counts = slices.Delete(slices.Clone(counts), first, first+1)
				}
				if spread(counts) > 1 {
					t.Errorf("room %d: publishers per URL = %v; want within 1 of each other", r, posts[r])
				}
			}
		})
	}
}

// spread is the difference between the largest and the smallest count.
func spread(counts []int) int {
	return slices.Max(counts) - slices.Min(counts)
}

// Several processes' figures add up; one's read as they always did.
func TestServerReport(t *testing.T) {
	sample := func(cpu time.Duration, rss, hwm int64) procSample {
		return procSample{cpu: cpu, rssKB: rss, hwmKB: hwm}
	}
	before := []procSample{sample(1*time.Second, 10_000, 10_000), sample(2*time.Second, 20_000, 20_000)}
	connected := []procSample{sample(3*time.Second, 30_000, 30_000), sample(3*time.Second, 40_000, 40_000)}
	after := []procSample{sample(7*time.Second, 31_000, 35_000), sample(5*time.Second, 41_000, 45_000)}

	one := serverReport([]int{101}, before[:1], connected[:1], after[:1], 1000, 100)
	want := ServerReport{PID: 101, CPUSeconds: 4, CPUMicrosPerDelivery: 4000, ConnectCPUSeconds: 2,
		RSSBeforeKB: 10_000, RSSAfterConnectKB: 30_000, KBPerStream: 200, PeakRSSKB: 35_000}
	if !reflect.DeepEqual(*one, want) {
		t.Errorf("serverReport(one process) = %+v; want %+v", *one, want)
	}

	two := serverReport([]int{101, 102}, before, connected, after, 1000, 100)
	want = ServerReport{CPUSeconds: 6, CPUMicrosPerDelivery: 6000, ConnectCPUSeconds: 3,
		RSSBeforeKB: 30_000, RSSAfterConnectKB: 70_000, KBPerStream: 400, PeakRSSKB: 80_000,
		Processes: []ProcessReport{
			{PID: 101, CPUSeconds: 4, ConnectCPUSeconds: 2, RSSBeforeKB: 10_000, RSSAfterConnectKB: 30_000, PeakRSSKB: 35_000},
			{PID: 102, CPUSeconds: 2, ConnectCPUSeconds: 1, RSSBeforeKB: 20_000, RSSAfterConnectKB: 40_000, PeakRSSKB: 45_000},
		}}
	if !reflect.DeepEqual(*two, want) {
		t.Errorf("serverReport(two processes) = %+v; want %+v", *two, want)
	}

	if r := serverReport(nil, nil, nil, nil, 1000, 100); r != nil {
		t.Errorf("serverReport(no process) = %+v; want nil", r)
	}
}

func TestCentrifugoPush(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       int
	}{
		{"connect", `{"connect":{"client":"c","version":"6","subs":{"room:x-r0":{}},"ping":25}}`, pushConnect},
		{"publication", `{"channel":"room:x-r0","pub":{"data":{"text":"hi"},"offset":3}}`, pushPublication},
		{"join", `{"channel":"room:x-r0","join":{"info":{"user":"u","client":"c"}}}`, pushChannel},
		{"ping", `{}`, pushOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := centrifugoPush([]byte(tc.data)); got != tc.want {
				t.Errorf("centrifugoPush(%s) = %d; want %d", tc.data, got, tc.want)
			}
		})
	}
	pub := `{"channel":"room:x-r0","pub":{"data":{"text":"` + string(appendPayload(nil, "run1", 2, 7, 42, 60)) + `"}}}`
	if run, p, seq, sent, ok := parsePayload(messageText([]byte(pub))); !ok || string(run) != "run1" || p != 2 || seq != 7 || sent != 42 {
		t.Errorf("parsePayload(messageText(publication)) = %q %d %d %d %v; want run1 2 7 42 true", run, p, seq, sent, ok)
	}
}

// TestCentrifugoToken: a stream's connect token names its user and
// subscribes it to its room's channel, signed with the secret.
func TestCentrifugoToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok, err := centrifugoToken(secret, "u1", centrifugoChannel("p", 3), time.Hour)
	if err != nil {
		t.Fatalf("centrifugoToken = %v", err)
	}
	var claims struct {
		jwt.RegisteredClaims
		Channels []string `json:"channels"`
	}
	if _, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return secret, nil }); err != nil {
		t.Fatalf("parse token: %v", err)
	}
	if claims.Subject != "u1" || len(claims.Channels) != 1 || claims.Channels[0] != "room:p-r3" {
		t.Errorf("claims = sub %q channels %v; want u1 [room:p-r3]", claims.Subject, claims.Channels)
	}
}

// TestCentrifugoPublish posts through a stand-in for the server API: the
// body names the channel and carries the text, the key goes in X-API-Key,
// and an error object in a 200 answer ends the run.
func TestCentrifugoPublish(t *testing.T) {
	var got struct {
		Channel string
		Data    struct{ Text string }
	}
	var key string
	answer := `{"result":{}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key = r.Header.Get("X-API-Key")
		if r.URL.Path != "/api/publish" || json.NewDecoder(r.Body).Decode(&got) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		io.WriteString(w, answer)
	}))
	defer srv.Close()
	var cause error
	o := Options{URLs: []string{srv.URL}, Streams: 1, Rooms: 1, Publishers: 1, Size: 10, Duration: time.Second,
		Target: TargetCentrifugo, APIKey: "k1"}
	if err := o.Check(); err != nil {
		t.Fatalf("Check = %v", err)
	}
	b := newRunner(o, func(err error) { cause = err })
	if kind := b.centrifugoPublish(context.Background(), srv.URL, "room:p-r0", []byte("hello")); kind != "" || cause != nil {
		t.Fatalf("centrifugoPublish = %q, cause %v; want published", kind, cause)
	}
	if key != "k1" || got.Channel != "room:p-r0" || got.Data.Text != "hello" {
		t.Errorf("server got key %q, %+v; want k1, room:p-r0, hello", key, got)
	}
	answer = `{"error":{"code":102,"message":"unknown channel"}}`
	if kind := b.centrifugoPublish(context.Background(), srv.URL, "room:p-r0", []byte("hello")); kind == "" || cause == nil {
		t.Errorf("centrifugoPublish of a refused command = %q, cause %v; want an error that ends the run", kind, cause)
	}
}

func TestCheckTarget(t *testing.T) {
	for _, tc := range []struct {
		name           string
		target, apiKey string
		want           string
	}{
		{"default", "", "", ""},
		{"centrifugo", TargetCentrifugo, "k", ""},
		{"centrifugo without key", TargetCentrifugo, "", "--api-key"},
		{"unknown", "nats", "", "--target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{URLs: []string{"http://127.0.0.1:1"}, Streams: 1, Rooms: 1, Publishers: 1, Size: 1, Duration: time.Second,
				Target: tc.target, APIKey: tc.apiKey}
			err := o.Check()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Check(target %q, key %q) = %v; want %q", tc.target, tc.apiKey, err, tc.want)
			}
		})
	}
}

func TestStreamBuffer(t *testing.T) {
	for _, tc := range []struct{ streams, want int }{
		{0, 32 << 10}, {1, 32 << 10}, {1000, 32 << 10}, {2048, 16 << 10}, {19_800, 2 << 10}, {100_000, 2 << 10},
	} {
		if got := streamBuffer(tc.streams); got != tc.want {
			t.Errorf("streamBuffer(%d) = %d; want %d", tc.streams, got, tc.want)
		}
	}
}
