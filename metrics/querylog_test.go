package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/egressd/egressd/querylog"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeLog struct{ written, dropped, overSize, suppressed, sampled, errs uint64 }

func (f *fakeLog) Written() uint64         { return f.written }
func (f *fakeLog) Dropped() uint64         { return f.dropped }
func (f *fakeLog) DroppedOverSize() uint64 { return f.overSize }
func (f *fakeLog) Suppressed() uint64      { return f.suppressed }
func (f *fakeLog) SampledOut() uint64      { return f.sampled }
func (f *fakeLog) WriteErrors() uint64     { return f.errs }

func TestWatchQueryLog(t *testing.T) {
	m := New()
	var current QueryLogCounters
	if err := m.WatchQueryLog(func() QueryLogCounters { return current }); err != nil {
		t.Fatal(err)
	}
	families := []struct {
		name, help string
		reasons    []string // label values of reason, in exposition order
	}{
		{"egressd_querylog_lines_total", "Query log lines written.", nil},
		{"egressd_querylog_dropped_total", "Query log lines not written, by reason: queue_full (the writer fell behind or was closed), max_size (the file was full and could not rotate), denied_rate (lines of one client's denied queries over log.denied_per_client_rate).",
			[]string{"denied_rate", "max_size", "queue_full"}},
		{"egressd_querylog_sampled_out_total", "Allowed queries left out of the query log by sampling.", nil},
		{"egressd_querylog_write_errors_total", "Failed writes to the query log destination.", nil},
	}
	var names []string
	for _, f := range families {
		names = append(names, f.name)
	}
	// values: lines, dropped by denied_rate, max_size, queue_full, sampled out, write errors.
	exposition := func(values ...uint64) string {
		var b strings.Builder
		for _, f := range families {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", f.name, f.help, f.name)
			if f.reasons == nil {
				fmt.Fprintf(&b, "%s %d\n", f.name, values[0])
				values = values[1:]
				continue
			}
			for _, r := range f.reasons {
				fmt.Fprintf(&b, "%s{reason=%q} %d\n", f.name, r, values[0])
				values = values[1:]
			}
		}
		return b.String()
	}
	tests := []struct {
		name    string
		current QueryLogCounters
		want    string
	}{
		{"no writer yet", nil, exposition(0, 0, 0, 0, 0, 0)},
		{"writer", &fakeLog{written: 10, dropped: 2, overSize: 4, suppressed: 5, sampled: 7, errs: 1}, exposition(10, 5, 4, 2, 7, 1)},
		{"replaced writer", &fakeLog{written: 3}, exposition(3, 0, 0, 0, 0, 0)},
		{"query logging off", (*querylog.Writer)(nil), exposition(0, 0, 0, 0, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			current = tc.current
			if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(tc.want), names...); err != nil {
				t.Error(err)
			}
		})
	}
	if err := m.WatchQueryLog(func() QueryLogCounters { return nil }); err == nil {
		t.Error("watching twice did not fail")
	}
}
