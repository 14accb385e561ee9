package resolver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/querylog"
)

func rrHdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func aRR(name string, ttl uint32, ip string) dns.RR {
	return &dns.A{Hdr: rrHdr(name, dns.TypeA, ttl), A: net.ParseIP(ip)}
}

func aaaaRR(name string, ttl uint32, ip string) dns.RR {
	return &dns.AAAA{Hdr: rrHdr(name, dns.TypeAAAA, ttl), AAAA: net.ParseIP(ip)}
}

func cnameRR(name string, ttl uint32, target string) dns.RR {
	return &dns.CNAME{Hdr: rrHdr(name, dns.TypeCNAME, ttl), Target: target}
}

func soaRR(name string, ttl, minTTL uint32) dns.RR {
	return &dns.SOA{Hdr: rrHdr(name, dns.TypeSOA, ttl), Ns: "ns1.example.", Mbox: "hostmaster.example.", Serial: 7, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minTTL}
}

// wireReplyCase is an upstream reply to an A (or AAAA) question for
// qname, and whether it is plain (newAnswerWire takes it).
type wireReplyCase struct {
	name  string
	qname string
	qtype uint16
	plain bool
	edit  func(m *dns.Msg)
}

// longUncompressed are the plain cases too long, uncompressed, to be taken
// from the wire (see newAnswerWire).
var longUncompressed = map[string]bool{"CNAME chain at the limit": true}

func chainTo(n int) []dns.RR {
	var rrs []dns.RR
	name := "loop.example."
	for i := range n {
		next := fmt.Sprintf("c%d.example.", i)
		rrs = append(rrs, cnameRR(name, 300, next))
		name = next
	}
	return append(rrs, aRR(name, 300, "192.0.2.9"))
}

var wireReplyCases = []wireReplyCase{
	{"one A", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1")}
	}},
	{"A records, TTLs differ, duplicate", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1"), aRR("www.example.com.", 20, "192.0.2.2"), aRR("www.example.com.", 300, "192.0.2.1")}
	}},
	{"owner in other case", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Question[0].Name = "WWW.Example.COM."
		m.Answer = []dns.RR{aRR("wWw.EXAMPLE.com.", 60, "192.0.2.1")}
	}},
	{"AAAA and mapped IPv4", "v6.example.com.", dns.TypeAAAA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aaaaRR("v6.example.com.", 300, "2001:db8::1"), aaaaRR("v6.example.com.", 300, "::ffff:192.0.2.7")}
	}},
	{"CNAME chain", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{cnameRR("www.example.com.", 600, "Edge.CDN.example.net."), cnameRR("edge.cdn.example.net.", 120, "e1.cdn.example.net."), aRR("e1.cdn.example.net.", 30, "198.51.100.4")}
	}},
	{"CNAME chain out of order", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("e1.cdn.example.net.", 30, "198.51.100.4"), cnameRR("edge.cdn.example.net.", 120, "e1.cdn.example.net."), cnameRR("www.example.com.", 600, "edge.cdn.example.net.")}
	}},
	{"CNAME without address", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{cnameRR("www.example.com.", 600, "gone.example.net.")}
		m.Ns = []dns.RR{soaRR("example.net.", 900, 60)}
	}},
	{"CNAME chain at the limit, long", "loop.example.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = chainTo(maxChainHops)
		for _, rr := range m.Answer {
			rr.Header().Name = strings.Repeat("x", 20) + "." + rr.Header().Name
			if c, ok := rr.(*dns.CNAME); ok {
				c.Target = strings.Repeat("x", 20) + "." + c.Target
			}
		}
		m.Question[0].Name = m.Answer[0].Header().Name
	}},
	{"CNAME chain too long", "loop.example.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = chainTo(maxChainHops + 2)
	}},
	{"CNAME chain at the limit", "loop.example.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = chainTo(maxChainHops)
	}},
	{"private and loopback addresses", "intranet.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("intranet.example.com.", 300, "10.1.2.3"), aRR("intranet.example.com.", 300, "127.0.0.1"), aRR("intranet.example.com.", 300, "0.0.0.0")}
	}},
	{"NXDOMAIN with SOA", "nope.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soaRR("example.com.", 3600, 300)}
	}},
	{"NXDOMAIN without SOA", "nope.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Rcode = dns.RcodeNameError
	}},
	{"NODATA with SOA, small TTL", "v4only.example.com.", dns.TypeAAAA, true, func(m *dns.Msg) {
		m.Ns = []dns.RR{soaRR("example.com.", 20, 300)}
	}},
	{"NODATA without SOA", "v4only.example.com.", dns.TypeAAAA, true, nil},
	{"NS in authority", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1")}
		m.Ns = []dns.RR{&dns.NS{Hdr: rrHdr("example.com.", dns.TypeNS, 100), Ns: "ns1.example.com."}}
	}},
	{"OPT", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1")}
		m.SetEdns0(1232, true)
	}},
	{"flags AA AD CD", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Authoritative, m.AuthenticatedData, m.CheckingDisabled, m.RecursionAvailable = true, true, true, false
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1")}
	}},
	{"zero TTL", "www.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 0, "192.0.2.1")}
	}},
	{"underscore and star", "_sip._udp.example.com.", dns.TypeA, true, func(m *dns.Msg) {
		m.Answer = []dns.RR{cnameRR("_sip._udp.example.com.", 60, "*.wild.example.com."), aRR("*.wild.example.com.", 60, "192.0.2.3")}
	}},

	// Not plain: newAnswer's path.
	{"A of another name", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1"), aRR("evil.example.net.", 300, "203.0.113.1")}
	}},
	{"A in additional", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1")}
		m.Extra = []dns.RR{aRR("ns1.example.com.", 300, "192.0.2.53")}
	}},
	{"HTTPS", "www.example.com.", dns.TypeHTTPS, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{&dns.HTTPS{SVCB: dns.SVCB{Hdr: rrHdr("www.example.com.", dns.TypeHTTPS, 300), Priority: 1, Target: ".",
			Value: []dns.SVCBKeyValue{&dns.SVCBIPv4Hint{Hint: []net.IP{net.ParseIP("192.0.2.8").To4()}}}}}}
	}},
	{"TXT", "www.example.com.", dns.TypeTXT, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{&dns.TXT{Hdr: rrHdr("www.example.com.", dns.TypeTXT, 300), Txt: []string{"v=spf1 -all"}}}
	}},
	{"RRSIG", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1"), &dns.RRSIG{Hdr: rrHdr("www.example.com.", dns.TypeRRSIG, 300), TypeCovered: dns.TypeA, Algorithm: 13, SignerName: "example.com.", Signature: "AAAA"}}
	}},
	{"escaped name", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{cnameRR("www.example.com.", 60, `a\.b.example.com.`), aRR(`a\.b.example.com.`, 60, "192.0.2.1")}
	}},
	{"truncated", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Truncated = true
	}},
	{"SERVFAIL", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Rcode = dns.RcodeServerFailure
	}},
	{"extended RCODE", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		m.Rcode = dns.RcodeBadVers
	}},
	{"OPT with an option", "www.example.com.", dns.TypeA, false, func(m *dns.Msg) {
		m.Answer = []dns.RR{aRR("www.example.com.", 300, "192.0.2.1")}
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	}},
}

// packedReplies yields each case's reply packed with and without name
// compression.
func packedReplies(t testing.TB) (names []string, qnames []string, wires [][]byte, plain []bool) {
	for _, tc := range wireReplyCases {
		m := new(dns.Msg)
		m.SetQuestion(tc.qname, tc.qtype)
		m.Id = 4242
		m.Response, m.RecursionAvailable = true, true
		if tc.edit != nil {
			tc.edit(m)
		}
		for _, compress := range []bool{true, false} {
			m.Compress = compress
			b, err := m.Pack()
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			names = append(names, fmt.Sprintf("%s compress=%v", tc.name, compress))
			qnames, wires, plain = append(qnames, tc.qname), append(wires, b), append(plain, tc.plain && (compress || !longUncompressed[tc.name]))
		}
	}
	return names, qnames, wires, plain
}

// checkAnswerWire builds the answer to wire both ways and reports how they
// differ: newAnswerWire's answer must be newAnswer's, its wire unpacking
// to the same message, and rendered for a client the same. ok is whether
// newAnswerWire took the reply.
func checkAnswerWire(wire []byte, qname string) (ok bool, diff string) {
	got, ok := newAnswerWire(bytes.Clone(wire), qname)
	if !ok {
		return false, ""
	}
	var m dns.Msg
	if err := m.Unpack(wire); err != nil {
		return true, fmt.Sprintf("newAnswerWire took a reply that does not unpack: %v", err)
	}
	want, err := newAnswer(&m, qname)
	if err != nil {
		return true, fmt.Sprintf("newAnswerWire took a reply newAnswer refuses: %v", err)
	}
	gw, ww := got.wire, want.wire
	g, w := *got, *want
	g.wire, w.wire = nil, nil
	if !reflect.DeepEqual(g, w) {
		return true, fmt.Sprintf("answer\n got %+v\nwant %+v", g, w)
	}
	if d := sameMessage(gw, ww); d != "" {
		return true, "cached wire: " + d
	}
	for _, q := range []query{
		{qname: qname, qtype: m.Question[0].Qtype, qclass: dns.ClassINET, name: strings.ToUpper(qname), id: 77, rd: true, maxSize: 512},
		{qname: qname, qtype: m.Question[0].Qtype, qclass: dns.ClassINET, name: qname, id: 78, opt: true, do: true, maxSize: 1232},
	} {
		for _, age := range []uint32{0, 25} {
			gr, gerr := got.render(&q, age, 3600)
			wr, werr := want.render(&q, age, 3600)
			if (gerr == nil) != (werr == nil) {
				return true, fmt.Sprintf("render errors %v and %v", gerr, werr)
			}
			if d := sameMessage(gr, wr); d != "" {
				return true, fmt.Sprintf("rendered (age %d, %+v): %s", age, q, d)
			}
		}
	}
	return true, ""
}

// sameMessage compares two DNS messages by what they unpack to: header,
// question and every record. Name compression and the case of names
// other than the question's may differ: newAnswer's wire compresses owner
// names into the question, so rendering the client's spelling of the
// question changes theirs too, while newAnswerWire keeps the upstream's
// compression.
func sameMessage(a, b []byte) string {
	var ma, mb dns.Msg
	if err := ma.Unpack(a); err != nil {
		return fmt.Sprintf("does not unpack: %v", err)
	}
	if err := mb.Unpack(b); err != nil {
		return fmt.Sprintf("reference does not unpack: %v", err)
	}
	if ma.Question[0].Name != mb.Question[0].Name || !strings.EqualFold(ma.String(), mb.String()) {
		return fmt.Sprintf("\n got %v\nwant %v", &ma, &mb)
	}
	return ""
}

func TestAnswerWireMatchesUnpack(t *testing.T) {
	names, qnames, wires, plain := packedReplies(t)
	for i := range wires {
		t.Run(names[i], func(t *testing.T) {
			ok, diff := checkAnswerWire(wires[i], qnames[i])
			if ok != plain[i] {
				t.Fatalf("newAnswerWire took it: %v, want %v", ok, plain[i])
			}
			if diff != "" {
				t.Fatal(diff)
			}
		})
	}
}

// pointerIntoTTL is an NXDOMAIN reply to a.example. A whose SOA names its
// mailbox with a pointer into the SOA record's own TTL, whose bytes read
// as the label "00". Clamping or aging that TTL would rename the mailbox.
var pointerIntoTTL = []byte{0x10, 0x92, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0,
	1, 'a', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1,
	0xC0, 14, 0, 6, 0, 1, 2, '0', '0', 0, 0, 24,
	0xC0, 14, 0xC0, 33, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5}

// TestAnswerWireLeavesPointersIntoTTLs: such a reply is unpacked and
// packed again, so what the client reads is what was checked.
func TestAnswerWireLeavesPointersIntoTTLs(t *testing.T) {
	ok, diff := checkAnswerWire(pointerIntoTTL, "a.example.")
	if ok || diff != "" {
		t.Fatalf("newAnswerWire took it: %v %s", ok, diff)
	}
	var m dns.Msg
	if err := m.Unpack(pointerIntoTTL); err != nil {
		t.Fatal(err)
	}
	a, err := newAnswer(&m, "a.example.")
	if err != nil {
		t.Fatal(err)
	}
	out, err := a.render(&query{qname: "a.example.", name: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET, maxSize: 512}, 0, 3600)
	if err != nil {
		t.Fatal(err)
	}
	var r dns.Msg
	if err := r.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if soa, _ := r.Ns[0].(*dns.SOA); soa == nil || soa.Mbox != "00." || soa.Hdr.Ttl != 5 {
		t.Fatalf("rendered %v", &r)
	}
}

// FuzzAnswerWire: whatever reply newAnswerWire takes, newAnswer (after a
// full unpack) builds the same answer from.
func FuzzAnswerWire(f *testing.F) {
	_, qnames, wires, _ := packedReplies(f)
	for i := range wires {
		f.Add(wires[i], qnames[i])
	}
	f.Add(pointerIntoTTL, "a.example.")
	f.Fuzz(func(t *testing.T, wire []byte, qname string) {
		if _, diff := checkAnswerWire(wire, normalizeName(qname)); diff != "" {
			t.Fatal(diff)
		}
	})
}

// replyTable answers each question from wireReplyCases, by name and type.
type replyTable map[string]*dns.Msg

func (r replyTable) reply(q *dns.Msg) *dns.Msg {
	m, ok := r[fmt.Sprint(q.Question[0].Name, q.Question[0].Qtype)]
	if !ok {
		return nil
	}
	m = m.Copy()
	m.Id = q.Id
	return m
}

// msgForwarder hands replies over unpacked; wireForwarderFake packed, as
// upstream.Set does for plain replies.
type msgForwarder struct{ replyTable }
type wireForwarderFake struct{ replyTable }

func (msgForwarder) InZone(string) bool { return false }
func (msgForwarder) CloseIdle()         {}
func (f msgForwarder) Exchange(_ context.Context, q *dns.Msg) (*dns.Msg, string, error) {
	if m := f.reply(q); m != nil {
		return m, "table", nil
	}
	return nil, "", fmt.Errorf("no reply for %v", q.Question[0])
}

func (wireForwarderFake) InZone(string) bool { return false }
func (wireForwarderFake) CloseIdle()         {}
func (f wireForwarderFake) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, string, error) {
	return msgForwarder(f).Exchange(ctx, q)
}
func (f wireForwarderFake) ExchangeWire(_ context.Context, q *dns.Msg) (*dns.Msg, []byte, string, error) {
	m := f.reply(q)
	if m == nil {
		return nil, nil, "", fmt.Errorf("no reply for %v", q.Question[0])
	}
	b, err := m.Pack()
	return nil, b, "table", err
}

// TestWireAnswersDecideAsUnpacked serves every reply of wireReplyCases
// through the handler twice, once with the upstream's replies unpacked
// and once in wire form: clients must get the same answers, the firewall
// the same allowances, the query log the same decisions (rebinding
// protection included: private answers are refused the default group).
func TestWireAnswersDecideAsUnpacked(t *testing.T) {
	table := replyTable{}
	for _, tc := range wireReplyCases {
		m := new(dns.Msg)
		m.SetQuestion(tc.qname, tc.qtype)
		m.Response, m.RecursionAvailable = true, true
		if tc.edit != nil {
			tc.edit(m)
		}
		m.Compress = true
		// One reply per question: the cases sharing a question get names
		// of their own.
		name := fmt.Sprintf("c%d.%s", len(table), tc.qname)
		m.Question[0].Name = name
		for _, rr := range m.Answer {
			if equalName(rr.Header().Name, tc.qname) {
				rr.Header().Name = name
			}
		}
		table[fmt.Sprint(name, tc.qtype)] = m
	}
	type result struct {
		answers []string
		allows  string
		log     []querylog.Entry
	}
	run := func(fwd Forwarder) result {
		env := newEnv(t, Options{Upstreams: []string{"127.0.0.1:1"}, CacheSize: 1000})
		env.srv.forwarder = fwd
		var r result
		keys := make([]string, 0, len(table))
		for k := range table {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			q := table[k].Question[0]
			for range 2 { // a miss, then a hit (or another miss)
				req := question(q.Name, q.Qtype)
				req.Id = 99
				r.answers = append(r.answers, env.serve(t, "127.0.0.1", req).String())
			}
		}
		allows := env.enforcer.allowances()
		for i := range allows {
			// Each answer has its own memo: compare that there is one.
			if allows[i].Memo == nil {
				t.Errorf("allowance %d without the answer's memo", i)
			}
			allows[i].Memo = nil
		}
		r.allows = fmt.Sprint(allows)
		env.log.mu.Lock()
		r.log = slices.Clone(env.log.entries)
		env.log.mu.Unlock()
		for i := range r.log {
			r.log[i].Time, r.log[i].DurationMS = time.Time{}, 0
		}
		return r
	}
	want := run(msgForwarder{table})
	got := run(wireForwarderFake{table})
	if len(got.answers) != len(want.answers) {
		t.Fatalf("%d answers, want %d", len(got.answers), len(want.answers))
	}
	for i := range want.answers {
		if got.answers[i] != want.answers[i] {
			t.Errorf("answer %d from wire:\n%s\nunpacked:\n%s", i, got.answers[i], want.answers[i])
		}
	}
	if got.allows != want.allows {
		t.Errorf("firewall allowances from wire:\n%s\nunpacked:\n%s", got.allows, want.allows)
	}
	if len(got.log) != len(want.log) {
		t.Fatalf("%d query log entries, want %d", len(got.log), len(want.log))
	}
	for i := range want.log {
		if !reflect.DeepEqual(got.log[i], want.log[i]) {
			t.Errorf("query log entry %d from wire:\n%+v\nunpacked:\n%+v", i, got.log[i], want.log[i])
		}
	}
	if len(want.allows) < 10 || len(want.log) == 0 {
		t.Fatalf("nothing compared: allowances %q, %d log entries", want.allows, len(want.log))
	}
}
