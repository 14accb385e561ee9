package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// RFC 8906 asks servers to answer what they do not implement with a clear
// RCODE. Every row is one kind of unusual query and the answer it gets.
func TestRequestValidation(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, nil, []string{"example. 60 IN SOA ns. host. 1 2 3 4 60"}))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})

	withQuestion := func(name string, qtype, qclass uint16) *dns.Msg {
		m := question(name, qtype)
		m.Question[0].Qclass = qclass
		return m
	}
	tests := []struct {
		name  string
		req   func() *dns.Msg
		rcode int
	}{
		{"plain query", func() *dns.Msg { return question("a.example.", dns.TypeA) }, dns.RcodeSuccess},
		{"unknown type", func() *dns.Msg { return question("a.example.", 65280) }, dns.RcodeSuccess},
		{"opcode notify", func() *dns.Msg { m := question("a.example.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }, dns.RcodeNotImplemented},
		{"opcode update", func() *dns.Msg { m := question("a.example.", dns.TypeSOA); m.Opcode = dns.OpcodeUpdate; return m }, dns.RcodeRefused},
		{"opcode status", func() *dns.Msg { m := question("a.example.", dns.TypeA); m.Opcode = dns.OpcodeStatus; return m }, dns.RcodeNotImplemented},
		{"no question", func() *dns.Msg { m := question("a.example.", dns.TypeA); m.Question = nil; return m }, dns.RcodeFormatError},
		{"two questions", func() *dns.Msg {
			m := question("a.example.", dns.TypeA)
			m.Question = append(m.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return m
		}, dns.RcodeFormatError},
		{"class chaos", func() *dns.Msg { return withQuestion("version.bind.", dns.TypeTXT, dns.ClassCHAOS) }, dns.RcodeRefused},
		{"class hesiod", func() *dns.Msg { return withQuestion("a.example.", dns.TypeA, dns.ClassHESIOD) }, dns.RcodeRefused},
		{"class any", func() *dns.Msg { return withQuestion("a.example.", dns.TypeA, dns.ClassANY) }, dns.RcodeNotImplemented},
		{"zone transfer", func() *dns.Msg { return question("example.", dns.TypeAXFR) }, dns.RcodeRefused},
		{"incremental transfer", func() *dns.Msg { return question("example.", dns.TypeIXFR) }, dns.RcodeRefused},
		{"meta type in question", func() *dns.Msg { return question("example.", dns.TypeOPT) }, dns.RcodeFormatError},
		{"mailb", func() *dns.Msg { return question("example.", dns.TypeMAILB) }, dns.RcodeNotImplemented},
		{"edns version 1", func() *dns.Msg {
			m := question("a.example.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, dns.RcodeBadVers},
		{"two OPT records", func() *dns.Msg {
			m := question("a.example.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.Extra = append(m.Extra, m.Extra[0])
			return m
		}, dns.RcodeFormatError},
		{"unknown EDNS option and flag", func() *dns.Msg {
			m := question("a.example.", dns.TypeA)
			m.SetEdns0(1232, false)
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65100, Data: []byte{1}})
			opt.SetZ(0x4000)
			return m
		}, dns.RcodeSuccess},
		{"Z bit set", func() *dns.Msg { m := question("a.example.", dns.TypeA); m.Zero = true; return m }, dns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			resp := env.serve(t, "127.0.0.1", req)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if !resp.Response {
				t.Error("QR not set")
			}
			if len(req.Question) == 1 && (len(resp.Question) != 1 || resp.Question[0] != req.Question[0]) {
				t.Errorf("question not echoed: %v", resp.Question)
			}
			if e := env.log.last(t); e.RCode != rcodeLabel(tt.rcode) || (tt.rcode == dns.RcodeBadVers && e.RCode != "BADVERS") {
				t.Errorf("logged rcode %q", e.RCode)
			}
			if (req.IsEdns0() != nil) != (resp.IsEdns0() != nil) {
				t.Errorf("OPT in query %v, in response %v", req.IsEdns0() != nil, resp.IsEdns0() != nil)
			}
		})
	}
}

// RFC 8482: ANY gets one small synthesized record instead of everything.
func TestQueryTypeANY(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	resp := env.serve(t, "127.0.0.1", question("a.example.", dns.TypeANY))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("got %v", resp)
	}
	hinfo, ok := resp.Answer[0].(*dns.HINFO)
	if !ok || hinfo.Cpu != "RFC8482" {
		t.Errorf("answer %v, want HINFO RFC8482", resp.Answer[0])
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("ANY went upstream %d times", n)
	}
}
