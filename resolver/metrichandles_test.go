package resolver

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
)

func TestMetricHandlesCountEachSeries(t *testing.T) {
	m := metrics.New()
	var h metricHandles
	records := []recordKey{
		{"office", "allow", dns.TypeA, dns.RcodeSuccess, true},
		{"office", "allow", dns.TypeA, dns.RcodeSuccess, true},
		{"office", "deny", dns.TypeA, dns.RcodeNameError, false},
		{"lab", "allow", dns.TypeAAAA, dns.RcodeSuccess, false},
		{"office", "allow", 65280, dns.RcodeServerFailure, false},
		{"office", "allow", dns.TypeA, dns.RcodeSuccess, true},
	}
	for _, k := range records {
		rh := h.forRecord(m, k)
		rh.query.Inc()
		rh.response.Inc()
		rh.duration.Observe(0.001)
	}
	queries := []struct {
		group, decision, qtype string
		want                   float64
	}{
		{"office", "allow", "A", 3},
		{"office", "deny", "A", 1},
		{"lab", "allow", "AAAA", 1},
		{"office", "allow", "other", 1},
	}
	for _, q := range queries {
		if got := testutil.ToFloat64(m.Queries.WithLabelValues(q.group, q.decision, q.qtype)); got != q.want {
			t.Errorf("queries{%s,%s,%s} = %v, want %v", q.group, q.decision, q.qtype, got, q.want)
		}
	}
	responses := map[string]float64{"NOERROR": 4, "NXDOMAIN": 1, "SERVFAIL": 1}
	for rcode, want := range responses {
		if got := testutil.ToFloat64(m.Responses.WithLabelValues(rcode)); got != want {
			t.Errorf("responses{%s} = %v, want %v", rcode, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.RequestDuration); n != 2 {
		t.Errorf("request duration series = %d, want 2 (cached true and false)", n)
	}
	if h.forRecord(m, records[0]) != h.forRecord(m, records[1]) {
		t.Error("the same labels gave two different handles")
	}
}
