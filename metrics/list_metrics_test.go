package metrics

import (
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// The list metrics are named in the README and used by alert rules, so
// their names, types and labels are part of the contract.
func TestListMetricsContract(t *testing.T) {
	want := []struct {
		name   string
		typ    dto.MetricType
		labels []string
	}{
		{"egressd_list_domains", dto.MetricType_GAUGE, []string{"category"}},
		{"egressd_list_refresh_total", dto.MetricType_COUNTER, []string{"category", "result"}},
		{"egressd_list_last_success_timestamp_seconds", dto.MetricType_GAUGE, []string{"category", "source"}},
	}
	families := map[string]*dto.MetricFamily{}
	for _, mf := range gather(t, populated(t)) {
		families[mf.GetName()] = mf
	}
	for _, w := range want {
		mf, ok := families[w.name]
		if !ok {
			t.Errorf("%s is not exported", w.name)
			continue
		}
		if mf.GetType() != w.typ {
			t.Errorf("%s is a %v, want %v", w.name, mf.GetType(), w.typ)
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, w.labels) {
				t.Errorf("%s has labels %v, want %v", w.name, got, w.labels)
			}
		}
	}
}
