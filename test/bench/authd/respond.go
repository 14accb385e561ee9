package main

import (
	"encoding/binary"
	"strings"

	"github.com/miekg/dns"
)

const (
	headerLen = 12
	// ednsSize is the UDP payload size advertised in replies (DNS flag day 2020).
	ednsSize = 1232
	// maxDigits keeps the parsed host index within uint64.
	maxDigits = 19
)

// respond appends the reply to the wire-format query q to out and returns
// it. nil means the query is not worth an answer (unparseable or a reply).
func (z *zone) respond(q, out []byte) []byte {
	if r, ok := z.fastAnswer(q, out); ok {
		return r
	}
	return z.slowAnswer(q, out)
}

// fastAnswer handles the benchmark's hot path without allocating: a plain
// A or AAAA query for an existing h<N> name, optionally with a version 0
// OPT record. ok is false for anything else, which slowAnswer then handles.
func (z *zone) fastAnswer(q, out []byte) (reply []byte, ok bool) {
	if len(q) < headerLen+1 {
		return nil, false
	}
	// QR=0 and opcode QUERY; one question, no answer or authority records.
	if q[2]&0xf8 != 0 || binary.BigEndian.Uint16(q[4:]) != 1 || binary.BigEndian.Uint32(q[6:]) != 0 {
		return nil, false
	}
	additional := binary.BigEndian.Uint16(q[10:])
	if additional > 1 {
		return nil, false
	}
	off := headerLen
	labelLen := int(q[off])
	if labelLen < 2 || labelLen > 63 || off+1+labelLen > len(q) {
		return nil, false
	}
	n, ok := hostIndexBytes(q[off+1 : off+1+labelLen])
	if !ok || n >= z.names {
		return nil, false
	}
	off += 1 + labelLen
	nameEnd := off + len(z.originWire)
	if nameEnd+4 > len(q) || !equalFoldASCII(q[off:nameEnd], z.originWire) {
		return nil, false
	}
	qtype := binary.BigEndian.Uint16(q[nameEnd:])
	qclass := binary.BigEndian.Uint16(q[nameEnd+2:])
	questionEnd := nameEnd + 4
	if qclass != dns.ClassINET || (qtype != dns.TypeA && qtype != dns.TypeAAAA) {
		return nil, false
	}
	edns := false
	if additional == 1 {
		// A bare OPT: root owner, type OPT, version 0 (anything else,
		// such as TSIG or a newer EDNS version, takes the slow path).
		if questionEnd+11 > len(q) || q[questionEnd] != 0 ||
			binary.BigEndian.Uint16(q[questionEnd+1:]) != dns.TypeOPT || q[questionEnd+6] != 0 {
			return nil, false
		}
		edns = true
	}

	out = append(out, q[:questionEnd]...)
	out[2] = 0x84 | q[2]&0x01 // QR, AA, copy RD
	out[3] = 0                // RA=0, RCODE NOERROR
	binary.BigEndian.PutUint16(out[6:], 1)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	out = append(out, 0xc0, headerLen) // compression pointer to the question name
	out = binary.BigEndian.AppendUint16(out, qtype)
	out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
	out = binary.BigEndian.AppendUint32(out, z.ttlFor(n))
	if qtype == dns.TypeA {
		a := addr4(n).As4()
		out = binary.BigEndian.AppendUint16(out, 4)
		out = append(out, a[:]...)
	} else {
		a := addr6(n).As16()
		out = binary.BigEndian.AppendUint16(out, 16)
		out = append(out, a[:]...)
	}
	if edns {
		binary.BigEndian.PutUint16(out[10:], 1)
		out = append(out, 0) // root owner
		out = binary.BigEndian.AppendUint16(out, dns.TypeOPT)
		out = binary.BigEndian.AppendUint16(out, ednsSize)
		out = append(out, 0, 0, 0, 0, 0, 0) // ext-rcode, version, flags, rdlen
	}
	return out, true
}

// slowAnswer covers everything the fast path does not: NXDOMAIN, NODATA,
// the SOA, other classes and opcodes, malformed but parseable queries.
func (z *zone) slowAnswer(q, out []byte) []byte {
	req := new(dns.Msg)
	if err := req.Unpack(q); err != nil || req.Response {
		return nil
	}
	resp := z.answerMsg(req)
	wire, err := resp.PackBuffer(out)
	if err != nil {
		return nil
	}
	return wire
}

// answerMsg builds the authoritative reply to req.
func (z *zone) answerMsg(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		return resp.SetRcode(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return resp.SetRcode(req, dns.RcodeFormatError)
	}
	resp.SetReply(req)
	resp.RecursionAvailable = false
	if opt := req.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			resp.SetRcode(req, dns.RcodeBadVers)
		}
		resp.SetEdns0(ednsSize, false)
		if opt.Version() != 0 {
			return resp
		}
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != dns.ClassINET || !dns.IsSubDomain(z.origin, name) {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	resp.Authoritative = true
	if name == z.origin {
		if q.Qtype == dns.TypeSOA {
			resp.Answer = append(resp.Answer, z.soa)
		} else {
			resp.Ns = append(resp.Ns, z.soa)
		}
		return resp
	}
	label, rest, _ := strings.Cut(name, ".")
	n, ok := hostIndex(label)
	if !ok || rest != z.origin || n >= z.names {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = append(resp.Ns, z.soa)
		return resp
	}
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: z.ttlFor(n)}
	switch q.Qtype {
	case dns.TypeA:
		resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: addr4(n).AsSlice()})
	case dns.TypeAAAA:
		resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: addr6(n).AsSlice()})
	default:
		resp.Ns = append(resp.Ns, z.soa)
	}
	return resp
}

// hostIndexBytes is hostIndex on a wire label, without allocating.
func hostIndexBytes(label []byte) (uint64, bool) {
	if len(label) < 2 || len(label) > 1+maxDigits || (label[0] != 'h' && label[0] != 'H') {
		return 0, false
	}
	digits := label[1:]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// equalFoldASCII compares wire-format names ignoring ASCII case. Length
// octets are below 64 and so never change under folding.
func equalFoldASCII(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
