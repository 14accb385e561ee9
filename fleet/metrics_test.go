package fleet

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// The fleet metrics pass promlint, carry the egressd_fleet_ prefix, and
// register once: a second registration on the same registry fails.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 12 {
		t.Errorf("%d metric families, want 12", len(mfs))
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "egressd_fleet_") {
			t.Errorf("%s lacks the egressd_fleet_ prefix", mf.GetName())
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registered twice on one registry")
	}
}
