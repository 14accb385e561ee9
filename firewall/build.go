package firewall

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

func (s setDef) nftSet(t *nftables.Table) *nftables.Set {
	var types []nftables.SetDatatype
	addr := nftables.TypeIP6Addr
	if s.is4 {
		addr = nftables.TypeIPAddr
	}
	for _, f := range s.keyFields() {
		switch f {
		case fieldSaddr, fieldDaddr:
			types = append(types, addr)
		case fieldL4Proto:
			types = append(types, nftables.TypeInetProto)
		case fieldDport:
			types = append(types, nftables.TypeInetService)
		}
	}
	key := types[0]
	if len(types) > 1 {
		key = nftables.MustConcatSetType(types...)
	}
	set := &nftables.Set{
		Table:        t,
		Name:         s.name,
		KeyType:      key,
		KeyByteOrder: binaryutil.BigEndian,
	}
	switch s.kind {
	case setClients:
		set.Constant, set.Interval = true, true
	case setDest:
		set.HasTimeout = true
	case setPorts:
		// Concatenated intervals need the per-field lengths (pipapo).
		set.HasTimeout, set.Interval, set.Concatenation = true, true, true
	}
	return set
}

// clientElements encodes client ranges the way nft does for an interval
// set: a start element per range and an interval-end element one past its
// last address, plus a leading end marker when the first range does not
// start at the zero address.
func clientElements(rs []addrRange) []nftables.SetElement {
	var out []nftables.SetElement
	for i, r := range rs {
		if i == 0 && !r.From.IsUnspecified() {
			zero := netip.IPv6Unspecified()
			if r.From.Is4() {
				zero = netip.IPv4Unspecified()
			}
			out = append(out, nftables.SetElement{Key: zero.AsSlice(), IntervalEnd: true})
		}
		out = append(out, nftables.SetElement{Key: r.From.AsSlice()})
		if end := r.To.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// table is the inet table a layout lives in.
func (l layout) nftTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: l.table}
}

// setIDs serializes set creation: the library numbers sets from an
// unguarded package-level counter, and two backends in one process (an
// overlapping restart in tests, a restore racing another install) must not
// race on it.
var setIDs sync.Mutex

// queueReplace queues, on c, the messages that atomically replace the
// table with this layout. Adding the table first makes the delete succeed
// whether or not it existed, so the batch never leaves a gap.
func (l layout) queueReplace(c nftConn) (map[string]*nftables.Set, error) {
	setIDs.Lock()
	defer setIDs.Unlock()
	t := l.nftTable()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	sets := make(map[string]*nftables.Set, len(l.sets))
	ids := make(map[string]uint32, len(l.sets))
	for _, s := range l.sets {
		set := s.nftSet(t)
		var elems []nftables.SetElement
		if s.kind == setClients {
			elems = clientElements(s.clients)
		}
		if err := c.AddSet(set, elems); err != nil {
			return nil, fmt.Errorf("firewall: set %s: %w", s.name, err)
		}
		sets[s.name] = set
		ids[s.name] = set.ID
	}
	chains := make([]*nftables.Chain, len(l.chains))
	for i, cd := range l.chains {
		ch := &nftables.Chain{Name: cd.name, Table: t}
		if cd.hook != "" {
			ch.Type = nftables.ChainTypeFilter
			ch.Priority = nftables.ChainPriorityFilter
			if cd.priority == priorityMangle {
				ch.Priority = nftables.ChainPriorityMangle
			}
			policy := nftables.ChainPolicyAccept
			ch.Policy = &policy
			switch cd.hook {
			case HookForward:
				ch.Hooknum = nftables.ChainHookForward
			case HookOutput:
				ch.Hooknum = nftables.ChainHookOutput
			case "prerouting":
				ch.Hooknum = nftables.ChainHookPrerouting
			default:
				return nil, fmt.Errorf("firewall: chain %s: unknown hook %q", cd.name, cd.hook)
			}
		}
		chains[i] = c.AddChain(ch)
	}
	for i, cd := range l.chains {
		for _, r := range cd.rules {
			var exprs []expr.Any
			for _, st := range r {
				exprs = append(exprs, st.exprs(ids)...)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[i], Exprs: exprs})
		}
	}
	return sets, nil
}
