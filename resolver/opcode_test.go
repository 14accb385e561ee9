package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// Every response carries the request's opcode (RFC 1035 section 4.1.1:
// "copied into the response"); dig discards a reply whose opcode differs
// and nsupdate fails with "invalid OPCODE in response to UPDATE request".
// UPDATE is refused as unbound refuses what it does not serve; other
// opcodes egressd does not implement get NOTIMP (RFC 8906). The table runs
// through the handler, the UDP reader (wire fast path) and TCP, and none of
// these reach the upstream.
func TestOpcodeEchoed(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	addr := env.start(t)

	tests := []struct {
		name   string
		opcode int
		qtype  uint16
		rcode  int
	}{
		{"iquery", dns.OpcodeIQuery, dns.TypeA, dns.RcodeNotImplemented},
		{"status", dns.OpcodeStatus, dns.TypeA, dns.RcodeNotImplemented},
		{"unassigned 3", 3, dns.TypeA, dns.RcodeNotImplemented},
		{"notify", dns.OpcodeNotify, dns.TypeSOA, dns.RcodeNotImplemented},
		{"update", dns.OpcodeUpdate, dns.TypeSOA, dns.RcodeRefused},
		{"dso 6", 6, dns.TypeA, dns.RcodeNotImplemented},
		{"opcode 15", 15, dns.TypeA, dns.RcodeNotImplemented},
	}
	paths := []struct {
		name string
		send func(t *testing.T, m *dns.Msg) *dns.Msg
	}{
		{"handler", func(t *testing.T, m *dns.Msg) *dns.Msg { return env.serve(t, "127.0.0.1", m) }},
		{"udp", func(t *testing.T, m *dns.Msg) *dns.Msg { return exchange(t, "udp", addr, m) }},
		{"tcp", func(t *testing.T, m *dns.Msg) *dns.Msg { return exchange(t, "tcp", addr, m) }},
	}
	for _, p := range paths {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				req := question("a.example.", tt.qtype)
				req.Opcode = tt.opcode
				if tt.opcode != dns.OpcodeQuery {
					req.RecursionDesired = false
				}
				resp := p.send(t, req)
				if resp.Opcode != tt.opcode {
					t.Errorf("opcode %d, want %d echoed", resp.Opcode, tt.opcode)
				}
				if resp.Rcode != tt.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if !resp.Response {
					t.Error("QR not set")
				}
				if resp.RecursionAvailable {
					t.Error("RA set in an answer to a request that is not a query")
				}
				if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
					t.Errorf("question (zone section) not echoed: %v", resp.Question)
				}
				if len(resp.Answer)+len(resp.Ns) != 0 {
					t.Errorf("records in the answer: %v %v", resp.Answer, resp.Ns)
				}
			})
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("%d requests went upstream", n)
	}
	// A plain query on the same server still works and keeps opcode 0, RA.
	resp := exchange(t, "udp", addr, question("a.example.", dns.TypeA))
	if resp.Opcode != dns.OpcodeQuery || resp.Rcode != dns.RcodeSuccess || !resp.RecursionAvailable {
		t.Errorf("plain query: opcode %d rcode %s RA %v", resp.Opcode, dns.RcodeToString[resp.Rcode], resp.RecursionAvailable)
	}
}
