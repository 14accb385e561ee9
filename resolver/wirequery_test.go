package resolver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// wireOf returns m on the wire, failing the test when it does not pack.
func wireOf(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWireQueryMatchesUnpack(t *testing.T) {
	withEDNS := func(m *dns.Msg, size uint16, do bool) *dns.Msg {
		m.SetEdns0(size, do)
		return m
	}
	q := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Id = 0xbeef
		return m
	}
	tests := []struct {
		name string
		msg  *dns.Msg
	}{
		{"plain", q("www.example.com.", dns.TypeA)},
		{"root", q(".", dns.TypeNS)},
		{"mixed case", q("WwW.ExAmple.COM.", dns.TypeAAAA)},
		{"underscore and hyphen", q("_sip._tcp.my-host.example.", dns.TypeSRV)},
		{"EDNS small size", withEDNS(q("a.example.", dns.TypeA), 100, false)},
		{"EDNS with DO", withEDNS(q("a.example.", dns.TypeA), 4096, true)},
		{"EDNS 1232", withEDNS(q("a.example.", dns.TypeTXT), 1232, false)},
		{"flags", func() *dns.Msg {
			m := q("a.example.", dns.TypeA)
			m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData = false, true, true
			return m
		}()},
		{"opcode status", func() *dns.Msg { m := q("a.example.", dns.TypeA); m.Opcode = dns.OpcodeStatus; return m }()},
		{"class CHAOS", func() *dns.Msg { m := q("version.bind.", dns.TypeTXT); m.Question[0].Qclass = dns.ClassCHAOS; return m }()},
		{"EDNS version 1", func() *dns.Msg {
			m := withEDNS(q("a.example.", dns.TypeA), 1232, false)
			m.Extra[0].(*dns.OPT).SetVersion(1)
			return m
		}()},
		{"EDNS option", func() *dns.Msg {
			m := withEDNS(q("a.example.", dns.TypeA), 1232, false)
			m.Extra[0].(*dns.OPT).Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
			return m
		}()},
		{"EDNS padding", func() *dns.Msg {
			m := withEDNS(q("a.example.", dns.TypeA), 1232, true)
			m.Extra[0].(*dns.OPT).Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, 37)}}
			return m
		}()},
	}
	for _, tt := range tests {
		for _, udp := range []bool{true, false} {
			t.Run(tt.name, func(t *testing.T) {
				wire := wireOf(t, tt.msg)
				got, ok := parseWireQuery(wire, udp)
				if !ok {
					t.Fatalf("parseWireQuery(%q) fell back to Unpack", tt.msg.Question[0].Name)
				}
				var m dns.Msg
				if err := m.Unpack(wire); err != nil {
					t.Fatal(err)
				}
				if want := parseQuery(&m, udp); got != want {
					t.Errorf("udp=%v:\n got %+v\nwant %+v", udp, got, want)
				}
			})
		}
	}
}

// TestParseWireQueryFallsBack lists the shapes left to dns.Msg.Unpack.
func TestParseWireQueryFallsBack(t *testing.T) {
	question := func(name string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		return wireOf(t, m)
	}
	twoQuestions := new(dns.Msg)
	twoQuestions.Question = []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "b.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
	withAnswer := new(dns.Msg)
	withAnswer.SetQuestion("a.example.", dns.TypeA)
	withAnswer.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "a.example.", Rrtype: dns.TypeA, Class: dns.ClassINET}}}
	withTSIG := new(dns.Msg)
	withTSIG.SetQuestion("a.example.", dns.TypeA)
	withTSIG.SetTsig("key.", dns.HmacSHA256, 300, 0)
	withSubnet := new(dns.Msg)
	withSubnet.SetQuestion("a.example.", dns.TypeA)
	withSubnet.SetEdns0(1232, false)
	withSubnet.Extra[0].(*dns.OPT).Option = []dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{192, 0, 2, 0}}}
	twoOPT := new(dns.Msg)
	twoOPT.SetQuestion("a.example.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])

	tests := []struct {
		name string
		wire []byte
	}{
		{"short header", []byte{1, 2, 3}},
		{"no question", wireOf(t, &dns.Msg{MsgHdr: dns.MsgHdr{Id: 1}})},
		{"two questions", wireOf(t, twoQuestions)},
		{"answer section", wireOf(t, withAnswer)},
		{"TSIG", wireOf(t, withTSIG)},
		{"two OPT", wireOf(t, twoOPT)},
		{"client subnet option", wireOf(t, withSubnet)},
		{"escaped dot in label", question(`a\.b.example.`)},
		{"space in label", question(`a\032b.example.`)},
		{"non-ASCII", question(`caf\195\169.example.`)},
		{"truncated question", question("a.example.")[:16]},
		{"trailing bytes", append(question("a.example."), 0, 0)},
		{"compressed question name", func() []byte {
			b := question("a.example.")
			return append(b[:headerLen], 0xC0, 12, 0, 1, 0, 1)
		}()},
		{"label longer than the message", func() []byte {
			b := question("a.example.")
			b[headerLen] = 60
			return b
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if q, ok := parseWireQuery(tt.wire, true); ok {
				t.Errorf("parseWireQuery accepted it as %+v", q)
			}
		})
	}
}

// FuzzParseWireQuery checks that whatever the fast parser accepts it reads
// exactly as dns.Msg.Unpack and parseQuery do.
func FuzzParseWireQuery(f *testing.F) {
	for _, name := range []string{"a.example.", "WWW.Example.com.", ".", "_x._tcp.e-x.test."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		f.Add(wireOf(f, m))
		m.SetEdns0(4096, true)
		f.Add(wireOf(f, m))
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		got, ok := parseWireQuery(wire, true)
		if !ok {
			return
		}
		var m dns.Msg
		if err := m.Unpack(wire); err != nil {
			t.Fatalf("accepted a message Unpack rejects (%v): %+v", err, got)
		}
		if want := parseQuery(&m, true); got != want {
			t.Fatalf("\n got %+v\nwant %+v", got, want)
		}
	})
}

func BenchmarkParseWireQuery(b *testing.B) {
	m := new(dns.Msg)
	m.SetQuestion("h123.bench.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	wire := wireOf(b, m)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parseWireQuery(wire, true); !ok {
			b.Fatal("fell back")
		}
	}
}

func TestPlainWireNameMatchesPackDomainName(t *testing.T) {
	for _, name := range []string{".", "a.", "www.Example.COM.", "_sip._tcp.x-y.test.", strings.Repeat("a", 63) + ".b."} {
		got, ok := plainWireName(nil, name)
		if !ok {
			t.Errorf("%q: not plain", name)
			continue
		}
		var buf [256]byte
		n, err := dns.PackDomainName(name, buf[:], 0, nil, false)
		if err != nil || !bytes.Equal(got, buf[:n]) {
			t.Errorf("%q: %v, PackDomainName gives %v (%v)", name, got, buf[:n], err)
		}
	}
	for _, name := range []string{"", "a", "a..b.", `a\.b.`, strings.Repeat("a", 64) + ".", strings.Repeat("abc.", 64)} {
		if got, ok := plainWireName(nil, name); ok {
			t.Errorf("%q: accepted as %v", name, got)
		}
	}
}
