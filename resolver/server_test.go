package resolver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

func TestServeUDPAndTCP(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"www.example.com. 300 IN A 192.0.2.10"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	addr := env.start(t)
	if env.srv.Ready() {
		t.Error("Ready before any upstream answered")
	}
	addrs := env.srv.Addrs()
	if len(addrs) != 2 || addrs[0].Network() != "udp" || addrs[1].Network() != "tcp" || addrs[0].String() != addrs[1].String() {
		t.Fatalf("Addrs() = %v, want udp and tcp on one port", addrs)
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			resp := exchange(t, network, addr, question("www.example.com.", dns.TypeA))
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Fatalf("got %v", resp)
			}
			a, ok := resp.Answer[0].(*dns.A)
			if !ok || !a.A.Equal(net.ParseIP("192.0.2.10")) {
				t.Fatalf("answer %v", resp.Answer[0])
			}
			if !resp.RecursionAvailable || !resp.RecursionDesired {
				t.Errorf("RA=%v RD=%v, want both set", resp.RecursionAvailable, resp.RecursionDesired)
			}
		})
	}
	if !env.srv.Ready() {
		t.Error("not Ready after an upstream answered")
	}
}

func TestStartFailsWhenAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}})
	env.srv.opts.Listen = []string{"127.0.0.1:0", taken.Addr().String()}
	if err := env.srv.Start(); err == nil {
		env.srv.Shutdown(t.Context())
		t.Fatal("Start succeeded on a port in use")
	}
	if got := env.srv.Addrs(); len(got) != 0 {
		t.Errorf("Addrs() after failed Start = %v", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	pol := &fakePolicy{}
	tests := []struct {
		name string
		o    Options
	}{
		{"no policy", Options{Upstreams: []string{"127.0.0.1:53"}}},
		{"no upstreams", Options{Policy: pol}},
		{"plain upstream by name", Options{Policy: pol, Upstreams: []string{"dns.example:53"}}},
		{"upstream scheme not supported", Options{Policy: pol, Upstreams: []string{"quic://127.0.0.1:853"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.o); err == nil {
				t.Fatal("New accepted bad options")
			}
		})
	}
}

func TestClientACL(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{
		Upstreams: []string{up.addr},
		Settings: Settings{
			Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
		},
	})
	tests := []struct {
		client string
		want   int
	}{
		{"10.1.2.3", dns.RcodeSuccess},
		{"::ffff:10.1.2.3", dns.RcodeSuccess}, // v4-mapped on a dual-stack socket
		{"2001:db8::5", dns.RcodeSuccess},
		{"192.168.1.1", dns.RcodeRefused},
		{"2001:db9::5", dns.RcodeRefused},
		{"127.0.0.1", dns.RcodeRefused},
	}
	allowed := int32(0)
	for _, tt := range tests {
		if tt.want == dns.RcodeSuccess {
			allowed++
		}
		t.Run(tt.client, func(t *testing.T) {
			resp := env.serve(t, tt.client, question("a.example.", dns.TypeA))
			if resp.Rcode != tt.want {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.want])
			}
			if e := env.log.last(t); tt.want == dns.RcodeRefused && e.Decision != decisionRefused {
				t.Errorf("logged decision %q, want refused", e.Decision)
			}
		})
	}
	if n := up.queries.Load(); n != allowed {
		t.Errorf("upstream saw %d queries, want %d (refused clients must not reach it)", n, allowed)
	}
}

func TestUpstreamQueryIsBuiltFresh(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	req := question("A.Example.", dns.TypeA)
	req.SetEdns0(4096, true)
	opt := req.IsEdns0()
	opt.Option = append(opt.Option,
		&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("198.51.100.0").To4()},
		&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("private")},
	)
	resp := env.serve(t, "127.0.0.1", req)

	sent := up.lastQuery()
	sentOPT := sent.IsEdns0()
	switch {
	case sentOPT == nil:
		t.Fatal("upstream query without OPT")
	case len(sentOPT.Option) != 0:
		t.Errorf("client EDNS options forwarded: %v", sentOPT.Option)
	case sentOPT.UDPSize() != advertisedUDPSize:
		t.Errorf("advertised %d to upstream, want %d", sentOPT.UDPSize(), advertisedUDPSize)
	case !sentOPT.Do():
		t.Error("DO bit not forwarded")
	case !sent.RecursionDesired:
		t.Error("RD not set upstream")
	case sent.Question[0].Name != "a.example.":
		t.Errorf("upstream asked %q, want the normalized name", sent.Question[0].Name)
	}

	respOPT := resp.IsEdns0()
	if respOPT == nil || !respOPT.Do() || len(respOPT.Option) != 0 || respOPT.UDPSize() != advertisedUDPSize {
		t.Errorf("client got OPT %v, want ours mirrored with DO", respOPT)
	}
	if resp.Question[0].Name != "A.Example." {
		t.Errorf("question echoed as %q, want the client's spelling", resp.Question[0].Name)
	}
}

func TestResponseFitsClientBuffer(t *testing.T) {
	var records []string
	for i := range 100 {
		records = append(records, fmt.Sprintf("big.example. 300 IN A 192.0.2.%d", i+1))
	}
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = mustRRs(t, records)
		if udp {
			m.Truncate(advertisedUDPSize)
		}
		w.WriteMsg(m)
	})
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	addr := env.start(t)

	plain := question("big.example.", dns.TypeA)
	withEDNS := func(size uint16) *dns.Msg {
		m := question("big.example.", dns.TypeA)
		m.SetEdns0(size, false)
		return m
	}
	tests := []struct {
		name      string
		network   string
		req       *dns.Msg
		limit     int
		truncated bool
	}{
		{"udp without edns", "udp", plain, dns.MinMsgSize, true},
		{"udp with edns 1000", "udp", withEDNS(1000), 1000, true},
		{"udp with edns 1232", "udp", withEDNS(1232), 1232, true},
		{"udp with edns 4096, capped at ours", "udp", withEDNS(4096), advertisedUDPSize, true},
		{"udp with edns below 512 counts as 512", "udp", withEDNS(100), dns.MinMsgSize, true},
		{"tcp with edns", "tcp", withEDNS(1232), dns.MaxMsgSize, false},
		{"tcp", "tcp", plain, dns.MaxMsgSize, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &dns.Client{Net: tt.network, Timeout: 3 * time.Second, UDPSize: dns.MaxMsgSize}
			conn, err := c.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			if err := conn.WriteMsg(tt.req); err != nil {
				t.Fatal(err)
			}
			raw, err := conn.ReadMsgHeader(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) > tt.limit {
				t.Errorf("response is %d bytes, client accepts %d", len(raw), tt.limit)
			}
			resp := new(dns.Msg)
			if err := resp.Unpack(raw); err != nil {
				t.Fatal(err)
			}
			if resp.Truncated != tt.truncated {
				t.Errorf("TC=%v, want %v", resp.Truncated, tt.truncated)
			}
			if !tt.truncated && len(resp.Answer) != len(records) {
				t.Errorf("%d answers over TCP, want %d", len(resp.Answer), len(records))
			}
			if tt.truncated && (len(raw) < tt.limit-100 || len(resp.Question) != 1) {
				// Truncation keeps what fits rather than dropping everything.
				t.Errorf("truncated to %d bytes with %d questions; want close to %d and the question", len(raw), len(resp.Question), tt.limit)
			}
		})
	}
}

// Identical concurrent misses share one upstream exchange, but each client
// still gets its own firewall allowance.
func TestConcurrentMissesCoalesce(t *testing.T) {
	release := make(chan struct{})
	answer := staticAnswer(t, dns.RcodeSuccess, []string{"slow.example. 60 IN A 192.0.2.7"}, nil)
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
		<-release
		answer(w, r, udp)
	})
	env := newEnv(t, Options{Upstreams: []string{up.addr}, Timeout: 3 * time.Second})
	const clients = 8
	var wg sync.WaitGroup
	rcodes := make([]int, clients)
	for i := range clients {
		wg.Go(func() {
			w := fakeWriter(udpClient(fmt.Sprintf("127.0.0.%d", i+1)))
			env.srv.ServeDNS(w, question("slow.example.", dns.TypeA))
			var m dns.Msg
			rcodes[i] = -1
			if m.Unpack(w.Out) == nil {
				rcodes[i] = m.Rcode
			}
		})
	}
	waitFor(t, func() bool { return up.queries.Load() >= 1 })
	time.Sleep(100 * time.Millisecond) // let the other queries join the flight
	close(release)
	wg.Wait()
	for i, rc := range rcodes {
		if rc != dns.RcodeSuccess {
			t.Errorf("client %d: rcode %d", i, rc)
		}
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream saw %d queries, want 1", n)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range env.enforcer.allowances() {
		seen[a.Client] = true
	}
	if len(seen) != clients {
		t.Errorf("firewall allowances for %d clients, want %d", len(seen), clients)
	}
}

// waitFor polls cond until it holds, failing the test after 3 seconds.
var waitFor = dnstest.WaitFor

func TestServeIPv6Loopback(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	probe.Close()
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN AAAA 2001:db8::1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, Listen: []string{"[::1]:0"}})
	if err := env.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.srv.Shutdown(context.Background()) })
	addr := env.srv.Addrs()[0].String()
	for _, network := range []string{"udp", "tcp"} {
		resp := exchange(t, network, addr, question("a.example.", dns.TypeAAAA))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Errorf("%s: %v", network, resp)
		}
	}
	if a := env.enforcer.allowances(); len(a) != 2 || a[0].Client != netip.MustParseAddr("::1") {
		t.Errorf("allowances %v, want two for client ::1", a)
	}
}

func TestReadinessProbe(t *testing.T) {
	tests := []struct {
		name    string
		handler func(t *testing.T) upstreamHandler
		ready   bool
	}{
		{"upstream answers", func(t *testing.T) upstreamHandler {
			return staticAnswer(t, dns.RcodeSuccess, []string{". 60 IN NS a.root-servers.net."}, nil)
		}, true},
		{"upstream silent", func(t *testing.T) upstreamHandler { return silent }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, tt.handler(t))
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Timeout: 100 * time.Millisecond})
			env.srv.probe = true
			env.start(t)
			waitFor(t, func() bool { return up.queries.Load() > 0 })
			if tt.ready {
				waitFor(t, env.srv.Ready)
			} else {
				time.Sleep(200 * time.Millisecond)
				if env.srv.Ready() {
					t.Error("Ready although the upstream never answered")
				}
			}
			if q := up.lastQuery(); q.Question[0].Name != "." || q.Question[0].Qtype != dns.TypeNS {
				t.Errorf("probe asked %v, want . NS", q.Question[0])
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := env.srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("Shutdown took %v with the probe running", elapsed)
			}
		})
	}
}
