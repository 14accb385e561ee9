package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

func TestAppendOPT(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.Answer = mustRRs(t, []string{"a.example. 60 IN A 192.0.2.1"})
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	wire = appendOPT(wire, 1232, true, 1)
	var got dns.Msg
	if err := got.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	opt := got.IsEdns0()
	if opt == nil || opt.UDPSize() != 1232 || !opt.Do() || opt.Version() != 0 || len(got.Answer) != 1 {
		t.Fatalf("got %v", &got)
	}
	if got.Rcode != dns.RcodeBadVers {
		t.Errorf("extended rcode %d, want BADVERS", got.Rcode)
	}
}

// rewriteTTLs must reject, never overrun, whatever bytes it is given.
func FuzzRewriteTTLs(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	m.Answer = mustRRs(f, []string{"a.example. 60 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1"})
	m.SetEdns0(1232, false)
	wire, err := m.Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	f.Add(wire[:len(wire)-2])
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xC0, 0x0C})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if rewriteTTLs(msg, func(ttl uint32) uint32 { return ttl / 2 }) != nil {
			return
		}
		// Whatever was accepted had its header and question intact.
		if _, err := questionEnd(msg); err != nil {
			t.Fatalf("accepted a message whose question does not parse: %v", err)
		}
	})
}
