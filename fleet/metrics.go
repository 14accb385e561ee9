package fleet

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the egressd_fleet_* metrics. Labels are bounded: reason is
// one of the Reason constants, result of a fixed set.
type Metrics struct {
	Published    prometheus.Counter
	PublishFails prometheus.Counter
	Applied      prometheus.Counter
	Rejected     *prometheus.CounterVec
	Queued       prometheus.Counter
	Dropped      prometheus.Counter
	QueueLen     prometheus.Gauge
	Confirms     *prometheus.CounterVec
	PublishLag   prometheus.Histogram
	ApplyLag     prometheus.Histogram
	Connected    prometheus.Gauge
	ReplayDone   prometheus.Gauge
}

// lagBuckets span a local publish (well under a millisecond) to a
// reconnect after an outage (seconds).
var lagBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics creates the fleet metrics and registers them on reg (a nil
// reg registers nothing, for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_fleet_published_total",
			Help: "Approvals stored in JetStream (publish acknowledged).",
		}),
		PublishFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_fleet_publish_failures_total",
			Help: "Publish attempts that got no acknowledgement within fleet.publish_timeout (the approval stays queued).",
		}),
		Applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_fleet_applied_total",
			Help: "Approvals of other nodes installed in the local firewall.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_fleet_rejected_total",
			Help: "Messages on the approval subjects not installed, by reason.",
		}, []string{"reason"}),
		Queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_fleet_queued_total",
			Help: "Approvals queued to be published later because NATS did not store them in time.",
		}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "egressd_fleet_dropped_total",
			Help: "Queued approvals never published: the queue (fleet.queue) was full, or they expired while waiting.",
		}),
		QueueLen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_fleet_queue_length",
			Help: "Approvals waiting to be published.",
		}),
		Confirms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_fleet_confirms_total",
			Help: "Approvals waiting for fleet.confirm nodes, by result: ok, or timeout (the answer is SERVFAIL unless firewall.fail_open).",
		}, []string{"result"}),
		PublishLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "egressd_fleet_publish_lag_seconds",
			Help:    "From the local firewall holding an approval to JetStream acknowledging it.",
			Buckets: lagBuckets,
		}),
		ApplyLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "egressd_fleet_apply_lag_seconds",
			Help:    "From JetStream storing an approval to this node's firewall holding it (both on the NATS server's clock).",
			Buckets: lagBuckets,
		}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_fleet_connected",
			Help: "1 while connected to a NATS server, else 0.",
		}),
		ReplayDone: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_fleet_replay_done",
			Help: "1 once the approvals live in JetStream at start are installed (always 1 on a node enforcing no group), else 0.",
		}),
	}
	for _, r := range []string{ReasonMalformed, ReasonVersion, ReasonForeign, ReasonScope, ReasonAddress, ReasonPolicy, ReasonExpired, ReasonTooLong, ReasonApplyFailed} {
		m.Rejected.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "timeout"} {
		m.Confirms.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Published, m.PublishFails, m.Applied, m.Rejected, m.Queued, m.Dropped,
		m.QueueLen, m.Confirms, m.PublishLag, m.ApplyLag, m.Connected, m.ReplayDone} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
