package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// zone is the generated benchmark zone: h<N>.<origin> for N in [0, names)
// each with one A and one AAAA record derived from N.
type zone struct {
	origin     string // lower-case FQDN, e.g. "bench.test."
	originWire []byte // origin in wire format, lower case
	names      uint64
	ttl        uint32
	// Names with N >= coldFrom get coldTTL, so a resolver's cached copy
	// expires quickly and the cold set really misses the cache.
	coldFrom uint64
	coldTTL  uint32
	soa      *dns.SOA
}

func newZone(origin string, names uint64, ttl uint32, coldFrom uint64, coldTTL uint32) (*zone, error) {
	origin = strings.ToLower(dns.Fqdn(origin))
	if _, ok := dns.IsDomainName(origin); !ok || origin == "." {
		return nil, fmt.Errorf("invalid zone origin %q", origin)
	}
	wire := make([]byte, 256)
	n, err := dns.PackDomainName(origin, wire, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("zone origin %q: %w", origin, err)
	}
	z := &zone{
		origin:     origin,
		originWire: wire[:n],
		names:      names,
		ttl:        ttl,
		coldFrom:   coldFrom,
		coldTTL:    coldTTL,
	}
	z.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns." + origin,
		Mbox:    "hostmaster." + origin,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  60,
	}
	return z, nil
}

// ttlFor is the TTL of the records of name N.
func (z *zone) ttlFor(n uint64) uint32 {
	if n >= z.coldFrom {
		return z.coldTTL
	}
	return z.ttl
}

// addr4 maps N into 198.18.0.0/15 (the benchmarking range), skipping the
// first and last address of the range.
func addr4(n uint64) netip.Addr {
	const base = uint32(198)<<24 | uint32(18)<<16
	v := base + 1 + uint32(n%(1<<17-2))
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// addr6 maps N into 2001:db8::/32 (documentation range), N in the low 32 bits.
func addr6(n uint64) netip.Addr {
	b := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	binary.BigEndian.PutUint32(b[12:], uint32(n))
	return netip.AddrFrom16(b)
}

// hostIndex parses the first label of an in-zone name: "h" followed by a
// decimal number without leading zeros. ok is false for anything else.
func hostIndex(label string) (uint64, bool) {
	if len(label) < 2 || (label[0] != 'h' && label[0] != 'H') {
		return 0, false
	}
	digits := label[1:]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
