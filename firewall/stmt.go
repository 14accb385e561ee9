package firewall

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// stmt is one piece of a rule. Each knows both its nft text (as `nft list`
// prints it) and its netlink expressions, so Render and the netlink backend
// cannot drift apart rule by rule.
type stmt interface {
	text() string
	exprs(sets map[string]uint32) []expr.Any
}

// Registers: reg 1 (16 bytes) for single values; concatenations start at
// the first 32-bit register and use one word per 4 bytes.
const (
	regSingle = 1
	reg32Base = 8
)

type ctEstablished struct{}

func (ctEstablished) text() string { return "ct state established,related" }
func (ctEstablished) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: regSingle, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: regSingle, DestRegister: regSingle, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: regSingle, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

type oifName string

func (o oifName) text() string { return fmt.Sprintf("oifname %q", string(o)) }
func (o oifName) exprs(map[string]uint32) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, o)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: name},
	}
}

// nfproto restricts an inet-family rule to one address family; nft adds it
// implicitly in front of every ip/ip6 payload match.
func nfproto(is4 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV6)
	if is4 {
		p = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{p}},
	}
}

// addrField loads the source or destination address into reg.
func addrField(is4, source bool, reg uint32) expr.Any {
	offset, size := uint32(16), uint32(4)
	if source {
		offset = 12
	}
	if !is4 {
		offset, size = 24, 16
		if source {
			offset = 8
		}
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size}
}

func familyWord(is4 bool) string {
	if is4 {
		return "ip"
	}
	return "ip6"
}

// daddrIs matches one destination address.
type daddrIs netip.Addr

func (d daddrIs) text() string {
	a := netip.Addr(d)
	return fmt.Sprintf("%s daddr %s", familyWord(a.Is4()), a)
}
func (d daddrIs) exprs(map[string]uint32) []expr.Any {
	a := netip.Addr(d)
	return append(nfproto(a.Is4()),
		addrField(a.Is4(), false, regSingle),
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: a.AsSlice()},
	)
}

// l4Dport matches a transport protocol and destination port.
type l4Dport struct {
	proto uint8
	port  uint16
}

func (l l4Dport) text() string { return fmt.Sprintf("%s dport %d", protoName(l.proto), l.port) }
func (l l4Dport) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{l.proto}},
		&expr.Payload{DestRegister: regSingle, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: binaryutil.BigEndian.PutUint16(l.port)},
	}
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return fmt.Sprint(p)
}

// Fields of a set lookup key, in key order.
type keyField uint8

const (
	fieldSaddr keyField = iota
	fieldDaddr
	fieldL4Proto
	fieldDport
)

// setLookup matches when the concatenation of fields is in the named set.
type setLookup struct {
	is4    bool
	fields []keyField
	set    string
}

func (s setLookup) text() string {
	parts := make([]string, len(s.fields))
	for i, f := range s.fields {
		switch f {
		case fieldSaddr:
			parts[i] = familyWord(s.is4) + " saddr"
		case fieldDaddr:
			parts[i] = familyWord(s.is4) + " daddr"
		case fieldL4Proto:
			parts[i] = "meta l4proto"
		case fieldDport:
			parts[i] = "th dport"
		}
	}
	return strings.Join(parts, " . ") + " @" + s.set
}

func (s setLookup) exprs(sets map[string]uint32) []expr.Any {
	return append(nfproto(s.is4), s.match(sets)...)
}

// match is the lookup without the address family check in front.
func (s setLookup) match(sets map[string]uint32) []expr.Any {
	var out []expr.Any
	addrWords := uint32(1)
	if !s.is4 {
		addrWords = 4
	}
	word := uint32(0)
	reg := func() uint32 {
		if word == 0 {
			return regSingle
		}
		return reg32Base + word
	}
	for _, f := range s.fields {
		switch f {
		case fieldSaddr, fieldDaddr:
			out = append(out, addrField(s.is4, f == fieldSaddr, reg()))
			word += addrWords
		case fieldL4Proto:
			out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg()})
			word++
		case fieldDport:
			out = append(out, &expr.Payload{DestRegister: reg(), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			word++
		}
	}
	return append(out, &expr.Lookup{SourceRegister: regSingle, SetName: s.set, SetID: sets[s.set]})
}

// ICMPv6 message types IPv6 needs on a link: neighbour discovery (RFC
// 4861) and multicast listener reports (RFC 2710, RFC 3810).
const (
	icmpv6MLDReport       = 131
	icmpv6MLDDone         = 132
	icmpv6RouterSolicit   = 133
	icmpv6RouterAdvert    = 134
	icmpv6NeighborSolicit = 135
	icmpv6NeighborAdvert  = 136
	icmpv6MLD2Report      = 143
)

// icmpv6Type matches one ICMPv6 message type.
type icmpv6Type uint8

func (i icmpv6Type) text() string {
	switch i {
	case icmpv6MLDReport:
		return "icmpv6 type mld-listener-report"
	case icmpv6MLDDone:
		return "icmpv6 type mld-listener-done"
	case icmpv6RouterSolicit:
		return "icmpv6 type nd-router-solicit"
	case icmpv6RouterAdvert:
		return "icmpv6 type nd-router-advert"
	case icmpv6NeighborSolicit:
		return "icmpv6 type nd-neighbor-solicit"
	case icmpv6NeighborAdvert:
		return "icmpv6 type nd-neighbor-advert"
	case icmpv6MLD2Report:
		return "icmpv6 type mld2-listener-report"
	}
	return fmt.Sprintf("icmpv6 type %d", uint8(i))
}
func (i icmpv6Type) exprs(map[string]uint32) []expr.Any {
	return append(nfproto(false),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: regSingle, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{uint8(i)}},
	)
}

// bothIn matches when both lookups (of one address family) match; the
// family is checked once, as nft does.
type bothIn [2]setLookup

func (b bothIn) text() string { return b[0].text() + " " + b[1].text() }
func (b bothIn) exprs(sets map[string]uint32) []expr.Any {
	return append(b[0].exprs(sets), b[1].match(sets)...)
}

// labelBits is a conntrack label bitmap with one bit set, in the kernel's
// layout (an array of native-endian longs; little-endian hosts assumed, as
// nft's own encoding on them).
func labelBits(bit uint) []byte {
	b := make([]byte, 16)
	b[bit/8] = 1 << (bit % 8)
	return b
}

// ctLabelIs matches connections carrying a conntrack label bit.
type ctLabelIs uint

func (l ctLabelIs) text() string { return fmt.Sprintf("ct label %d", uint(l)) }
func (l ctLabelIs) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: regSingle, Key: expr.CtKeyLABELS},
		&expr.Bitwise{SourceRegister: regSingle, DestRegister: regSingle, Len: 16, Mask: labelBits(uint(l)), Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: regSingle, Data: make([]byte, 16)},
	}
}

// ctLabelSet adds a conntrack label bit to the packet's connection.
type ctLabelSet uint

func (l ctLabelSet) text() string { return fmt.Sprintf("ct label set %d", uint(l)) }
func (l ctLabelSet) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: regSingle, Data: labelBits(uint(l))},
		&expr.Ct{Register: regSingle, Key: expr.CtKeyLABELS, SourceRegister: true},
	}
}

// rateLog logs at most ratePerSecond packets a second with prefix: to the
// kernel log, to NFLOG group (nflog), or both. An NFLOG copy is cut to
// nflogSnaplen bytes, enough for the IP and transport headers.
type rateLog struct {
	ratePerSecond uint64
	burst         uint32 // nftDefaultBurst when 0
	prefix        string
	kernel        bool
	nflog         bool
	group         uint16
}

// nftDefaultBurst is the burst nft uses (and omits when listing).
const nftDefaultBurst = 5

// nflogSnaplen is the copy range of NFLOG events: an IPv6 header (40
// bytes) and the ports of TCP or UDP fit.
const nflogSnaplen = 64

func (l rateLog) burstOrDefault() uint32 {
	if l.burst == 0 {
		return nftDefaultBurst
	}
	return l.burst
}

func (l rateLog) text() string {
	t := fmt.Sprintf("limit rate %d/second", l.ratePerSecond)
	if b := l.burstOrDefault(); b != nftDefaultBurst {
		t += fmt.Sprintf(" burst %d packets", b)
	}
	if l.kernel {
		t += fmt.Sprintf(" log prefix %q", l.prefix)
	}
	if l.nflog {
		t += fmt.Sprintf(" log prefix %q group %d snaplen %d", l.prefix, l.group, nflogSnaplen)
	}
	return t
}
func (l rateLog) exprs(map[string]uint32) []expr.Any {
	e := []expr.Any{
		&expr.Limit{Type: expr.LimitTypePkts, Rate: l.ratePerSecond, Unit: expr.LimitTimeSecond, Burst: l.burstOrDefault()},
	}
	if l.kernel {
		e = append(e, &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(l.prefix)})
	}
	if l.nflog {
		e = append(e, &expr.Log{
			Key:     1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN,
			Data:    []byte(l.prefix),
			Group:   l.group,
			Snaplen: nflogSnaplen,
		})
	}
	return e
}

// verdict ends a rule: accept, drop, or jump to a chain.
type verdict struct {
	kind  expr.VerdictKind
	chain string
}

var (
	accept = verdict{kind: expr.VerdictAccept}
	drop   = verdict{kind: expr.VerdictDrop}
)

func jump(chain string) verdict { return verdict{kind: expr.VerdictJump, chain: chain} }

func (v verdict) text() string {
	switch v.kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictJump:
		return "jump " + v.chain
	case expr.VerdictReturn:
		return "return"
	}
	return ""
}

func (v verdict) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: v.kind, Chain: v.chain}}
}

// daddrIn matches a destination prefix, encoded as nft does: a shorter
// load for byte-aligned prefixes, a masked full load otherwise.
type daddrIn netip.Prefix

func (d daddrIn) text() string {
	p := netip.Prefix(d)
	return fmt.Sprintf("%s daddr %s", familyWord(p.Addr().Is4()), p)
}

func (d daddrIn) exprs(map[string]uint32) []expr.Any {
	p := netip.Prefix(d).Masked()
	is4 := p.Addr().Is4()
	full := addrField(is4, false, regSingle).(*expr.Payload)
	addr := p.Addr().AsSlice()
	out := nfproto(is4)
	if p.Bits()%8 == 0 {
		full.Len = uint32(p.Bits() / 8)
		return append(out, full, &expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: addr[:full.Len]})
	}
	mask := make([]byte, len(addr))
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return append(out, full,
		&expr.Bitwise{SourceRegister: regSingle, DestRegister: regSingle, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: addr},
	)
}

// ctDirection matches the direction of a packet in its connection: the
// original one (sent by the side that opened it) or the reply.
type ctDirection bool

const (
	ctOriginal ctDirection = false
	ctReply    ctDirection = true
)

func (d ctDirection) text() string {
	if d == ctReply {
		return "ct direction reply"
	}
	return "ct direction original"
}
func (d ctDirection) exprs(map[string]uint32) []expr.Any {
	v := byte(0)
	if d == ctReply {
		v = 1
	}
	return []expr.Any{
		&expr.Ct{Register: regSingle, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{v}},
	}
}

// ownSocket matches packets of sockets that belong to uid and carry mark:
// egressd's own upstream sockets. The mark alone can be set by any process
// with CAP_NET_RAW (Linux 5.17 and later); the owner is the uid of the
// process that opened the socket and cannot be forged without becoming
// that user.
type ownSocket struct {
	uid  uint32
	mark uint32
}

func (o ownSocket) text() string {
	return fmt.Sprintf("meta skuid %d meta mark 0x%08x", o.uid, o.mark)
}
func (o ownSocket) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: binaryutil.NativeEndian.PutUint32(o.uid)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: binaryutil.NativeEndian.PutUint32(o.mark)},
	}
}

// userSocket matches packets sent from a socket a process owns. Packets
// the kernel sends itself (neighbour discovery, MLD) have no owner and do
// not match: the meta skuid load fails and ends the rule. No real uid is
// 4294967295 ((uid_t)-1).
type userSocket struct{}

func (userSocket) text() string { return "meta skuid != 4294967295" }
func (userSocket) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: regSingle, Data: binaryutil.NativeEndian.PutUint32(^uint32(0))},
	}
}

// l4protoIs matches the transport protocol alone.
type l4protoIs uint8

func (l l4protoIs) text() string {
	if l == unix.IPPROTO_ICMPV6 {
		return "meta l4proto ipv6-icmp"
	}
	return fmt.Sprintf("meta l4proto %d", uint8(l))
}
func (l l4protoIs) exprs(map[string]uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{uint8(l)}},
	}
}

// linkICMPv6 matches ICMPv6 messages of types from..to (one type when
// equal) with the given hop limit, to a destination in prefix when it is
// valid: the shape of the messages IPv6 needs on a link. nft lists the
// match in this order (type, hop limit, destination).
type linkICMPv6 struct {
	from, to uint8
	hopLimit uint8
	dst      netip.Prefix
}

func (l linkICMPv6) text() string {
	typ := icmpv6Type(l.from).text()
	if l.to != l.from {
		typ = fmt.Sprintf("icmpv6 type %d-%d", l.from, l.to)
	}
	s := fmt.Sprintf("%s ip6 hoplimit %d", typ, l.hopLimit)
	if l.dst.IsValid() {
		s += " " + daddrIn(l.dst).text()
	}
	return s
}

func (l linkICMPv6) exprs(map[string]uint32) []expr.Any {
	out := append(nfproto(false),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regSingle},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: regSingle, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
	)
	if l.to == l.from {
		out = append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{l.from}})
	} else {
		out = append(out,
			&expr.Cmp{Op: expr.CmpOpGte, Register: regSingle, Data: []byte{l.from}},
			&expr.Cmp{Op: expr.CmpOpLte, Register: regSingle, Data: []byte{l.to}})
	}
	out = append(out,
		&expr.Payload{DestRegister: regSingle, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: regSingle, Data: []byte{l.hopLimit}})
	if l.dst.IsValid() {
		// daddrIn without its family check, which is already done.
		out = append(out, daddrIn(l.dst).exprs(nil)[2:]...)
	}
	return out
}
