package firewall

import (
	"net/netip"
	"time"

	"github.com/egressd/egressd/policy"
)

// LiveElement is one approval a set element stands for: destination Dst
// for Group (and with client scope only for Client) on Ports (empty: any
// port) until Expiry. Name is the query name the element was last added
// for, from its comment; empty when unknown (no comment, or a name too
// long for one).
type LiveElement struct {
	Group  string
	Client netip.Addr
	Dst    netip.Addr
	Ports  []policy.PortRange
	Expiry time.Time
	Name   string
}

// maxCommentName is the longest query name kept in an element's comment:
// the kernel holds at most 256 bytes of element user data, and a comment
// is stored with a type, a length and a NUL.
const maxCommentName = 250

// elementComment is the comment of an element added for name: the name,
// or nothing when it does not fit.
func elementComment(name string) string {
	if len(name) > maxCommentName {
		return ""
	}
	return name
}

// Inherited lists the live elements the backend carried over at start
// from a table an earlier egressd left, with the deadlines the kernel
// reported. It is empty when there was none.
func (n *NFT) Inherited() []LiveElement {
	return append([]LiveElement(nil), n.inherited...)
}

// liveElement decodes an element of the dynamic set def: the keys are
// [client .] destination [. proto . port], each field in 4-byte words.
func liveElement(def setDef, key, keyEnd []byte, expiry time.Time, comment string) (LiveElement, bool) {
	size := 16
	if def.is4 {
		size = 4
	}
	e := LiveElement{Group: def.group, Expiry: expiry, Name: comment}
	addr := func(b []byte) (netip.Addr, []byte, bool) {
		if len(b) < size {
			return netip.Addr{}, nil, false
		}
		a, _ := netip.AddrFromSlice(b[:size])
		return a, b[size:], true
	}
	var ok bool
	rest := key
	if def.scoped {
		if e.Client, rest, ok = addr(rest); !ok {
			return e, false
		}
	}
	if e.Dst, rest, ok = addr(rest); !ok {
		return e, false
	}
	if def.kind != setPorts {
		return e, len(rest) == 0
	}
	end := keyEnd
	if len(end) != len(key) {
		end = key // a single port
	}
	if len(rest) != 8 {
		return e, false
	}
	tail := end[len(end)-8:]
	e.Ports = []policy.PortRange{{
		Proto: rest[0],
		From:  uint16(rest[4])<<8 | uint16(rest[5]),
		To:    uint16(tail[4])<<8 | uint16(tail[5]),
	}}
	return e, true
}
