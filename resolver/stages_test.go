package resolver

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// stageOne admits a query for name from 127.0.0.1 over UDP and runs
// stage 1 on it, as the UDP reader does.
func stageOne(t *testing.T, env *testEnv, name string) (*query, caller, *progress, bool) {
	t.Helper()
	w := fakeWriter(udpClient("127.0.0.1"))
	c := env.srv.callerOf(w)
	q := parseQuery(question(name, dns.TypeA), true)
	if !env.srv.admitQuery(w, &q, c) {
		t.Fatal("query not admitted")
	}
	var p progress
	ready := env.srv.answerReady(c.addr, &q, &p)
	return &q, c, &p, ready
}

// stageTwo serves a query stage 1 handed over, as a worker does, and
// returns the answer.
func stageTwo(t *testing.T, env *testEnv, q *query, c caller, p *progress) *dns.Msg {
	t.Helper()
	w := fakeWriter(udpClient("127.0.0.1"))
	env.srv.serve(w, q, c, p)
	resp := new(dns.Msg)
	if err := resp.Unpack(w.Out); err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	return resp
}

// A query stage 1 hands over is answered by stage 2 under the policy it
// was decided under, for the decision and for the checks after it, even
// when a reload installs another policy in between.
func TestStagesDecideOnce(t *testing.T) {
	withTarget := []string{"a.example. 300 IN CNAME t.example.", "t.example. 300 IN A 192.0.2.7"}
	for _, tt := range []struct {
		name     string
		answer   []string
		cached   bool // the first query is served before, so stage 1 finds a hit not in effect
		decided  *fakePolicy
		reloaded *fakePolicy
		rcode    int
		decision string
	}{
		{"miss, reload to no group", []string{"a.example. 300 IN A 192.0.2.7"}, false,
			&fakePolicy{}, &fakePolicy{noGroup: true}, dns.RcodeSuccess, decisionAllow},
		{"hit not in effect, reload to no group", []string{"a.example. 300 IN A 192.0.2.7"}, true,
			&fakePolicy{}, &fakePolicy{noGroup: true}, dns.RcodeSuccess, decisionAllow},
		{"miss, target denied by the deciding policy only", withTarget, false,
			&fakePolicy{targets: map[string]policy.Decision{"t.example.": denied(policy.ActionNXDomain)}}, &fakePolicy{},
			dns.RcodeNameError, decisionDeny},
		{"miss, target denied by the reloaded policy only", withTarget, false,
			&fakePolicy{}, &fakePolicy{targets: map[string]policy.Decision{"t.example.": denied(policy.ActionNXDomain)}},
			dns.RcodeSuccess, decisionAllow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, tt.answer, nil))
			fw := &checkingEnforcer{}
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Policy: tt.decided, Enforcer: fw})
			if tt.cached {
				env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
			}
			q, c, p, ready := stageOne(t, env, "a.example.")
			if ready {
				t.Fatal("stage 1 answered a query that needs the upstream or a push")
			}
			env.srv.SetPolicy(tt.reloaded)
			resp := stageTwo(t, env, q, c, p)
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if e := env.log.last(t); e.Decision != tt.decision || e.Group != testGroup || e.Cached != tt.cached {
				t.Errorf("logged decision %q group %q cached %v, want %q %q %v", e.Decision, e.Group, e.Cached, tt.decision, testGroup, tt.cached)
			}
		})
	}
}

// Stage 1 sends, counts and logs nothing for a query it hands over; stage
// 2 then counts the cache once, logs once and pushes once.
func TestStageOneCountsNothing(t *testing.T) {
	for _, tt := range []struct {
		name         string
		cached       bool
		hits, misses float64
		upstream     int32
	}{
		{"miss", false, 0, 1, 1},
		{"hit not in effect", true, 1, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.7"}, nil))
			m := metrics.New()
			fw := &checkingEnforcer{}
			env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100, Metrics: m, Enforcer: fw})
			if tt.cached {
				env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
			}
			base := struct {
				hits, misses float64
				logged       int
				pushes       int
				upstream     int32
			}{testutil.ToFloat64(m.CacheHits), testutil.ToFloat64(m.CacheMisses), len(env.log.entries), len(fw.allowances()), up.queries.Load()}

			q, c, p, ready := stageOne(t, env, "a.example.")
			if ready {
				t.Fatal("stage 1 answered a query that needs the upstream or a push")
			}
			if h, ms, l, n, u := testutil.ToFloat64(m.CacheHits), testutil.ToFloat64(m.CacheMisses), len(env.log.entries), len(fw.allowances()), up.queries.Load(); h != base.hits || ms != base.misses || l != base.logged || n != base.pushes || u != base.upstream {
				t.Fatalf("after stage 1: hits %v misses %v logged %d pushes %d upstream %d, want none added", h-base.hits, ms-base.misses, l-base.logged, n-base.pushes, u-base.upstream)
			}

			if resp := stageTwo(t, env, q, c, p); len(resp.Answer) != 1 {
				t.Fatalf("stage 2 answer: %v", resp)
			}
			for _, got := range []struct {
				what      string
				got, want float64
			}{
				{"cache hits", testutil.ToFloat64(m.CacheHits) - base.hits, tt.hits},
				{"cache misses", testutil.ToFloat64(m.CacheMisses) - base.misses, tt.misses},
				{"query log entries", float64(len(env.log.entries) - base.logged), 1},
				{"firewall pushes", float64(len(fw.allowances()) - base.pushes), 1},
				{"upstream queries", float64(up.queries.Load() - base.upstream), float64(tt.upstream)},
			} {
				if got.got != got.want {
					t.Errorf("stage 2 added %v %s, want %v", got.got, got.what, got.want)
				}
			}
		})
	}
}
