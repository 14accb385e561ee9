package firewall

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
)

// inheritElements reads the dynamic set elements of a table an earlier
// egressd left in place and puts them into the index with the deadline
// the kernel will expire them at, so the replacing batch carries them over
// and clients keep reaching destinations they were already told about.
// Only elements whose comment holds the answer they were added for are
// carried: the policy egressd starts with re-checks them by it. left
// counts the others.
// Only sets whose name, key type and flags match the new layout's are
// read: the name holds the group id and the set kind, the key type the
// scope. It returns the names of the sets read, the sets to carry over.
func (n *NFT) inheritElements(lay layout, now time.Time) (keep map[string]bool, left int, err error) {
	t := lay.nftTable()
	// The library reports a missing table as plain text, so look first.
	tables, err := n.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, 0, fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == lay.table }) {
		return nil, 0, nil // no earlier table: nothing to inherit
	}
	old, err := n.conn.GetSets(t)
	if err != nil {
		return nil, 0, fmt.Errorf("list sets of table %s: %w", lay.table, err)
	}
	byName := make(map[string]*nftables.Set, len(old))
	for _, s := range old {
		byName[s.Name] = s
	}
	keep = map[string]bool{}
	for _, def := range lay.sets {
		if !def.dynamic() {
			continue
		}
		prev := byName[def.name]
		if prev == nil || !sameSetShape(prev, def.nftSet(t)) {
			continue
		}
		elems, err := n.conn.GetSetElements(prev)
		if err != nil {
			return nil, 0, fmt.Errorf("list set %s: %w", def.name, err)
		}
		for _, e := range elems {
			// An element without an expiry was not added by egressd and
			// would never leave the new table; interval end markers are
			// not elements of their own.
			if e.Expires <= 0 || e.IntervalEnd {
				continue
			}
			le, ok := liveElement(def, e.Key, e.KeyEnd, now.Add(e.Expires), e.Comment)
			if !ok || le.Name == "" {
				// Without the answer in its comment nothing can re-check
				// it against the policy: fail closed, leave it behind.
				left++
				continue
			}
			el := element{set: def.name, key: e.Key, keyEnd: e.KeyEnd}
			// It keeps counting against the share of the client its
			// comment names (with client scope, its key's).
			owner := le.Owner
			if !owner.IsValid() {
				owner = le.Client
			}
			n.index.putOwned(el, now.Add(e.Expires), owner)
			n.inheritedMu.Lock()
			n.inherited, n.inheritedAt = append(n.inherited, le), append(n.inheritedAt, el)
			n.inheritedMu.Unlock()
			// The comment holds the answer: a reload re-checks the
			// element by it, and adds it back with it.
			names := append([]string{le.Name}, le.Targets...)
			n.index.note(el, origin{names: names, client: le.Client, inherited: true, fromFleet: le.FromFleet})
		}
		keep[def.name] = true
	}
	return keep, left, nil
}

// sameSetShape reports whether elements of have can be added to want
// unchanged.
func sameSetShape(have, want *nftables.Set) bool {
	return have.KeyType.Name == want.KeyType.Name &&
		have.KeyType.Bytes == want.KeyType.Bytes &&
		have.HasTimeout == want.HasTimeout &&
		have.Interval == want.Interval &&
		have.Concatenation == want.Concatenation &&
		!have.Constant
}
