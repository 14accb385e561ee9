package upstream

import (
	"context"
	"net"
	"slices"
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

// TestParsePlainPointers: a pointer must lead to a label of an earlier
// name. One into a TTL or the header reads bytes the resolver rewrites
// (TTLs as they age, the ID and flags per client), so the name would
// change under the answer that was checked.
func TestParsePlainPointers(t *testing.T) {
	// The question a.example. A IN, then one CNAME record at offset 27
	// whose owner points to the question and whose TTL bytes (offsets
	// 33-36) also read as the name "zz.".
	head := []byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
		1, 'a', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1,
		0xC0, 12, 0, 5, 0, 1, 2, 'z', 'z', 0, 0, 2}
	tests := []struct {
		name   string
		target []byte
		plain  bool
		want   string
	}{
		{"to the question", []byte{0xC0, 12}, true, "a.example."},
		{"to a label inside the question", []byte{0xC0, 14}, true, "example."},
		{"labels then a pointer", []byte{1, 'b', 0xC0, 14}, true, "b.example."},
		{"to an earlier name's pointer", []byte{0xC0, 27}, true, "a.example."},
		{"to the pointer's second byte", []byte{0xC0, 28}, false, ""},
		{"into a TTL", []byte{0xC0, 33}, false, "zz."},
		{"into the header", []byte{0xC0, 3}, false, ""},
		{"into a label's bytes", []byte{0xC0, 15}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := append(slices.Clone(head), tc.target...)
			msg[len(head)-1] = byte(len(tc.target))
			var m dns.Msg
			unpacked := m.Unpack(msg) == nil
			rrs, ok := ParsePlain(msg, nil)
			if ok != tc.plain {
				t.Fatalf("plain %v, want %v (dns.Msg.Unpack takes it: %v)", ok, tc.plain, unpacked)
			}
			if ok {
				if d := sameRecords(msg, rrs); d != "" {
					t.Fatal(d)
				}
				if got := string(AppendWireName(nil, msg, rrs[0].Rdata)); got != tc.want {
					t.Fatalf("target %q, want %q", got, tc.want)
				}
			}
			if tc.want == "zz." && (!unpacked || m.Answer[0].(*dns.CNAME).Target != tc.want) {
				t.Fatalf("the case is not what it claims: unpacked %v %v", unpacked, &m)
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

// BenchmarkParsePlain: a compressed CNAME-and-A reply with an SOA, the
// shape most misses have.
func BenchmarkParsePlain(b *testing.B) {
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	m.Response, m.Compress = true, true
	m.Answer = dnstest.MustRRs(b, []string{"www.example.com. 60 IN CNAME edge.cdn.example.net.", "edge.cdn.example.net. 60 IN A 192.0.2.1", "edge.cdn.example.net. 60 IN A 192.0.2.2"})
	m.Ns = dnstest.MustRRs(b, []string{"example.net. 60 IN NS ns1.example.net.", "example.net. 60 IN NS ns2.example.net."})
	m.SetEdns0(1232, false)
	msg, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	var rrs [16]WireRR
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParsePlain(msg, rrs[:0]); !ok {
			b.Fatal("not plain")
		}
	}
}
