package metrics

import "github.com/prometheus/client_golang/prometheus"

// WatchDrops registers egressd_drops_total{group,reason}, returned for the
// caller to count with, and egressd_drop_events_lost_total, read from lost.
// Labels are bounded: group is a configured group or "", reason one of a
// fixed set.
func (m *Metrics) WatchDrops(lost func() float64) (*prometheus.CounterVec, error) {
	drops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_drops_total",
		Help: "Packets the firewall dropped, reported over NFLOG, by source group and reason.",
	}, []string{"group", "reason"})
	if err := m.Registry.Register(drops); err != nil {
		return nil, err
	}
	if err := m.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "egressd_drop_events_lost_total",
		Help: "Drop events lost: socket buffer overruns reported by the kernel (each one or more events) and events turned away by a full queue.",
	}, lost)); err != nil {
		return nil, err
	}
	return drops, nil
}
