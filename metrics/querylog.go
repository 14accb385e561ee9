package metrics

import "github.com/prometheus/client_golang/prometheus"

// QueryLogCounters is what the query log writer counts; *querylog.Writer
// implements it.
type QueryLogCounters interface {
	Written() uint64
	Dropped() uint64
	DroppedOverSize() uint64
	Suppressed() uint64
	SampledOut() uint64
	WriteErrors() uint64
}

// WatchQueryLog exports the query log writer's own counters. current is
// called at every scrape, so a writer replaced on reload is followed; the
// counters then restart from zero, which Prometheus treats as a reset.
// Call it once per Metrics.
func (m *Metrics) WatchQueryLog(current func() QueryLogCounters) error {
	read := func(pick func(QueryLogCounters) uint64) func() float64 {
		return func() float64 {
			c := current()
			if c == nil {
				return 0
			}
			return float64(pick(c))
		}
	}
	const dropped = "Query log lines not written, by reason: queue_full (the writer fell behind or was closed), " +
		"max_size (the file was full and could not rotate), " +
		"denied_rate (lines of one client's denied queries over log.denied_per_client_rate)."
	counters := []struct {
		name, help, reason string
		pick               func(QueryLogCounters) uint64
	}{
		{"egressd_querylog_lines_total", "Query log lines written.", "", QueryLogCounters.Written},
		{"egressd_querylog_dropped_total", dropped, "queue_full", QueryLogCounters.Dropped},
		{"egressd_querylog_dropped_total", dropped, "max_size", QueryLogCounters.DroppedOverSize},
		{"egressd_querylog_dropped_total", dropped, "denied_rate", QueryLogCounters.Suppressed},
		{"egressd_querylog_sampled_out_total", "Allowed queries left out of the query log by sampling.", "", QueryLogCounters.SampledOut},
		{"egressd_querylog_write_errors_total", "Failed writes to the query log destination.", "", QueryLogCounters.WriteErrors},
	}
	for _, c := range counters {
		opts := prometheus.CounterOpts{Name: c.name, Help: c.help}
		if c.reason != "" {
			opts.ConstLabels = prometheus.Labels{"reason": c.reason}
		}
		f := prometheus.NewCounterFunc(opts, read(c.pick))
		if err := m.Registry.Register(f); err != nil {
			return err
		}
	}
	return nil
}
