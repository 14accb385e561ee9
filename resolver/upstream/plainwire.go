package upstream

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// A plain reply is the common answer to a query, in a shape the resolver
// can cache and check straight from the wire, without dns.Msg.Unpack
// (which allocates every record, every name and the message) and Pack:
//
//   - one question, its name uncompressed;
//   - answer records of type A, AAAA and CNAME; authority records of type
//     SOA and NS; in the additional section at most one OPT record, last,
//     with no options and no extended RCODE;
//   - every name made of letters, digits, '-', '_' and '*' (so its
//     presentation form has no escapes), compressed only with pointers
//     back to where a label or a pointer of an earlier name starts (not
//     into a header, a TTL or an address, which change or mean something
//     else once the resolver rewrites them);
//   - every record's data exactly its type's length; nothing after the
//     last record.
//
// Anything else is not plain, and is unpacked as before. Every plain reply
// unpacks (FuzzParsePlain checks it against dns.Msg.Unpack).

// Sections of a plain reply's records.
const (
	SectionAnswer = iota
	SectionAuthority
	SectionAdditional
)

// WireRR is one record of a plain reply, by offsets into the message.
type WireRR struct {
	Section int
	Start   int // the owner name's first byte: where the record begins
	Type    uint16
	TTL     uint32
	Rdata   int // offset of the record's data
	Rdlen   int
}

// maxPlainRecords is the most records a plain reply may have; more are
// unusual for an answer to one question.
const maxPlainRecords = 64

// maxPlainLen is the longest plain reply: labelStarts has a bit for each of
// its offsets. It is the UDP size asked of upstreams; longer replies come
// only over TCP, rarely, and are unpacked.
const maxPlainLen = AdvertisedUDPSize

// labelStarts marks the offsets where the labels and pointers of the names
// walked so far begin: the only offsets a plain name's pointer may lead to.
type labelStarts [(maxPlainLen + 63) / 64]uint64

func (l *labelStarts) mark(off int)     { l[off/64] |= 1 << (off % 64) }
func (l *labelStarts) has(off int) bool { return l[off/64]&(1<<(off%64)) != 0 }

// ParsePlain appends the records of msg to rrs and returns them, or
// reports false when msg is not a plain reply.
func ParsePlain(msg []byte, rrs []WireRR) ([]WireRR, bool) {
	if len(msg) < headerLen || len(msg) > maxPlainLen || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return rrs, false
	}
	var labels labelStarts
	off, ok := plainName(msg, headerLen, &labels)
	if !ok || off+4 > len(msg) {
		return rrs, false
	}
	off += 4
	counts := [3]int{int(binary.BigEndian.Uint16(msg[6:])), int(binary.BigEndian.Uint16(msg[8:])), int(binary.BigEndian.Uint16(msg[10:]))}
	if counts[0]+counts[1]+counts[2] > maxPlainRecords {
		return rrs, false
	}
	for section, n := range counts {
		for i := range n {
			start := off
			end, ok := plainName(msg, off, &labels)
			if !ok || end+10 > len(msg) {
				return rrs, false
			}
			rr := WireRR{Section: section, Start: start, Type: binary.BigEndian.Uint16(msg[end:]), TTL: binary.BigEndian.Uint32(msg[end+4:])}
			rr.Rdlen = int(binary.BigEndian.Uint16(msg[end+8:]))
			rr.Rdata = end + 10
			off = rr.Rdata + rr.Rdlen
			if off > len(msg) || !plainRdata(msg, &rr, i == n-1, &labels) {
				return rrs, false
			}
			rrs = append(rrs, rr)
		}
	}
	return rrs, off == len(msg)
}

// plainRdata reports whether rr's type may appear in its section of a
// plain reply, with data of the right shape.
func plainRdata(msg []byte, rr *WireRR, last bool, labels *labelStarts) bool {
	switch {
	case rr.Section == SectionAnswer && rr.Type == dns.TypeA:
		return rr.Rdlen == 4
	case rr.Section == SectionAnswer && rr.Type == dns.TypeAAAA:
		return rr.Rdlen == 16
	case rr.Section == SectionAnswer && rr.Type == dns.TypeCNAME,
		rr.Section == SectionAuthority && rr.Type == dns.TypeNS:
		end, ok := plainName(msg, rr.Rdata, labels)
		return ok && end == rr.Rdata+rr.Rdlen
	case rr.Section == SectionAuthority && rr.Type == dns.TypeSOA:
		end, ok := plainName(msg, rr.Rdata, labels)
		if ok {
			end, ok = plainName(msg, end, labels)
		}
		return ok && end+20 == rr.Rdata+rr.Rdlen
	case rr.Section == SectionAdditional && rr.Type == dns.TypeOPT:
		// The root name, no options, no extended RCODE (the TTL's top byte).
		return last && rr.Rdata-rr.Start == 11 && msg[rr.Start] == 0 && rr.Rdlen == 0 && rr.TTL>>24 == 0
	}
	return false
}

// plainName returns the offset just past the name at off, checking that
// it is a plain name: labels of plain bytes, at most 255 bytes in wire
// form, and pointers only back to a label or pointer labels has marked. It
// marks the labels and pointers it walks. With labels nil no pointer is
// plain.
func plainName(msg []byte, off int, labels *labelStarts) (int, bool) {
	end := -1 // past the name where it is stored, once a pointer was taken
	length := 0
	for {
		if off >= len(msg) {
			return 0, false
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				if end < 0 {
					end = off + 1
				}
				return end, length+1 <= 255
			}
			if off+1+c > len(msg) {
				return 0, false
			}
			for _, b := range msg[off+1 : off+1+c] {
				if !plainNameByte(b) {
					return 0, false
				}
			}
			length += 1 + c
			if length+1 > 255 {
				return 0, false
			}
			if labels != nil {
				labels.mark(off)
			}
			off += 1 + c
		case 0xC0:
			if labels == nil || off+2 > len(msg) {
				return 0, false
			}
			ptr := (c&0x3F)<<8 | int(msg[off+1])
			if ptr >= off || !labels.has(ptr) {
				return 0, false
			}
			labels.mark(off) // an earlier name's pointer is a name too
			if end < 0 {
				end = off + 2
			}
			off = ptr
		default:
			return 0, false
		}
	}
}

func plainNameByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '*'
}

// AppendWireName appends the presentation form of the plain name at off
// (see ParsePlain, which has checked it): labels joined by dots, with the
// trailing dot, as dns.Msg.Unpack spells it.
func AppendWireName(dst, msg []byte, off int) []byte {
	start := len(dst)
	for {
		c := int(msg[off])
		switch {
		case c == 0:
			if len(dst) == start {
				dst = append(dst, '.')
			}
			return dst
		case c&0xC0 == 0xC0:
			off = (c&0x3F)<<8 | int(msg[off+1])
		default:
			dst = append(dst, msg[off+1:off+1+c]...)
			dst = append(dst, '.')
			off += 1 + c
		}
	}
}

// plainAnswers reports whether msg, the datagram read for q, is a plain
// reply that answers q (see answers) with an RCODE the resolver caches
// (NOERROR or NXDOMAIN) and without TC: one the resolver takes from the
// wire. Anything else is unpacked as before.
func plainAnswers(msg []byte, q *dns.Msg) bool {
	if len(msg) < headerLen || len(q.Question) != 1 {
		return false
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	rcode := flags & 0xF
	if flags&flagQR == 0 || flags&flagTC != 0 || (rcode != dns.RcodeSuccess && rcode != dns.RcodeNameError) ||
		binary.BigEndian.Uint16(msg) != q.Id {
		return false
	}
	var rrs [16]WireRR
	if _, ok := ParsePlain(msg, rrs[:0]); !ok {
		return false
	}
	var buf [256]byte
	name := AppendWireName(buf[:0], msg, headerLen)
	end, _ := plainName(msg, headerLen, nil)
	qq := q.Question[0]
	return equalWireName(name, qq.Name) &&
		binary.BigEndian.Uint16(msg[end:]) == qq.Qtype && binary.BigEndian.Uint16(msg[end+2:]) == qq.Qclass
}

// equalWireName is EqualName for a name appended by AppendWireName.
func equalWireName(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if LowerASCII(a[i]) != LowerASCII(b[i]) {
			return false
		}
	}
	return true
}

const (
	headerLen = 12
	flagQR    = 1 << 15
	flagTC    = 1 << 9
)
