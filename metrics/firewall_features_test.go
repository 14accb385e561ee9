package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// egressd_firewall_features is named in the README and in alerts on a
// degraded firewall, so its name, type and label are part of the contract.
func TestFirewallFeaturesContract(t *testing.T) {
	m := New()
	m.FirewallFeatures.WithLabelValues("ct_label").Set(0)
	for _, mf := range gather(t, m) {
		if mf.GetName() != "egressd_firewall_features" {
			continue
		}
		if mf.GetType() != dto.MetricType_GAUGE {
			t.Fatalf("type %v, want gauge", mf.GetType())
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%d series, want 1", len(mf.GetMetric()))
		}
		labels := mf.GetMetric()[0].GetLabel()
		if len(labels) != 1 || labels[0].GetName() != "feature" || labels[0].GetValue() != "ct_label" {
			t.Errorf("labels %v, want feature=ct_label", labels)
		}
		return
	}
	t.Fatal("egressd_firewall_features is not exported")
}
