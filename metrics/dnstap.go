package metrics

import "github.com/prometheus/client_golang/prometheus"

// DnstapCounters is what the dnstap output counts; *dnstap.Output
// implements it.
type DnstapCounters interface {
	Sent() uint64
	Dropped() uint64
	Lost() uint64
}

// WatchDnstap exports the dnstap output's counters as
// egressd_dnstap_frames_total{result}. Call it once per Metrics, and only
// with dnstap on.
func (m *Metrics) WatchDnstap(c DnstapCounters) error {
	const help = "dnstap messages by result: sent (written and flushed to the output), " +
		"dropped (the queue was full: the output was slow, gone or not yet connected), " +
		"lost (a write or the connection failed)."
	for _, r := range []struct {
		result string
		read   func() uint64
	}{
		{"sent", c.Sent},
		{"dropped", c.Dropped},
		{"lost", c.Lost},
	} {
		f := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "egressd_dnstap_frames_total", Help: help, ConstLabels: prometheus.Labels{"result": r.result},
		}, func() float64 { return float64(r.read()) })
		if err := m.Registry.Register(f); err != nil {
			return err
		}
	}
	return nil
}
