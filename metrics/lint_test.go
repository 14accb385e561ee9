package metrics

import (
	"reflect"
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// populated returns New(), with the query log, TCP, dnstap and drop counters watched, and one
// child created in every labelled vector, because a vector without
// children is not gathered at all and would escape linting.
func populated(t *testing.T) *Metrics {
	t.Helper()
	m := New()
	if err := m.WatchQueryLog(func() QueryLogCounters { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchTCP(func() TCPCounters { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchDnstap(dnstapCounters{}); err != nil {
		t.Fatal(err)
	}
	drops, err := m.WatchDrops(func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	drops.WithLabelValues("x", "x")
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		get := v.Field(i).MethodByName("GetMetricWithLabelValues")
		if !get.IsValid() {
			continue
		}
		// The label count is not exported by the vector; try each count
		// until the vector accepts one.
		accepted := false
		for n := 0; n <= 8 && !accepted; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			accepted = get.Call(args)[1].IsNil()
		}
		if !accepted {
			t.Fatalf("field %s: no label count accepted", v.Type().Field(i).Name)
		}
	}
	return m
}

func gather(t *testing.T, m *Metrics) []*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// collectorNames lists the metric names each collector field describes.
func collectorNames(t *testing.T, m *Metrics) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			match := descName.FindStringSubmatch(d.String())
			if match == nil {
				t.Fatalf("cannot read the name from %s", d)
			}
			field := v.Type().Field(i).Name
			out[field] = append(out[field], match[1])
		}
	}
	return out
}

func TestEveryCollectorIsRegistered(t *testing.T) {
	m := populated(t)
	var gathered []string
	for _, mf := range gather(t, m) {
		gathered = append(gathered, mf.GetName())
	}
	fields := collectorNames(t, m)
	if len(fields) < 10 {
		t.Fatalf("only %d collector fields found", len(fields))
	}
	for field, names := range fields {
		for _, name := range names {
			if !slices.Contains(gathered, name) {
				t.Errorf("field %s (%s) is not registered on m.Registry", field, name)
			}
		}
	}
}

func TestMetricNamesLint(t *testing.T) {
	mfs := gather(t, populated(t))
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	prefixed := 0
	for _, mf := range mfs {
		if len(mf.GetName()) > 8 && mf.GetName()[:8] == "egressd_" {
			prefixed++
		}
	}
	if prefixed < 15 {
		t.Errorf("only %d egressd_ families were linted; vectors without children are missing", prefixed)
	}
}

type dnstapCounters struct{}

func (dnstapCounters) Sent() uint64    { return 3 }
func (dnstapCounters) Dropped() uint64 { return 2 }
func (dnstapCounters) Lost() uint64    { return 1 }
