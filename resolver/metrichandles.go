package resolver

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/metrics"
)

// queryLabels are the labels of egressd_queries_total.
type queryLabels struct {
	group, decision, qtype string
}

// metricHandles remembers the per-query series once looked up: finding a
// labelled series hashes every label value, and the combinations seen in
// practice are few (groups x decisions x query types, RCODEs, cached or
// not). The zero value is ready.
type metricHandles struct {
	queries   handleMap[queryLabels, prometheus.Counter]
	responses handleMap[string, prometheus.Counter]  // by RCODE label
	durations handleMap[string, prometheus.Observer] // by cached label
}

func (h *metricHandles) query(m *metrics.Metrics, l queryLabels) prometheus.Counter {
	return h.queries.get(l, func() prometheus.Counter {
		return m.Queries.WithLabelValues(l.group, l.decision, l.qtype)
	})
}

func (h *metricHandles) response(m *metrics.Metrics, rcode string) prometheus.Counter {
	return h.responses.get(rcode, func() prometheus.Counter { return m.Responses.WithLabelValues(rcode) })
}

func (h *metricHandles) duration(m *metrics.Metrics, cached string) prometheus.Observer {
	return h.durations.get(cached, func() prometheus.Observer { return m.RequestDuration.WithLabelValues(cached) })
}

// handleMap is a map read without locks or allocation and copied on the
// rare write, which suits a handful of keys read on every query.
type handleMap[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

func (h *handleMap[K, V]) get(k K, lookup func() V) V {
	if m := h.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := lookup()
	m := map[K]V{k: next}
	if old != nil {
		for ok, ov := range *old {
			m[ok] = ov
		}
	}
	h.m.Store(&m)
	return next
}
