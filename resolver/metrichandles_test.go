package resolver

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
)

func TestMetricHandlesCountEachSeries(t *testing.T) {
	m := metrics.New()
	var h metricHandles
	queries := []queryLabels{
		{"office", "allow", "A"},
		{"office", "allow", "A"},
		{"office", "deny", "A"},
		{"lab", "allow", "AAAA"},
		{"office", "allow", "A"},
	}
	want := map[queryLabels]float64{}
	for _, l := range queries {
		h.query(m, l).Inc()
		h.response(m, "NOERROR").Inc()
		want[l]++
	}
	for l, n := range want {
		if got := testutil.ToFloat64(m.Queries.WithLabelValues(l.group, l.decision, l.qtype)); got != n {
			t.Errorf("queries %v = %v, want %v", l, got, n)
		}
	}
	if got := testutil.ToFloat64(m.Responses.WithLabelValues("NOERROR")); got != float64(len(queries)) {
		t.Errorf("responses = %v, want %d", got, len(queries))
	}
	if h.query(m, queries[0]) != h.query(m, queries[1]) {
		t.Error("the same labels gave two different handles")
	}
}
