package resolver

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/dnstest"
	"github.com/egressd/egressd/internal/fakeclock"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/querylog"
)

const testGroup = "servers"

// fakePolicy allows everything for group testGroup unless a name has its
// own decision. Targets holds the decisions DeniesTarget reports.
type fakePolicy struct {
	names   map[string]policy.Decision
	targets map[string]policy.Decision
	noGroup bool
	gen     uint64
}

func (p *fakePolicy) Generation() uint64 { return p.gen }

func (p *fakePolicy) Decide(_ netip.Addr, qname string, _ uint16) policy.Decision {
	if p.noGroup {
		return policy.Decision{Verdict: policy.Deny, Rule: "no group"}
	}
	if d, ok := p.names[qname]; ok {
		return d
	}
	return policy.Decision{Verdict: policy.Allow, Group: testGroup, Rule: "default", Source: "group[servers].default"}
}

func (p *fakePolicy) DeniesTarget(group, name string) (policy.Decision, bool) {
	d, ok := p.targets[name]
	return d, ok && group == testGroup
}

// fakeEnforcer records allowances. When release is set, Allow first reports
// the call on called and waits for release.
type fakeEnforcer struct {
	err     error
	called  chan enforce.Allowance
	release chan struct{}

	mu     sync.Mutex
	allows []enforce.Allowance
}

func (e *fakeEnforcer) Allow(ctx context.Context, a enforce.Allowance) error {
	e.mu.Lock()
	e.allows = append(e.allows, a)
	e.mu.Unlock()
	if e.called != nil {
		e.called <- a
	}
	if e.release != nil {
		select {
		case <-e.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return e.err
}

func (e *fakeEnforcer) Close() error { return nil }

// checkingEnforcer is a fakeEnforcer that also answers InEffect, with
// inEffect, and counts the questions.
type checkingEnforcer struct {
	fakeEnforcer
	inEffect bool
	checks   atomic.Int32
}

func (e *checkingEnforcer) InEffect(enforce.Allowance) bool {
	e.checks.Add(1)
	return e.inEffect
}

func (e *fakeEnforcer) allowances() []enforce.Allowance {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]enforce.Allowance(nil), e.allows...)
}

type fakeLog struct {
	mu      sync.Mutex
	entries []querylog.Entry
}

func (l *fakeLog) Keep(string) bool { return true }

func (l *fakeLog) Write(e *querylog.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, *e)
}

func (l *fakeLog) last(t testing.TB) querylog.Entry {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) == 0 {
		t.Fatal("no query log entry")
	}
	return l.entries[len(l.entries)-1]
}

// fakeWriter is a reply writer of egressd's UDP listener on 127.0.0.1:53
// that keeps what is written, for a query from remote.
func fakeWriter(remote net.Addr) *dnstest.Recorder {
	return &dnstest.Recorder{Local: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}, Remote: remote}
}

func udpClient(ip string) net.Addr {
	return &net.UDPAddr{IP: net.ParseIP(ip), Port: 40000}
}

// testEnv is a Server wired to fakes, with defaults tests override.
type testEnv struct {
	srv      *Server
	policy   *fakePolicy
	enforcer *fakeEnforcer
	log      *fakeLog
	clock    *fakeclock.Clock
}

func newEnv(t testing.TB, o Options) *testEnv {
	t.Helper()
	env := &testEnv{
		policy:   &fakePolicy{},
		enforcer: &fakeEnforcer{},
		log:      &fakeLog{},
		clock:    fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	if o.Clients == nil {
		o.Clients = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if o.Timeout == 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Policy == nil {
		o.Policy = env.policy
	}
	if o.Enforcer == nil {
		o.Enforcer = env.enforcer
	}
	if o.QueryLog == nil {
		o.QueryLog = env.log
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv.now = env.clock.Now
	srv.probe = false // tests count upstream queries; TestReadinessProbe turns it on
	env.srv = srv
	return env
}

// serve passes req straight to the handler as if it came from client over
// UDP and returns the unpacked response.
func (env *testEnv) serve(t testing.TB, client string, req *dns.Msg) *dns.Msg {
	t.Helper()
	w := fakeWriter(udpClient(client))
	env.srv.ServeDNS(w, req)
	if w.Out == nil {
		t.Fatal("no response written")
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(w.Out); err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	if resp.Id != req.Id {
		t.Fatalf("response ID %d, query ID %d", resp.Id, req.Id)
	}
	return resp
}

// start binds the server on a loopback port and returns its address.
func (env *testEnv) start(t testing.TB) string {
	t.Helper()
	return env.startOn(t, "127.0.0.1:0")
}

// startOn starts the server on listen, stops it when the test ends, and
// returns the address it bound first.
func (env *testEnv) startOn(t testing.TB, listen string) string {
	t.Helper()
	env.srv.opts.Listen = []string{listen}
	if err := env.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		env.srv.Shutdown(ctx)
	})
	return env.srv.Addrs()[0].String()
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// exchange sends m to addr over network with a real client.
func exchange(t testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s exchange: %v", network, err)
	}
	return resp
}
