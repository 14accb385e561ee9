package resolver

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/resolver/upstream"
)

// newAnswerWire is newAnswer for a plain upstream reply (see
// upstream.ParsePlain) still in wire form: it builds the same answer, with
// the same records, TTLs, addresses and names, by walking msg instead of
// unpacking it into a dns.Msg and packing it again. msg becomes the
// answer's wire and must not be used by the caller afterwards. It reports
// false, leaving msg untouched, for anything newAnswer would have to
// change beyond the header, the OPT record and the TTLs (address records
// off the CNAME chain, which it strips) or that is not plain; the caller
// then unpacks msg and calls newAnswer.
//
// The answer's wire keeps the upstream's name compression instead of
// miekg/dns's, so it may differ from newAnswer's in bytes and in the case
// of names the client's spelling of the question reaches through
// compression, never in what it unpacks to otherwise. miekg/dns
// compresses every name a plain reply can have, so its packing is never
// longer; answers longer than the smallest UDP buffer a client has are
// left to newAnswer, so no client gets TC here where newAnswer's would
// have fit.
func newAnswerWire(msg []byte, qname string) (*answer, bool) {
	var buf [16]upstream.WireRR
	rrs, ok := upstream.ParsePlain(msg, buf[:0])
	if !ok {
		return nil, false
	}
	flags := binary.BigEndian.Uint16(msg[offFlags:])
	rcode := int(flags & 0xF)
	if flags&flagTC != 0 || (rcode != dns.RcodeSuccess && rcode != dns.RcodeNameError) {
		return nil, false
	}
	answers := 0
	for _, rr := range rrs {
		if rr.Section == upstream.SectionAnswer {
			answers++
		}
	}
	end := len(msg)
	if n := len(rrs); n > 0 && rrs[n-1].Type == typeOPT {
		end = rrs[n-1].Start
	}
	if end+optLen > dns.MinMsgSize {
		// It might not fit a client's UDP buffer with the upstream's name
		// compression and fit with miekg/dns's, which newAnswer packs
		// with: only answers that fit any client's are taken.
		return nil, false
	}
	c, ok := followWireChain(msg, rrs[:answers], qname)
	if !ok {
		return nil, false
	}

	a := &answer{rcode: rcode}
	a.targets, a.addrs, a.overlong = c.targets, c.addrs, c.overlong
	a.push, a.local = pushable(c.addrs), anyLocal(c.addrs)
	a.effect = newEffectMemo(a.push)
	a.approvedBy = c.targets

	// answerTTLs, on the records newAnswer keeps: all but the OPT.
	a.answerTTL = math.MaxUint32
	soaTTL, hasSOA := uint32(math.MaxUint32), false
	cacheTTL := uint32(math.MaxUint32)
	for _, rr := range rrs {
		switch {
		case rr.Type == typeOPT:
			continue
		case rr.Type == dns.TypeSOA:
			minTTL := binary.BigEndian.Uint32(msg[rr.Rdata+rr.Rdlen-4:])
			soaTTL, hasSOA = min(soaTTL, rr.TTL, minTTL), true
		default:
			cacheTTL = min(cacheTTL, rr.TTL)
		}
		if rr.Section == upstream.SectionAnswer {
			a.answerTTL = min(a.answerTTL, rr.TTL)
		}
	}
	if answers == 0 {
		a.answerTTL = 0
		if hasSOA {
			a.answerTTL = soaTTL
		}
	}
	negative := rcode == dns.RcodeNameError || answers == 0
	if !negative || hasSOA {
		a.cacheTTL = min(cacheTTL, soaTTL)
		if a.cacheTTL == math.MaxUint32 {
			a.cacheTTL = 0
		}
	}
	if c.found {
		a.answerTTL = c.ttl
	}
	if a.overlong {
		a.cacheTTL = 0
	}

	// The header newAnswer packs: ID 0, QR and RA set; the OPT record,
	// always last in a plain reply, dropped.
	if end < len(msg) {
		binary.BigEndian.PutUint16(msg[offAR:], binary.BigEndian.Uint16(msg[offAR:])-1)
	}
	a.wire = msg[:end:end]
	binary.BigEndian.PutUint16(a.wire, 0)
	binary.BigEndian.PutUint16(a.wire[offFlags:], flags|flagQR|flagRA)
	if err := rewriteTTLs(a.wire, func(ttl uint32) uint32 { return min(ttl, a.answerTTL) }); err != nil {
		return nil, false // cannot happen: ParsePlain has walked it
	}
	return a, true
}

// followWireChain is followChain over the answer records of a plain reply.
// It reports false when an address record is off the chain: newAnswer
// strips those, which this path does not do.
func followWireChain(msg []byte, rrs []upstream.WireRR, qname string) (chain, bool) {
	c := chain{ttl: math.MaxUint32}
	var nb [256]byte
	c.followCNAMEs(qname, len(rrs), func(i int, owner string) (string, uint32, bool) {
		rr := rrs[i]
		if rr.Type == dns.TypeCNAME && equalWireName(upstream.AppendWireName(nb[:0], msg, rr.Start), owner) {
			return string(upstream.AppendWireName(nb[:0], msg, rr.Rdata)), rr.TTL, true
		}
		return "", 0, false
	})
	for _, rr := range rrs {
		owner := upstream.AppendWireName(nb[:0], msg, rr.Start)
		if !equalWireName(owner, qname) && !slices.ContainsFunc(c.targets, func(t string) bool { return equalWireName(owner, t) }) {
			if rr.Type == dns.TypeA || rr.Type == dns.TypeAAAA {
				return c, false
			}
			continue
		}
		c.ttl, c.found = min(c.ttl, rr.TTL), true
		switch rr.Type {
		case dns.TypeA, dns.TypeAAAA:
			c.addrs = appendIP(c.addrs, msg[rr.Rdata:rr.Rdata+rr.Rdlen])
		}
	}
	return c, true
}

// equalWireName is equalName for a name in presentation form as bytes.
func equalWireName(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if upstream.LowerASCII(a[i]) != upstream.LowerASCII(b[i]) {
			return false
		}
	}
	return true
}
