package upstream

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// TestWireExchangeIgnoresSpoofedReplies: in wire form, as unpacked, a
// datagram with another ID, question, type or class, without QR, without
// a question or that does not parse is ignored, and the genuine reply
// (its question in other case) is the one returned, unparsed.
func TestWireExchangeIgnoresSpoofedReplies(t *testing.T) {
	for _, genuine := range []bool{true, false} {
		up := dnstest.Start(t, dnstest.Spoofing(t, genuine))
		u := newPlainUpstream(up.Addr, 0, nil)
		timeout := 300 * time.Millisecond
		if genuine {
			timeout = 5 * time.Second // not reached: the genuine reply ends it
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		resp, wire, err := u.ExchangeWire(ctx, NewQuery("a.example.", dns.TypeA, dns.ClassINET, false, false))
		cancel()
		u.closeIdle()
		if !genuine {
			if err == nil || classify(nil, err) != resultTimeout {
				t.Fatalf("only spoofed replies: got %v, %x, %v; want a timeout", resp, wire, err)
			}
			continue
		}
		if err != nil || resp != nil || wire == nil {
			t.Fatalf("genuine reply: got %v, %x, %v; want it in wire form", resp, wire, err)
		}
		var m dns.Msg
		if err := m.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if len(m.Answer) != 1 || !m.Answer[0].(*dns.A).A.Equal(net.IPv4(192, 0, 2, 1)) {
			t.Fatalf("returned %v, want the genuine answer", &m)
		}
	}
}

// TestParsePlain lists which replies are plain.
func TestParsePlain(t *testing.T) {
	rr := func(s string) dns.RR { return dnstest.MustRRs(t, []string{s})[0] }
	tests := []struct {
		name  string
		edit  func(m *dns.Msg)
		plain bool
	}{
		{"A", func(m *dns.Msg) { m.Answer = []dns.RR{rr("a.example. 60 IN A 192.0.2.1")} }, true},
		{"CNAME and AAAA", func(m *dns.Msg) {
			m.Answer = []dns.RR{rr("a.example. 60 IN CNAME b.example."), rr("b.example. 60 IN AAAA 2001:db8::1")}
		}, true},
		{"SOA and NS", func(m *dns.Msg) {
			m.Ns = []dns.RR{rr("example. 60 IN SOA ns.example. h.example. 1 2 3 4 5"), rr("example. 60 IN NS ns.example.")}
		}, true},
		{"OPT", func(m *dns.Msg) { m.SetEdns0(1232, true) }, true},
		{"OPT with extended RCODE", func(m *dns.Msg) { m.SetEdns0(1232, false); m.Rcode = dns.RcodeBadVers }, false},
		{"OPT with option", func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "01"}}
		}, false},
		{"TXT", func(m *dns.Msg) { m.Answer = []dns.RR{rr(`a.example. 60 IN TXT "x"`)} }, false},
		{"A in additional", func(m *dns.Msg) { m.Extra = []dns.RR{rr("ns.example. 60 IN A 192.0.2.1")} }, false},
		{"SOA in answer", func(m *dns.Msg) { m.Answer = []dns.RR{rr("example. 60 IN SOA ns.example. h.example. 1 2 3 4 5")} }, false},
		{"escaped label", func(m *dns.Msg) { m.Answer = []dns.RR{rr(`a\.b.example. 60 IN A 192.0.2.1`)} }, false},
		{"two questions", func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("a.example.", dns.TypeA)
			m.Response = true
			tc.edit(m)
			for _, compress := range []bool{false, true} {
				m.Compress = compress
				b, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				rrs, ok := ParsePlain(b, nil)
				if ok != tc.plain {
					t.Fatalf("compress=%v: plain %v, want %v", compress, ok, tc.plain)
				}
				if ok {
					if d := sameRecords(b, rrs); d != "" {
						t.Fatalf("compress=%v: %s", compress, d)
					}
				}
			}
		})
	}
}

// sameRecords compares what ParsePlain found in msg with what
// dns.Msg.Unpack finds.
func sameRecords(msg []byte, rrs []WireRR) string {
	var m dns.Msg
	if err := m.Unpack(msg); err != nil {
		return "plain reply does not unpack: " + err.Error()
	}
	var all []dns.RR
	sections := []int{}
	for i, s := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range s {
			all = append(all, rr)
			sections = append(sections, i)
		}
	}
	if len(all) != len(rrs) {
		return "record count differs"
	}
	for i, rr := range rrs {
		h := all[i].Header()
		if rr.Section != sections[i] || rr.Type != h.Rrtype || int(rr.Rdlen) != int(h.Rdlength) ||
			(rr.Type != dns.TypeOPT && (rr.TTL != h.Ttl || !EqualName(string(AppendWireName(nil, msg, rr.Start)), h.Name))) {
			return "record differs: " + all[i].String()
		}
		if c, ok := all[i].(*dns.CNAME); ok && string(AppendWireName(nil, msg, rr.Rdata)) != c.Target {
			return "CNAME target differs: " + c.Target
		}
	}
	return ""
}

// FuzzParsePlain: every message ParsePlain takes unpacks, to the same
// records.
func FuzzParsePlain(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.Response = true
	m.Answer = dnstest.MustRRs(f, []string{"a.example. 60 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1"})
	m.Ns = dnstest.MustRRs(f, []string{"example. 60 IN SOA ns.example. h.example. 1 2 3 4 5"})
	m.SetEdns0(1232, false)
	for _, compress := range []bool{false, true} {
		m.Compress = compress
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		rrs, ok := ParsePlain(msg, nil)
		if !ok {
			return
		}
		if d := sameRecords(msg, rrs); d != "" {
			t.Fatal(d)
		}
	})
}
