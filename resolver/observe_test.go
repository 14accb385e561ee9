package resolver

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/querylog"
)

func TestQueryLogEntry(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{
		"www.example.com. 300 IN CNAME edge.example.net.",
		"edge.example.net. 120 IN A 192.0.2.1",
		"edge.example.net. 120 IN A 192.0.2.2",
	}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 10, Settings: Settings{MaxTTL: 100 * time.Second}})
	env.serve(t, "127.0.0.9", question("WWW.example.com.", dns.TypeA))
	got := env.log.last(t)
	if got.Time.IsZero() || got.DurationMS <= 0 {
		t.Errorf("time %v, duration %v: want both set", got.Time, got.DurationMS)
	}
	got.Time, got.DurationMS = time.Time{}, 0
	want := querylog.Entry{
		Client: "127.0.0.9", Group: testGroup, QName: "www.example.com.", QType: "A",
		Decision: "allow", Rule: "default", Source: "group[servers].default", RCode: "NOERROR",
		Answers: []string{"CNAME edge.example.net.", "192.0.2.1", "192.0.2.2"},
		TTL:     100, Upstream: up.addr,
	}
	if !equalEntries(got, want) {
		t.Errorf("entry\n got %+v\nwant %+v", got, want)
	}

	env.clock.Advance(50 * time.Second)
	env.serve(t, "127.0.0.9", question("www.example.com.", dns.TypeA))
	if e := env.log.last(t); !e.Cached || e.TTL != 70 || e.Upstream != "" {
		t.Errorf("cached entry: cached=%v ttl=%d upstream=%q, want true, 70, none", e.Cached, e.TTL, e.Upstream)
	}
}

func equalEntries(a, b querylog.Entry) bool {
	return slices.Equal(a.Answers, b.Answers) &&
		a.Time.Equal(b.Time) && a.Client == b.Client && a.Group == b.Group &&
		a.QName == b.QName && a.QType == b.QType && a.Decision == b.Decision &&
		a.Rule == b.Rule && a.Source == b.Source && a.Action == b.Action &&
		a.RCode == b.RCode && a.TTL == b.TTL && a.Cached == b.Cached &&
		a.Upstream == b.Upstream && a.DurationMS == b.DurationMS
}

func TestQueryMetrics(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	m := metrics.New()
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 10, Metrics: m})
	env.policy.names = map[string]policy.Decision{"bad.example.": denied(policy.ActionNXDomain)}

	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	env.serve(t, "127.0.0.1", question("bad.example.", dns.TypeA))
	env.serve(t, "127.0.0.1", question("a.example.", 65280))
	env.serve(t, "10.9.9.9", question("a.example.", dns.TypeA))

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"allowed A", testutil.ToFloat64(m.Queries.WithLabelValues(testGroup, "allow", "A")), 2},
		{"denied A", testutil.ToFloat64(m.Queries.WithLabelValues(testGroup, "deny", "A")), 1},
		{"unknown type is other", testutil.ToFloat64(m.Queries.WithLabelValues(testGroup, "allow", "other")), 1},
		{"refused client", testutil.ToFloat64(m.Queries.WithLabelValues("", "refused", "A")), 1},
		{"NOERROR", testutil.ToFloat64(m.Responses.WithLabelValues("NOERROR")), 3},
		{"NXDOMAIN", testutil.ToFloat64(m.Responses.WithLabelValues("NXDOMAIN")), 1},
		{"REFUSED", testutil.ToFloat64(m.Responses.WithLabelValues("REFUSED")), 1},
		{"cache hits", testutil.ToFloat64(m.CacheHits), 1},
		{"cache misses", testutil.ToFloat64(m.CacheMisses), 2},
		{"cache entries", testutil.ToFloat64(m.CacheEntries), 2},
		{"upstream ok", testutil.ToFloat64(m.UpstreamRequests.WithLabelValues(up.addr, "ok")), 2},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if n := testutil.CollectAndCount(m.RequestDuration); n != 2 {
		t.Errorf("request duration series %d, want cached and uncached", n)
	}
}

func TestShutdownStopsServing(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	addr := env.start(t)
	exchange(t, "tcp", addr, question("a.example.", dns.TypeA))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Net: "tcp", Timeout: 300 * time.Millisecond}
	if _, _, err := c.Exchange(question("a.example.", dns.TypeA), addr); err == nil {
		t.Error("TCP still answered after Shutdown")
	}
}
