package firewall

import (
	"net/netip"
	"strings"
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
	// FromFleet: the element was added for another fleet node's
	// approval (Allowance.FromFleet), not for an answer of this node.
	FromFleet bool
}

// maxCommentName is the longest query name kept in an element's comment:
// the kernel holds at most 256 bytes of element user data, and a comment
// is stored with a type, a length and a NUL.
const maxCommentName = 250

// fleetMark ends the comment of an element added for another fleet
// node's approval. No name egressd writes holds a space (a name's own
// spaces are escaped), so the mark cannot be read into an own answer.
const fleetMark = " fleet"

// elementComment is the comment of an element added for name: the name
// (and fleetMark for a fleet approval), or nothing when that does not
// fit. An element without a name is never published again.
func elementComment(name string, fromFleet bool) string {
	n := len(name)
	if fromFleet {
		n += len(fleetMark)
	}
	switch {
	case n > maxCommentName:
		return ""
	case fromFleet:
		return name + fleetMark
	}
	return name
}

// parseComment reverses elementComment.
func parseComment(c string) (name string, fromFleet bool) {
	if name, ok := strings.CutSuffix(c, fleetMark); ok {
		return name, true
	}
	return c, false
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
	e := LiveElement{Group: def.group, Expiry: expiry}
	e.Name, e.FromFleet = parseComment(comment)
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
