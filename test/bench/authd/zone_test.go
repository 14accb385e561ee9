package main

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testZone(t *testing.T) *zone {
	t.Helper()
	z, err := newZone("Bench.Test", 1000, 3600, 900, 1)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func query(name string, qtype uint16, edns bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	if edns {
		m.SetEdns0(4096, false)
	}
	return m
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		n      uint64
		v4, v6 string
	}{
		{0, "198.18.0.1", "2001:db8::"},
		{1, "198.18.0.2", "2001:db8::1"},
		{255, "198.18.1.0", "2001:db8::ff"},
		{65535, "198.19.0.0", "2001:db8::ffff"},
		{131069, "198.19.255.254", "2001:db8::1:fffd"},
		{131070, "198.18.0.1", "2001:db8::1:fffe"},
	}
	for _, tc := range tests {
		if got := addr4(tc.n); got != netip.MustParseAddr(tc.v4) {
			t.Errorf("addr4(%d) = %s, want %s", tc.n, got, tc.v4)
		}
		if got := addr6(tc.n); got != netip.MustParseAddr(tc.v6) {
			t.Errorf("addr6(%d) = %s, want %s", tc.n, got, tc.v6)
		}
	}
}

func TestHostIndex(t *testing.T) {
	tests := []struct {
		label string
		n     uint64
		ok    bool
	}{
		{"h0", 0, true},
		{"h42", 42, true},
		{"H7", 7, true},
		{"h", 0, false},
		{"h01", 0, false},
		{"x1", 0, false},
		{"h1a", 0, false},
		{"h-1", 0, false},
		{"h9999999999999999999", 9999999999999999999, true},
		{"h99999999999999999999", 0, false},
	}
	for _, tc := range tests {
		n, ok := hostIndex(tc.label)
		if n != tc.n || ok != tc.ok {
			t.Errorf("hostIndex(%q) = %d, %v; want %d, %v", tc.label, n, ok, tc.n, tc.ok)
		}
		n, ok = hostIndexBytes([]byte(tc.label))
		if n != tc.n || ok != tc.ok {
			t.Errorf("hostIndexBytes(%q) = %d, %v; want %d, %v", tc.label, n, ok, tc.n, tc.ok)
		}
	}
}

func TestRespond(t *testing.T) {
	z := testZone(t)
	tests := []struct {
		name    string
		q       *dns.Msg
		rcode   int
		answer  string // the only answer record's data, "" for none
		ttl     uint32
		soaInNs bool
		fast    bool
	}{
		{"A", query("h5.bench.test.", dns.TypeA, false), dns.RcodeSuccess, "198.18.0.6", 3600, false, true},
		{"AAAA with EDNS", query("h5.bench.test.", dns.TypeAAAA, true), dns.RcodeSuccess, "2001:db8::5", 3600, false, true},
		{"mixed case", query("H12.BENCH.test.", dns.TypeA, true), dns.RcodeSuccess, "198.18.0.13", 3600, false, true},
		{"cold name gets the cold TTL", query("h950.bench.test.", dns.TypeA, false), dns.RcodeSuccess, "198.18.3.183", 1, false, true},
		{"past the last name", query("h1000.bench.test.", dns.TypeA, false), dns.RcodeNameError, "", 0, true, false},
		{"not a host label", query("www.bench.test.", dns.TypeA, false), dns.RcodeNameError, "", 0, true, false},
		{"below a host", query("a.h1.bench.test.", dns.TypeA, false), dns.RcodeNameError, "", 0, true, false},
		{"other type is NODATA", query("h1.bench.test.", dns.TypeMX, false), dns.RcodeSuccess, "", 0, true, false},
		{"apex SOA", query("bench.test.", dns.TypeSOA, false), dns.RcodeSuccess, "ns.bench.test.", 3600, false, false},
		{"apex A is NODATA", query("bench.test.", dns.TypeA, false), dns.RcodeSuccess, "", 0, true, false},
		{"outside the zone", query("h1.example.", dns.TypeA, false), dns.RcodeRefused, "", 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire, err := tc.q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, fast := z.fastAnswer(wire, nil); fast != tc.fast {
				t.Errorf("fast path taken = %v, want %v", fast, tc.fast)
			}
			reply := z.respond(wire, nil)
			resp := new(dns.Msg)
			if err := resp.Unpack(reply); err != nil {
				t.Fatalf("unpack reply: %v", err)
			}
			if resp.Id != tc.q.Id || !resp.Response || resp.Rcode != tc.rcode {
				t.Fatalf("reply id=%d response=%v rcode=%s; want id=%d rcode=%s", resp.Id, resp.Response, dns.RcodeToString[resp.Rcode], tc.q.Id, dns.RcodeToString[tc.rcode])
			}
			if tc.rcode != dns.RcodeRefused && !resp.Authoritative {
				t.Error("reply is not authoritative")
			}
			if (resp.IsEdns0() != nil) != (tc.q.IsEdns0() != nil) {
				t.Errorf("reply has EDNS = %v, query had %v", resp.IsEdns0() != nil, tc.q.IsEdns0() != nil)
			}
			if len(resp.Question) != 1 || resp.Question[0] != tc.q.Question[0] {
				t.Errorf("question = %v, want %v", resp.Question, tc.q.Question)
			}
			switch {
			case tc.answer == "" && len(resp.Answer) != 0:
				t.Errorf("answer = %v, want none", resp.Answer)
			case tc.answer != "":
				if len(resp.Answer) != 1 {
					t.Fatalf("answer = %v, want one record", resp.Answer)
				}
				rr := resp.Answer[0]
				var data string
				switch v := rr.(type) {
				case *dns.A:
					data = v.A.String()
				case *dns.AAAA:
					data = v.AAAA.String()
				case *dns.SOA:
					data = v.Ns
				}
				if data != tc.answer || rr.Header().Ttl != tc.ttl || rr.Header().Name != tc.q.Question[0].Name {
					t.Errorf("answer = %v, want %s with TTL %d", rr, tc.answer, tc.ttl)
				}
			}
			if hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA; hasSOA != tc.soaInNs {
				t.Errorf("authority = %v, want SOA: %v", resp.Ns, tc.soaInNs)
			}
		})
	}
}

func TestRespondIgnoresResponsesAndGarbage(t *testing.T) {
	z := testZone(t)
	resp := query("h1.bench.test.", dns.TypeA, false)
	resp.Response = true
	wire, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string][]byte{"response": wire, "truncated": wire[:14], "empty": nil} {
		if got := z.respond(q, nil); got != nil {
			t.Errorf("%s: reply %x, want none", name, got)
		}
	}
}

func TestFastPathDoesNotAllocate(t *testing.T) {
	z := testZone(t)
	wire, err := query("h5.bench.test.", dns.TypeA, true).Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() { z.respond(wire, out[:0]) })
	if allocs != 0 {
		t.Errorf("fast path allocates %.1f times per query", allocs)
	}
}

func TestServerUDPAndTCP(t *testing.T) {
	srv := &server{zone: testZone(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.listen(ctx, "127.0.0.1:0", 2); err != nil {
		t.Fatal(err)
	}
	srv.serve()
	defer srv.close()
	addr := srv.udp[0].LocalAddr().String()
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
		resp, _, err := c.Exchange(query("h3.bench.test.", dns.TypeAAAA, true), addr)
		if err != nil {
			t.Fatalf("%s: %v", netw, err)
		}
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::3" {
			t.Errorf("%s: answer %v", netw, resp.Answer)
		}
	}
	if got := srv.queries.Load(); got != 2 {
		t.Errorf("query count = %d, want 2", got)
	}
}
