package metrics

import "github.com/prometheus/client_golang/prometheus"

// QueryLogCounters is what the query log writer counts; *querylog.Writer
// implements it.
type QueryLogCounters interface {
	Written() uint64
	Dropped() uint64
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
	counters := []struct {
		name, help string
		pick       func(QueryLogCounters) uint64
	}{
		{"egressd_querylog_lines_total", "Query log lines written.", QueryLogCounters.Written},
		{"egressd_querylog_dropped_total", "Query log entries lost because the write queue was full.", QueryLogCounters.Dropped},
		{"egressd_querylog_sampled_out_total", "Allowed queries left out of the query log by sampling.", QueryLogCounters.SampledOut},
		{"egressd_querylog_write_errors_total", "Failed writes to the query log destination.", QueryLogCounters.WriteErrors},
	}
	for _, c := range counters {
		f := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, read(c.pick))
		if err := m.Registry.Register(f); err != nil {
			return err
		}
	}
	return nil
}
