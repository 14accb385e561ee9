package resolver

import (
	"encoding/binary"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver/upstream"
)

// advertisedUDPSize is the EDNS payload size egressd offers clients and
// asks of upstreams: 1232 bytes avoids IP fragmentation on common paths
// (DNS flag day 2020).
const advertisedUDPSize = upstream.AdvertisedUDPSize

// query is what the request path needs from a client's message.
type query struct {
	id         uint16
	opcode     int
	questions  int // how many the message held; only one is served
	rd, cd, ad bool
	name       string // question name as the client spelled it
	qname      string // normalized: lower case, trailing dot
	qtype      uint16
	qclass     uint16

	opt         bool // the client sent an OPT record
	optCount    int
	do          bool
	ednsVersion uint8
	// maxSize is the largest response the client can receive: 512 bytes
	// over UDP without EDNS, its advertised size (up to ours) with it, and
	// 64 KiB over TCP.
	maxSize int

	// transport is how the query came (see transportOf).
	transport transport
	// slot is the query's in-flight slot (see Server.takeSlot).
	slot slotState
	// cfg is the configuration the query was admitted under; it follows
	// the query through every step (see Server.Configure).
	cfg *current
}

func parseQuery(req *dns.Msg, udp bool) query {
	q := query{
		id:        req.Id,
		opcode:    req.Opcode,
		questions: len(req.Question),
		rd:        req.RecursionDesired,
		cd:        req.CheckingDisabled,
		ad:        req.AuthenticatedData,
	}
	if len(req.Question) == 1 {
		qq := req.Question[0]
		q.name, q.qname, q.qtype, q.qclass = qq.Name, normalizeName(qq.Name), qq.Qtype, qq.Qclass
	}
	q.maxSize = dns.MaxMsgSize
	if udp {
		q.maxSize = dns.MinMsgSize
	}
	for _, rr := range req.Extra {
		opt, ok := rr.(*dns.OPT)
		if !ok {
			continue
		}
		q.optCount++
		if q.optCount > 1 {
			continue
		}
		q.opt, q.do, q.ednsVersion = true, opt.Do(), opt.Version()
		if udp {
			q.maxSize = min(max(int(opt.UDPSize()), dns.MinMsgSize), advertisedUDPSize)
		}
	}
	return q
}

// patchQuestion writes the client's spelling of the question name into msg
// (0x20 case randomization must survive), but only when it is the same
// name as the one msg holds.
func (q *query) patchQuestion(msg []byte) {
	if q.name == "" || len(msg) < headerLen || binary.BigEndian.Uint16(msg[offQD:]) != 1 {
		return
	}
	end, err := skipName(msg, headerLen)
	if err != nil {
		return
	}
	var buf [256]byte
	spelled, ok := plainWireName(buf[:0], q.name)
	if !ok {
		n, err := dns.PackDomainName(q.name, buf[:], 0, nil, false)
		if err != nil {
			return
		}
		spelled = buf[:n]
	}
	if len(spelled) != end-headerLen || !upstream.EqualName(spelled, msg[headerLen:end]) {
		return
	}
	copy(msg[headerLen:end], spelled)
}

// plainWireName appends the wire form of a fully qualified name written
// without escapes, or reports false for anything else (escapes, empty
// labels, labels over 63 bytes, a missing trailing dot).
func plainWireName(dst []byte, name string) ([]byte, bool) {
	if name == "." {
		return append(dst, 0), true
	}
	if len(name) > maxWireName-1 || len(name) == 0 || name[len(name)-1] != '.' {
		return nil, false
	}
	start := 0
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			return nil, false
		case '.':
			if n := i - start; n == 0 || n > 63 {
				return nil, false
			}
			dst = append(dst, byte(i-start))
			dst = append(dst, name[start:i]...)
			start = i + 1
		}
	}
	return append(dst, 0), true
}

// normalizeName is the form policy and the cache key on.
func normalizeName(name string) string { return policy.NormalizeName(name) }

// equalName compares DNS names in presentation form, ignoring ASCII case.
func equalName(a, b string) bool { return upstream.EqualName(a, b) }
