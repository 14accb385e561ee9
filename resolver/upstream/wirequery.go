package upstream

import (
	"encoding/binary"
	"sync"

	"github.com/miekg/dns"
)

// queryBuffers holds the buffers plain upstreams pack queries into: a
// query is at most a header, a 255-byte name, its type and class, and an
// OPT record.
var queryBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendQuery appends the wire form of q to dst, as q.Pack would, when q
// has the shape NewQuery builds: one question, no records but an OPT
// without options, no flags but RD, AD and CD. Otherwise, or for a name
// that does not pack, it reports false and the caller packs q itself.
// It does not allocate; q.Pack allocates a buffer and a compression map.
func appendQuery(dst []byte, q *dns.Msg) ([]byte, bool) {
	if len(q.Question) != 1 || len(q.Answer) != 0 || len(q.Ns) != 0 || len(q.Extra) > 1 ||
		q.Response || q.Opcode != dns.OpcodeQuery || q.Authoritative || q.Truncated ||
		q.RecursionAvailable || q.Zero || q.Rcode != dns.RcodeSuccess {
		return dst, false
	}
	var opt *dns.OPT
	if len(q.Extra) == 1 {
		o, ok := q.Extra[0].(*dns.OPT)
		if !ok || o.Hdr.Name != "." || o.Hdr.Rrtype != dns.TypeOPT || len(o.Option) != 0 {
			return dst, false
		}
		opt = o
	}
	var flags uint16
	if q.RecursionDesired {
		flags |= 1 << 8
	}
	if q.AuthenticatedData {
		flags |= 1 << 5
	}
	if q.CheckingDisabled {
		flags |= 1 << 4
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, q.Id)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, 1) // QDCOUNT
	dst = binary.BigEndian.AppendUint16(dst, 0) // ANCOUNT
	dst = binary.BigEndian.AppendUint16(dst, 0) // NSCOUNT
	arcount := uint16(0)
	if opt != nil {
		arcount = 1
	}
	dst = binary.BigEndian.AppendUint16(dst, arcount)
	question := q.Question[0]
	// Room for the longest name; PackDomainName writes into it.
	off := len(dst)
	dst = append(dst, make([]byte, 256)...)
	end, err := dns.PackDomainName(question.Name, dst, off, nil, false)
	if err != nil {
		return dst[:start], false
	}
	dst = dst[:end]
	dst = binary.BigEndian.AppendUint16(dst, question.Qtype)
	dst = binary.BigEndian.AppendUint16(dst, question.Qclass)
	if opt != nil {
		dst = append(dst, 0) // the root name
		dst = binary.BigEndian.AppendUint16(dst, dns.TypeOPT)
		dst = binary.BigEndian.AppendUint16(dst, opt.Hdr.Class)
		dst = binary.BigEndian.AppendUint32(dst, opt.Hdr.Ttl)
		dst = binary.BigEndian.AppendUint16(dst, 0) // RDLENGTH: no options
	}
	return dst, true
}
