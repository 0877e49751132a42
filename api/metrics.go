package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics exposes request, stream and store figures to Prometheus.
type metrics struct {
	handler  http.Handler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	routes   map[string]bool // the routes' paths: no label takes another value
	// unavailable counts requests answered 503 because the database could
	// not serve them, by reason (unavailableReason).
	unavailable *prometheus.CounterVec
}

// methods are the methods a label may name; a client chooses the method,
// and any other is counted as "other", so that no request makes a series.
var methods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

func newMetrics(reg *prometheus.Registry, st *store.Store, hub *stream.Hub) *metrics {
	m := &metrics{}
	if reg == nil {
		return m
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"method", "route", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "herald_http_request_duration_seconds", Help: "HTTP request latency by route (streams excluded).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"method", "route"})
	m.unavailable = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herald_store_unavailable_total",
		Help: "Requests answered 503 because the database could not serve them, by reason: disk_full, locked (by another process), unavailable (out of reach).",
	}, []string{"reason"})
	for _, r := range []string{"disk_full", "locked", "unavailable"} {
		m.unavailable.WithLabelValues(r) // every reason shows, at 0, before it happens
	}
	stat := func(f func(stream.Stats) float64) func() float64 {
		return func() float64 { return f(hub.Stats()) }
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.unavailable,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_streams_open", Help: "Open SSE streams on this instance."},
			stat(func(s stream.Stats) float64 { return float64(s.Streams) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_log_position", Help: "Newest log position dispatched."},
			stat(func(s stream.Stats) float64 { return float64(s.Position) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_events_delivered_total", Help: "Event frames queued to streams."},
			stat(func(s stream.Stats) float64 { return float64(s.Delivered) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_streams_dropped_total", Help: "Streams dropped for falling behind: a full queue, or a write that timed out."},
			stat(func(s stream.Stats) float64 { return float64(s.Dropped) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_streams_refused_total", Help: "Streams refused by a cap or shutdown."},
			stat(func(s stream.Stats) float64 { return float64(s.Rejected) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_stream_resyncs_total", Help: "Streams told to resync: their Last-Event-ID could not be honoured, or their replay passed --max-replay."},
			stat(func(s stream.Stats) float64 { return float64(s.Resyncs) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_replayed_events_total", Help: "Events sent by the replays of streams that resumed."},
			stat(func(s stream.Stats) float64 { return float64(s.Replayed) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_store_writes_total", Help: "Write requests committed."},
			func() float64 { return float64(st.Stats().Writes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_store_commits_total", Help: "Transactions committed (group commit)."},
			func() float64 { return float64(st.Stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_store_retries_total", Help: "Transactions run again after a conflict with another (PostgreSQL: deadlock, serialization failure, unique key raced for)."},
			func() float64 { return float64(st.Stats().Retries) }),
	)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) observe(method, route string, status int, latency time.Duration) {
	if m.requests == nil {
		return
	}
	if !methods[method] {
		method = "other"
	}
	if !m.routes[route] {
		route = "unmatched"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	if route != "/v1/stream" {
		m.latency.WithLabelValues(method, route).Observe(latency.Seconds())
	}
}

// storeUnavailable counts a request answered 503 for reason.
func (m *metrics) storeUnavailable(reason string) {
	if m.unavailable != nil {
		m.unavailable.WithLabelValues(reason).Inc()
	}
}
