package resolver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// The answer must not reach the client before the firewall holds its
// addresses: the client connects as soon as it has the answer.
func TestFirewallPushedBeforeAnswer(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{
		"api.example. 600 IN CNAME edge.example.",
		"edge.example. 120 IN A 192.0.2.1",
		"edge.example. 45 IN AAAA 2001:db8::1",
		"other.example. 30 IN A 198.51.100.1", // not on the chain: neither pushed nor counted
	}, nil))
	ports := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}
	env := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{MaxTTL: time.Minute}})
	env.policy.names = map[string]policy.Decision{"api.example.": {
		Verdict: policy.Allow, Group: testGroup, Rule: "api.example:443", Ports: ports,
	}}
	env.enforcer.called = make(chan enforce.Allowance, 1)
	env.enforcer.release = make(chan struct{})
	addr := env.start(t)

	answered := make(chan *dns.Msg, 1)
	go func() {
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		resp, _, err := c.Exchange(question("api.example.", dns.TypeA), addr)
		if err != nil {
			t.Error(err)
		}
		answered <- resp
	}()

	var got enforce.Allowance
	select {
	case got = <-env.enforcer.called:
	case <-time.After(3 * time.Second):
		t.Fatal("firewall never asked")
	}
	select {
	case resp := <-answered:
		t.Fatalf("client had its answer while the firewall push was pending: %v", resp)
	case <-time.After(200 * time.Millisecond):
	}
	close(env.enforcer.release)
	select {
	case resp := <-answered:
		if resp == nil || resp.Rcode != dns.RcodeSuccess {
			t.Fatalf("answer %v", resp)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no answer after the firewall push")
	}

	want := enforce.Allowance{
		Group:  testGroup,
		Client: netip.MustParseAddr("127.0.0.1"),
		IPs:    []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		Ports:  ports,
		TTL:    45 * time.Second, // smallest TTL on the chain, below MaxTTL
	}
	if got.Group != want.Group || got.Client != want.Client || got.TTL != want.TTL ||
		!slices.Equal(got.IPs, want.IPs) || !slices.Equal(got.Ports, want.Ports) {
		t.Errorf("allowance %+v, want %+v", got, want)
	}
}

func TestFirewallTTLClampedAndAged(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 3600 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 10, Settings: Settings{MaxTTL: 5 * time.Minute}})
	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	env.clock.Advance(3500 * time.Second)
	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	var ttls []time.Duration
	for _, a := range env.enforcer.allowances() {
		ttls = append(ttls, a.TTL)
	}
	if want := []time.Duration{5 * time.Minute, 100 * time.Second}; !slices.Equal(ttls, want) {
		t.Errorf("allowance TTLs %v, want %v", ttls, want)
	}
}

func TestFirewallFailure(t *testing.T) {
	tests := []struct {
		name     string
		failOpen bool
		qtype    uint16
		answer   string // zone-file record the upstream answers with
		rcode    int
		pushes   int
	}{
		{"fail closed", false, dns.TypeA, "a.example. 60 IN A 192.0.2.1", dns.RcodeServerFailure, 1},
		{"fail open", true, dns.TypeA, "a.example. 60 IN A 192.0.2.1", dns.RcodeSuccess, 1},
		{"no addresses, nothing to push", false, dns.TypeTXT, "a.example. 60 IN TXT hello", dns.RcodeSuccess, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{tt.answer}, nil))
			m := metrics.New()
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Metrics: m, Settings: Settings{FailOpen: tt.failOpen}})
			env.enforcer.err = errors.New("netlink: operation not permitted")
			resp := env.serve(t, "127.0.0.1", question("a.example.", tt.qtype))
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.rcode == dns.RcodeServerFailure && len(resp.Answer) != 0 {
				t.Errorf("failed push still answered %v", resp.Answer)
			}
			if n := len(env.enforcer.allowances()); n != tt.pushes {
				t.Errorf("%d pushes, want %d", n, tt.pushes)
			}
			rcodeName := dns.RcodeToString[tt.rcode]
			if got := testutil.ToFloat64(m.Responses.WithLabelValues(rcodeName)); got != 1 {
				t.Errorf("responses_total{rcode=%s} = %v, want 1", rcodeName, got)
			}
		})
	}
}

func TestSetEnforcerAndPolicySwap(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))

	next := &fakeEnforcer{}
	env.srv.SetEnforcer(next)
	env.srv.SetPolicy(&fakePolicy{names: map[string]policy.Decision{"a.example.": denied(policy.ActionRefused)}})
	if resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA)); resp.Rcode != dns.RcodeRefused {
		t.Errorf("new policy not used: rcode %s", dns.RcodeToString[resp.Rcode])
	}
	env.srv.SetPolicy(env.policy)
	env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
	if before, after := len(env.enforcer.allowances()), len(next.allowances()); before != 1 || after != 1 {
		t.Errorf("pushes: old enforcer %d, new %d; want 1 and 1", before, after)
	}
	env.srv.SetEnforcer(nil)
	if resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("without enforcer: rcode %s", dns.RcodeToString[resp.Rcode])
	}
}

func TestHTTPSHintsPushed(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{
		`svc.example. 300 IN HTTPS 1 . alpn="h2" ipv4hint="192.0.2.7" ipv6hint="2001:db8::7"`,
	}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	env.serve(t, "127.0.0.1", question("svc.example.", dns.TypeHTTPS))
	allows := env.enforcer.allowances()
	want := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
	if len(allows) != 1 || !slices.Equal(allows[0].IPs, want) {
		t.Errorf("allowances %v, want hints %v", allows, want)
	}
}

// TestFirewallLimitFailsClosed: an answer the firewall refuses because a
// cap is reached is SERVFAIL even with fail_open, which is about a broken
// firewall, not about limits that keep clients from filling the sets.
func TestFirewallLimitFailsClosed(t *testing.T) {
	limit := fmt.Errorf("%w: set g_lan_d4 holds 65536 elements", enforce.ErrLimit)
	tests := []struct {
		name     string
		failOpen bool
		err      error
		rcode    int
	}{
		{"limit, fail closed", false, limit, dns.RcodeServerFailure},
		{"limit, fail open", true, limit, dns.RcodeServerFailure},
		{"other error, fail open", true, errors.New("netlink: operation not permitted"), dns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{FailOpen: tt.failOpen}})
			env.enforcer.err = tt.err
			resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeA))
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if tt.rcode == dns.RcodeServerFailure && len(resp.Answer) != 0 {
				t.Errorf("refused push still answered %v", resp.Answer)
			}
		})
	}
}

// TestAllowanceNamesTheAnswer: the enforcer learns which names an answer
// was approved for (query name, then CNAME targets), so that a reload can
// re-check its elements against the new policy.
func TestAllowanceNamesTheAnswer(t *testing.T) {
	tests := []struct {
		name    string
		qname   string
		records []string
		targets []string
	}{
		{"plain answer", "a.example.", []string{"a.example. 60 IN A 192.0.2.1"}, nil},
		{"CNAME chain", "a.example.", []string{"a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME c.example.", "c.example. 60 IN A 192.0.2.1"},
			[]string{"b.example.", "c.example."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, tt.records, nil))
			env := newEnv(t, Options{Upstreams: []string{up.addr}})
			if resp := env.serve(t, "127.0.0.1", question(tt.qname, dns.TypeA)); resp.Rcode != dns.RcodeSuccess {
				t.Fatalf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
			got := env.enforcer.allowances()
			if len(got) != 1 || got[0].Name != tt.qname || !slices.Equal(got[0].Targets, tt.targets) {
				t.Fatalf("allowances %+v, want one for %s via %v", got, tt.qname, tt.targets)
			}
		})
	}
}
