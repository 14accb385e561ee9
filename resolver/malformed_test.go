package resolver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dropped is the expected result of a message that gets no reply.
const dropped = -1

// silenceWait is how long a test waits to be sure no reply comes.
const silenceWait = 300 * time.Millisecond

// rawQuery packs m with ID 0x1234, for tests that then damage the bytes.
func rawQuery(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	m.Id = 0x1234
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// header is a 12-byte DNS header with ID 0x1234, RD and the given counts.
func header(flags uint16, qd, an, ns, ar uint16) []byte {
	h := make([]byte, headerLen)
	binary.BigEndian.PutUint16(h, 0x1234)
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint16(h[4:], qd)
	binary.BigEndian.PutUint16(h[6:], an)
	binary.BigEndian.PutUint16(h[8:], ns)
	binary.BigEndian.PutUint16(h[10:], ar)
	return h
}

// sendRaw writes msg to addr over network (length-prefixed over TCP) from
// local (nil for any) and returns the reply's RCODE, or dropped when none
// arrives within silenceWait or the connection is closed.
func sendRaw(t *testing.T, network, addr string, local net.Addr, msg []byte) int {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: time.Second}
	conn, err := d.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(silenceWait))
	out := msg
	if network == "tcp" {
		out = binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
		out = append(out, msg...)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	reply, err := readReply(conn, network)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return dropped
		}
		t.Fatalf("reading reply: %v", err)
	}
	var m dns.Msg
	if err := m.Unpack(reply); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if m.Id != 0x1234 {
		t.Fatalf("reply ID %#x, want 0x1234", m.Id)
	}
	if !m.Response {
		t.Fatal("reply without QR")
	}
	return m.Rcode
}

func readReply(conn net.Conn, network string) ([]byte, error) {
	if network == "udp" {
		buf := make([]byte, dns.MaxMsgSize)
		n, err := conn.Read(buf)
		return buf[:n], err
	}
	var size [2]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(size[:]))
	_, err := io.ReadFull(conn, buf)
	return buf, err
}

// stillServes checks that a normal query is answered after each case.
func stillServes(t *testing.T, network, addr string) {
	t.Helper()
	resp := exchange(t, network, addr, question("a.example.", dns.TypeA))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("valid query after the case: %v", resp)
	}
}

// rcodeName prints expected and received results.
func rcodeName(rc int) string {
	if rc == dropped {
		return "no reply"
	}
	return rcodeLabel(rc)
}

// TestMalformedQueriesOnTheWire sends damaged and unusual messages over
// real sockets. RFC 8906: what a server does not implement gets NOTIMP or
// REFUSED, what does not parse FORMERR, and responses (QR=1) nothing, so
// two servers cannot be made to talk to each other forever.
func TestMalformedQueriesOnTheWire(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}})
	addr := env.start(t)

	q := rawQuery(t, question("a.example.", dns.TypeA))
	questionOnly := q[headerLen:]
	twoQuestions := question("a.example.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	unknownClass := question("a.example.", dns.TypeA)
	unknownClass.Question[0].Qclass = 0x1234
	unknownOpcode := question("a.example.", dns.TypeA)
	unknownOpcode.Opcode = 3 // unassigned
	badVersion := question("a.example.", dns.TypeA)
	badVersion.SetEdns0(1232, false)
	badVersion.IsEdns0().SetVersion(1)
	twoOPT := question("a.example.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	hugeEDNS := question("a.example.", dns.TypeA)
	hugeEDNS.SetEdns0(65535, false)

	tests := []struct {
		name string
		msg  []byte
		want int
	}{
		{"valid", q, dns.RcodeSuccess},
		{"header cut to 5 bytes", q[:5], dropped},
		{"header only, question promised", q[:headerLen], dns.RcodeFormatError},
		{"question cut short", q[:len(q)-3], dns.RcodeFormatError},
		{"label length beyond the message", append(header(flagRD, 1, 0, 0, 0), 0x3f, 'a', 'b'), dns.RcodeFormatError},
		{"reserved label type 0x80", append(header(flagRD, 1, 0, 0, 0), 0x81, 'a', 0, 0, 1, 0, 1), dns.RcodeFormatError},
		{"compression pointer to itself", append(header(flagRD, 1, 0, 0, 0), 0xc0, 0x0c, 0, 1, 0, 1), dns.RcodeFormatError},
		{"compression pointers in a loop", append(header(flagRD, 1, 0, 0, 0), 1, 'a', 0xc0, 0x0c, 0, 1, 0, 1), dns.RcodeFormatError},
		{"QDCOUNT 0", header(flagRD, 0, 0, 0, 0), dns.RcodeFormatError},
		{"QDCOUNT 2", rawQuery(t, twoQuestions), dns.RcodeFormatError},
		{"QDCOUNT 2 with one question", append(header(flagRD, 2, 0, 0, 0), questionOnly...), dns.RcodeFormatError},
		// miekg/dns reads sections that end early as empty; the query
		// itself is sound, so it is answered.
		{"ARCOUNT 1 without the record", append(header(flagRD, 1, 0, 0, 1), questionOnly...), dns.RcodeSuccess},
		{"unknown class", rawQuery(t, unknownClass), dns.RcodeRefused},
		{"unknown opcode", rawQuery(t, unknownOpcode), dns.RcodeNotImplemented},
		{"EDNS version 1", rawQuery(t, badVersion), dns.RcodeBadVers},
		{"two OPT records", rawQuery(t, twoOPT), dns.RcodeFormatError},
		{"EDNS size 65535", rawQuery(t, hugeEDNS), dns.RcodeSuccess},
		{"response sent as a query", append(header(flagQR|flagRD, 1, 0, 0, 0), questionOnly...), dropped},
		{"trailing garbage", append(append([]byte(nil), q...), 0xde, 0xad), dns.RcodeSuccess},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				if got := sendRaw(t, network, addr, nil, tt.msg); got != tt.want {
					t.Errorf("got %s, want %s", rcodeName(got), rcodeName(tt.want))
				}
				stillServes(t, network, addr)
			})
		}
	}
}

// Clients outside the ACL get REFUSED for a query and nothing at all for a
// message that does not parse: egressd must not be a FORMERR reflector.
func TestOutsidersGetNoFormErr(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, Settings: Settings{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}})
	addr := env.start(t)

	q := rawQuery(t, question("a.example.", dns.TypeA))
	garbage := append(header(flagRD, 1, 0, 0, 0), 0xc0, 0x0c, 0, 1, 0, 1)
	tests := []struct {
		name   string
		source string
		msg    []byte
		want   int
	}{
		{"client, query", "127.0.0.1", q, dns.RcodeSuccess},
		{"client, garbage", "127.0.0.1", garbage, dns.RcodeFormatError},
		{"outsider, query", "127.0.0.2", q, dns.RcodeRefused},
		{"outsider, garbage", "127.0.0.2", garbage, dropped},
		{"outsider, bad opcode", "127.0.0.2", append(header(3<<11, 1, 0, 0, 0), q[headerLen:]...), dns.RcodeRefused},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				var local net.Addr = &net.UDPAddr{IP: net.ParseIP(tt.source)}
				if network == "tcp" {
					local = &net.TCPAddr{IP: net.ParseIP(tt.source)}
				}
				if got := sendRaw(t, network, addr, local, tt.msg); got != tt.want {
					t.Errorf("got %s, want %s", rcodeName(got), rcodeName(tt.want))
				}
			})
		}
	}
	if n := up.queries.Load(); n != 2 {
		t.Errorf("upstream saw %d queries, want 2 (the client's, once per transport)", n)
	}
}

// TCP streams that are not DNS: the connection is closed, the server goes
// on serving others.
func TestTCPGarbage(t *testing.T) {
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, TCPIdleTimeout: 200 * time.Millisecond})
	addr := env.start(t)

	tests := []struct {
		name   string
		stream []byte
		// within is how soon the server must close the connection.
		within time.Duration
	}{
		// Not a DNS header; the next "length" is never satisfied either.
		{"random bytes", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), tcpReadTimeout + time.Second},
		// A length prefix promising more than ever arrives: closed once
		// the read times out.
		{"length beyond the data", append([]byte{0, 100}, make([]byte, 20)...), tcpReadTimeout + time.Second},
		// A short message gets no reply; the connection then idles out.
		{"short message then idle", []byte{0, 4, 1, 2, 3, 4}, tcpReadTimeout + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := conn.Write(tt.stream); err != nil {
				t.Fatal(err)
			}
			stillServes(t, "tcp", addr)
			stillServes(t, "udp", addr)
			conn.SetReadDeadline(time.Now().Add(tt.within))
			n, err := conn.Read(make([]byte, 512))
			if n > 0 {
				t.Fatalf("server answered %d bytes", n)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %v", time.Since(start))
			}
		})
	}
}
