package metrics

import "github.com/prometheus/client_golang/prometheus"

// TCPCounters is what the DNS server's TCP listeners count;
// *resolver.Server implements it.
type TCPCounters interface {
	// TCPConnections is the open connections from clients and outsiders.
	TCPConnections() (clients, outsiders int)
	// TCPRejected is the connections closed over a limit, per pool.
	TCPRejected() (clients, outsiders uint64)
}

// WatchTCP exports the TCP connection pools. current is called at every
// scrape; nil reads as zero. Call it once per Metrics.
func (m *Metrics) WatchTCP(current func() TCPCounters) error {
	read := func(pick func(TCPCounters) float64) func() float64 {
		return func() float64 {
			c := current()
			if c == nil {
				return 0
			}
			return pick(c)
		}
	}
	const (
		open     = "Open DNS-over-TCP connections, by pool: clients (inside server.clients) and outsiders (everyone else, answered REFUSED)."
		rejected = "DNS-over-TCP connections closed at once because their pool, client address or outside prefix was at its limit."
	)
	collectors := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "egressd_tcp_connections", Help: open, ConstLabels: prometheus.Labels{"pool": "clients"}},
			read(func(c TCPCounters) float64 { n, _ := c.TCPConnections(); return float64(n) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "egressd_tcp_connections", Help: open, ConstLabels: prometheus.Labels{"pool": "outsiders"}},
			read(func(c TCPCounters) float64 { _, n := c.TCPConnections(); return float64(n) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "egressd_tcp_rejected_total", Help: rejected, ConstLabels: prometheus.Labels{"pool": "clients"}},
			read(func(c TCPCounters) float64 { n, _ := c.TCPRejected(); return float64(n) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "egressd_tcp_rejected_total", Help: rejected, ConstLabels: prometheus.Labels{"pool": "outsiders"}},
			read(func(c TCPCounters) float64 { _, n := c.TCPRejected(); return float64(n) })),
	}
	for _, c := range collectors {
		if err := m.Registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}
