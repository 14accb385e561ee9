// Package metrics defines every Prometheus metric egressd exports, on a
// registry it owns (never the global default one).
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds all collectors. Label values are bounded: group, decision,
// qtype, rcode, category, set, result, server, and a list source as
// configured; never a query name.
type Metrics struct {
	Registry *prometheus.Registry
	// Why, when set before Serve, answers /why (egressd why).
	Why http.Handler
	// Profiles, when set before Serve, serves the Go runtime's profiles
	// and execution traces under /debug/pprof/ ([metrics] profiles).
	Profiles bool

	Queries          *prometheus.CounterVec   // group, decision, qtype
	Responses        *prometheus.CounterVec   // rcode
	RequestDuration  *prometheus.HistogramVec // cached ("true"|"false")
	CacheHits        prometheus.Counter
	CacheMisses      prometheus.Counter
	CacheEntries     prometheus.Gauge
	CacheBytes       prometheus.Gauge
	UpstreamRequests *prometheus.CounterVec   // server, result
	UpstreamDuration *prometheus.HistogramVec // server
	FirewallUpdates  *prometheus.CounterVec   // result
	FirewallElements *prometheus.GaugeVec     // set
	// FirewallClientElementsMax is the most live elements one client's
	// answers added (to compare with max_elements_per_client).
	FirewallClientElementsMax prometheus.Gauge
	FirewallDuration          prometheus.Histogram
	FirewallFeatures          *prometheus.GaugeVec   // feature
	ListDomains               *prometheus.GaugeVec   // category
	ListMappedBytes           *prometheus.GaugeVec   // category
	ListRefreshes             *prometheus.CounterVec // category, result
	ListLastSuccess           *prometheus.GaugeVec   // category, source
	ConfigReloads             *prometheus.CounterVec // result
	RateLimited               prometheus.Counter
	InFlightDropped           *prometheus.CounterVec // limit ("client"|"total")
	StaleAnswers              *prometheus.CounterVec // result ("redecided"|"servfail")
	// QueriesByTransport counts queries by how they came: udp, tcp, tls
	// (DNS over TLS) or https (DNS over HTTPS).
	QueriesByTransport *prometheus.CounterVec // transport
}

// Transports are the values of egressd_queries_by_transport_total's label.
var Transports = []string{"udp", "tcp", "tls", "https"}

// New builds the collectors and registers them, with the Go runtime and
// process collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.Queries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_queries_total", Help: "DNS queries by client group, policy decision and query type.",
	}, []string{"group", "decision", "qtype"})
	m.Responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_responses_total", Help: "DNS responses sent, by response code.",
	}, []string{"rcode"})
	m.RequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "egressd_request_duration_seconds", Help: "Time from receiving a query to sending its answer.",
		Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"cached"})
	m.CacheHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "egressd_cache_hits_total", Help: "Answers served from the cache.",
	})
	m.CacheMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "egressd_cache_misses_total", Help: "Queries not found in the cache.",
	})
	m.CacheEntries = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "egressd_cache_entries", Help: "Entries currently in the answer cache.",
	})
	m.CacheBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "egressd_cache_bytes", Help: "Memory accounted to the answer cache's entries, bounded by cache.max_bytes.",
	})
	m.UpstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_upstream_requests_total", Help: "Queries sent upstream, by server and result (ok, error, timeout, servfail, mismatch).",
	}, []string{"server", "result"})
	m.UpstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "egressd_upstream_duration_seconds", Help: "Upstream round-trip time by server.",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}, []string{"server"})
	m.FirewallUpdates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_firewall_updates_total", Help: "Firewall set updates (netlink batches), by result.",
	}, []string{"result"})
	m.FirewallElements = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressd_firewall_elements", Help: "Elements egressd believes are live in each firewall set.",
	}, []string{"set"})
	m.FirewallClientElementsMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "egressd_firewall_client_elements_max",
		Help: "The most live firewall set elements one client's answers added (an IPv4 address, an IPv6 /64); past firewall.max_elements_per_client its new destinations are refused.",
	})
	m.FirewallDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "egressd_firewall_update_duration_seconds", Help: "Time to apply one firewall batch.",
		Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1},
	})
	m.FirewallFeatures = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressd_firewall_features",
		Help: "Optional kernel features the installed firewall table uses (1) or does without (0); ct_label: destinations are also matched as addressed before DNAT.",
	}, []string{"feature"})
	m.ListDomains = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressd_list_domains", Help: "Domains loaded per category.",
	}, []string{"category"})
	m.ListMappedBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressd_list_mapped_bytes",
		Help: "Bytes of a category's current lookup tables mapped outside the Go heap (Linux): not part of the Go heap, so not bounded by memory_limit.",
	}, []string{"category"})
	m.ListRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_list_refresh_total", Help: "Category list refreshes by result (ok, unchanged, error, empty).",
	}, []string{"category", "result"})
	m.ListLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "egressd_list_last_success_timestamp_seconds",
		Help: "Unix time a list source was last fetched and parsed, or confirmed unchanged, into its category's current lists.",
	}, []string{"category", "source"})
	m.ConfigReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_config_reloads_total", Help: "Configuration reloads by result.",
	}, []string{"result"})
	m.RateLimited = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "egressd_ratelimited_total", Help: "Queries dropped by per-client rate limiting.",
	})
	m.InFlightDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_inflight_dropped_total",
		Help: "Queries that needed an upstream or the firewall refused because their client's share (limit=client) or all clients' limit (limit=total) of queries in flight was taken.",
	}, []string{"limit"})
	for _, limit := range []string{"client", "total"} {
		m.InFlightDropped.WithLabelValues(limit) // exported as 0 before the first drop
	}
	m.Registry.MustRegister(m.InFlightDropped)
	m.StaleAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_stale_answers_total",
		Help: "Answers decided under a policy a reload replaced before their addresses reached the firewall, which the new policy denies: decided again (result=redecided), or SERVFAIL when the policy changed once more meanwhile (result=servfail).",
	}, []string{"result"})
	for _, result := range []string{"redecided", "servfail"} {
		m.StaleAnswers.WithLabelValues(result) // exported as 0 before the first
	}
	m.Registry.MustRegister(m.StaleAnswers)
	m.QueriesByTransport = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_queries_by_transport_total",
		Help: "DNS queries by the transport they came over: udp, tcp, tls (DNS over TLS), https (DNS over HTTPS).",
	}, []string{"transport"})
	for _, t := range Transports {
		m.QueriesByTransport.WithLabelValues(t) // exported as 0 before the first query
	}
	m.Registry.MustRegister(m.QueriesByTransport)
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Queries, m.Responses, m.RequestDuration, m.CacheHits, m.CacheMisses, m.CacheEntries, m.CacheBytes,
		m.UpstreamRequests, m.UpstreamDuration, m.FirewallUpdates, m.FirewallElements, m.FirewallClientElementsMax,
		m.FirewallDuration, m.FirewallFeatures, m.ListDomains, m.ListMappedBytes, m.ListRefreshes, m.ListLastSuccess, m.ConfigReloads, m.RateLimited,
	)
	return m
}
