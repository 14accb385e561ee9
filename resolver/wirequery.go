package resolver

import (
	"encoding/binary"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/resolver/upstream"
)

// Offsets of the header counts not in wire.go.
const (
	offAN = 6
	offNS = 8
)

// maxWireName is the longest name on the wire (RFC 1035 section 2.3.4).
const maxWireName = 255

// parseWireQuery reads a query straight from the wire, as parseQuery reads
// it from an unpacked message, for the shape nearly every query has: one
// question whose name needs no escaping, nothing in the answer and
// authority sections, and at most an OPT record. It reports false for
// anything else, which then goes through dns.Msg.Unpack; unpacking costs
// more than the rest of a cache hit.
func parseWireQuery(m []byte, udp bool) (query, bool) {
	var q query
	if len(m) < headerLen ||
		binary.BigEndian.Uint16(m[offQD:]) != 1 ||
		binary.BigEndian.Uint16(m[offAN:]) != 0 ||
		binary.BigEndian.Uint16(m[offNS:]) != 0 {
		return q, false
	}
	additional := binary.BigEndian.Uint16(m[offAR:])
	if additional > 1 {
		return q, false
	}
	flags := binary.BigEndian.Uint16(m[offFlags:])
	q.id = binary.BigEndian.Uint16(m)
	q.opcode = int(flags>>11) & 0xF
	q.questions = 1
	q.rd, q.ad, q.cd = flags&flagRD != 0, flags&flagAD != 0, flags&flagCD != 0

	nameEnd, ok := plainNameEnd(m, headerLen)
	if !ok || nameEnd+4 > len(m) {
		return q, false
	}
	q.name, q.qname = wireNameStrings(m[headerLen:nameEnd])
	q.qtype = binary.BigEndian.Uint16(m[nameEnd:])
	q.qclass = binary.BigEndian.Uint16(m[nameEnd+2:])
	off := nameEnd + 4

	q.maxSize = dns.MaxMsgSize
	if udp {
		q.maxSize = dns.MinMsgSize
	}
	if additional == 1 {
		// Only an OPT record with the root as owner; anything else (TSIG,
		// a stray record) takes the general path.
		if off+1+rrFixedLen > len(m) || m[off] != 0 || binary.BigEndian.Uint16(m[off+1:]) != typeOPT {
			return q, false
		}
		size := binary.BigEndian.Uint16(m[off+3:])
		version := m[off+6]
		do := m[off+7]&0x80 != 0
		rdata := m[off+1+rrFixedLen:]
		if int(binary.BigEndian.Uint16(m[off+9:])) != len(rdata) || !plainOptions(rdata) {
			return q, false
		}
		q.opt, q.optCount, q.do, q.ednsVersion = true, 1, do, version
		if udp {
			q.maxSize = min(max(int(size), dns.MinMsgSize), advertisedUDPSize)
		}
	} else if off != len(m) {
		return q, false
	}
	return q, true
}

// plainOptions reports whether an OPT record's data holds only options
// that any bytes make valid (cookies and padding, which clients send
// routinely) and well-formed lengths. Options egressd might have to read
// or reject, such as client subnet, take the general path.
func plainOptions(rdata []byte) bool {
	for len(rdata) > 0 {
		if len(rdata) < 4 {
			return false
		}
		code := binary.BigEndian.Uint16(rdata)
		n := int(binary.BigEndian.Uint16(rdata[2:]))
		if (code != dns.EDNS0COOKIE && code != dns.EDNS0PADDING) || 4+n > len(rdata) {
			return false
		}
		rdata = rdata[4+n:]
	}
	return true
}

// plainNameEnd returns the offset just past the uncompressed name at off
// when its labels hold only characters that presentation form writes as
// they are, so the name can be copied without escaping.
func plainNameEnd(m []byte, off int) (int, bool) {
	start := off
	for {
		if off >= len(m) {
			return 0, false
		}
		n := int(m[off])
		if n == 0 {
			return off + 1, off+1-start <= maxWireName
		}
		if n > 63 || off+1+n > len(m) {
			return 0, false
		}
		for _, c := range m[off+1 : off+1+n] {
			if !plainNameByte(c) {
				return 0, false
			}
		}
		off += 1 + n
	}
}

// plainNameByte reports whether c stands for itself in a name's
// presentation form: printable ASCII other than the characters that
// miekg/dns escapes.
func plainNameByte(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '.', '\\', '"', '(', ')', ';', '@', '$', '\'':
		return false
	}
	return true
}

// wireNameStrings turns a plain wire name into its presentation form as
// the client spelled it and in lower case; they share one string when the
// client used no upper case.
func wireNameStrings(wire []byte) (spelled, lower string) {
	if len(wire) == 1 {
		return ".", "."
	}
	var buf [maxWireName]byte
	b := buf[:0]
	upper := false
	for off := 0; wire[off] != 0; off += 1 + int(wire[off]) {
		label := wire[off+1 : off+1+int(wire[off])]
		for _, c := range label {
			upper = upper || ('A' <= c && c <= 'Z')
		}
		b = append(b, label...)
		b = append(b, '.')
	}
	spelled = string(b)
	if !upper {
		return spelled, spelled
	}
	for i, c := range b {
		b[i] = upstream.LowerASCII(c)
	}
	return spelled, string(b)
}
