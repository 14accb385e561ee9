package resolver

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/metrics"
)

// transport is how a query came. The zero value is UDP: the UDP reader
// builds its queries without ServeDNS.
type transport uint8

const (
	transportUDP transport = iota
	transportTCP
	transportTLS   // DNS over TLS (RFC 7858)
	transportHTTPS // DNS over HTTPS (RFC 8484)
	numTransports
)

// String is the query log's transport field and the metric's label.
func (t transport) String() string { return metrics.Transports[t] }

// transportOf tells the transport of a query ServeDNS answers on w.
func transportOf(w dns.ResponseWriter, udp bool) transport {
	if e, ok := w.(*encryptedWriter); ok {
		return e.transport
	}
	if udp {
		return transportUDP
	}
	return transportTCP
}

// transportCounters are egressd_queries_by_transport_total's series,
// looked up once.
type transportCounters [numTransports]prometheus.Counter

func newTransportCounters(m *metrics.Metrics) *transportCounters {
	if m == nil || m.QueriesByTransport == nil {
		return nil
	}
	var c transportCounters
	for t := range numTransports {
		c[t] = m.QueriesByTransport.WithLabelValues(t.String())
	}
	return &c
}

func (c *transportCounters) inc(t transport) {
	if c != nil {
		c[t].Inc()
	}
}
