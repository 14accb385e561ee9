package resolver

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/metrics"
)

// recordKey is what decides the series a query is counted in.
type recordKey struct {
	group, decision string
	qtype           uint16
	rcode           int
	cached          bool
}

// recordHandles are the series one query is counted in.
type recordHandles struct {
	query    prometheus.Counter  // egressd_queries_total
	response prometheus.Counter  // egressd_responses_total
	duration prometheus.Observer // egressd_request_duration_seconds
}

// metricHandles remembers the per-query series once looked up: finding a
// labelled series hashes every label value, and the combinations seen in
// practice are few (groups x decisions x query types x RCODEs x cached or
// not). One map lookup finds all three. The zero value is ready.
type metricHandles struct {
	records handleMap[recordKey, recordHandles]
}

func (h *metricHandles) forRecord(m *metrics.Metrics, k recordKey) recordHandles {
	return h.records.get(k, func() recordHandles {
		return recordHandles{
			query:    m.Queries.WithLabelValues(k.group, k.decision, qtypeLabel(k.qtype)),
			response: m.Responses.WithLabelValues(rcodeLabel(k.rcode)),
			duration: m.RequestDuration.WithLabelValues(cachedLabel(k.cached)),
		}
	})
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
