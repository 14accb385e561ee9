package upstream

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestAppendQueryMatchesPack: for every query NewQuery builds, appendQuery
// writes exactly what miekg/dns's Pack does; other shapes are left to
// Pack.
func TestAppendQueryMatchesPack(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) + "."
	names := []string{"example.com.", "WwW.Example.COM.", ".", `a\.b.example.`, `\065\000x.example.`, "xn--bcher-kva.example.", long}
	var cases []*dns.Msg
	for _, name := range names {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS} {
			for _, flags := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				q := NewQuery(name, qtype, dns.ClassINET, flags[0], flags[1])
				q.Id = 0xBEEF
				cases = append(cases, q)
			}
		}
	}
	noOPT := NewQuery("example.com.", dns.TypeA, dns.ClassINET, false, false)
	noOPT.Extra = nil
	withAD := NewQuery("example.com.", dns.TypeA, dns.ClassCHAOS, false, true)
	withAD.AuthenticatedData = true
	cases = append(cases, noOPT, withAD)
	for _, q := range cases {
		want, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendQuery([]byte("prefix"), q)
		if !ok || !bytes.Equal(got[len("prefix"):], want) || string(got[:len("prefix")]) != "prefix" {
			t.Errorf("%s %d cd=%t do=%t: appendQuery = %x (%t), Pack = %x", q.Question[0].Name, q.Question[0].Qtype,
				q.CheckingDisabled, q.IsEdns0().Do(), got, ok, want)
		}
	}

	withOption := NewQuery("example.com.", dns.TypeA, dns.ClassINET, false, false)
	withOption.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	twoQuestions := NewQuery("example.com.", dns.TypeA, dns.ClassINET, false, false)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	response := NewQuery("example.com.", dns.TypeA, dns.ClassINET, false, false)
	response.Response = true
	badName := NewQuery("a..example.", dns.TypeA, dns.ClassINET, false, false)
	for name, q := range map[string]*dns.Msg{"an EDNS option": withOption, "two questions": twoQuestions, "a response": response, "an empty label": badName} {
		if got, ok := appendQuery(nil, q); ok {
			t.Errorf("%s: appendQuery packed it (%x), want it left to Pack", name, got)
		}
	}
	q := NewQuery("example.com.", dns.TypeA, dns.ClassINET, true, true)
	buf := make([]byte, 0, 512)
	if allocs := testing.AllocsPerRun(100, func() { appendQuery(buf, q) }); allocs != 0 {
		t.Errorf("appendQuery allocates %v times, want 0", allocs)
	}
}

// TestNewQueryIsTheUsualMessage: NewQuery's single-allocation message
// packs exactly like one built with dns.Msg's own setters.
func TestNewQueryIsTheUsualMessage(t *testing.T) {
	for _, tc := range []struct {
		name          string
		qtype, qclass uint16
		cd, do        bool
	}{
		{"example.com.", dns.TypeA, dns.ClassINET, false, false},
		{"example.com.", dns.TypeAAAA, dns.ClassINET, true, false},
		{"Example.COM.", dns.TypeHTTPS, dns.ClassINET, false, true},
		{".", dns.TypeNS, dns.ClassCHAOS, true, true},
	} {
		want := new(dns.Msg)
		want.SetQuestion(tc.name, tc.qtype)
		want.Question[0].Qclass = tc.qclass
		want.Id = 0
		want.CheckingDisabled = tc.cd
		want.SetEdns0(AdvertisedUDPSize, tc.do)
		got := NewQuery(tc.name, tc.qtype, tc.qclass, tc.cd, tc.do)
		wb, err1 := want.Pack()
		gb, err2 := got.Pack()
		if err1 != nil || err2 != nil || !bytes.Equal(gb, wb) {
			t.Errorf("%s %d cd=%t do=%t: NewQuery packs %x (%v), dns.Msg %x (%v)", tc.name, tc.qtype, tc.cd, tc.do, gb, err2, wb, err1)
		}
		if got.IsEdns0() == nil || got.IsEdns0().UDPSize() != AdvertisedUDPSize || got.IsEdns0().Do() != tc.do {
			t.Errorf("%s: OPT record %v", tc.name, got.IsEdns0())
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { NewQuery("example.com.", dns.TypeA, dns.ClassINET, false, true) }); allocs != 1 {
		t.Errorf("NewQuery allocates %v times, want 1", allocs)
	}
}

// TestAcquiredQueryStartsClean: a query taken from the pool after another
// was changed and released packs exactly like a new one.
func TestAcquiredQueryStartsClean(t *testing.T) {
	for range 3 {
		used := AcquireQuery("used.example.", dns.TypeAAAA, dns.ClassCHAOS, true, true)
		used.Msg.Id, used.Msg.AuthenticatedData = 0xBEEF, true
		used.Msg.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
		used.Release()
		got := AcquireQuery("example.com.", dns.TypeA, dns.ClassINET, false, false)
		want := NewQuery("example.com.", dns.TypeA, dns.ClassINET, false, false)
		gb, err1 := got.Msg.Pack()
		wb, err2 := want.Pack()
		if err1 != nil || err2 != nil || !bytes.Equal(gb, wb) {
			t.Fatalf("reused query packs %x (%v), a new one %x (%v)", gb, err1, wb, err2)
		}
		got.Release()
	}
}
