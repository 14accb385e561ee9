package policy

import "net/netip"

// Recheck reports whether the named group still approves an answer for
// names, the query name first and then the names it led to (CNAME
// targets), as the resolver would approve it now: the query name is
// allowed (or denied in audit mode) and none of the names it led to is
// denied by an enforced rule or category, and dest is in none of the
// group's deny_addresses (enforced). With a valid client, that
// client must still belong to the group. ports are those an answer would
// be allowed on now (nil: any). It has the shape of firewall.Recheck, so a
// config reload can re-check the firewall's live elements.
func (e *Engine) Recheck(group string, client, dest netip.Addr, names []string) (ports []PortRange, ok bool) {
	g := e.byName[group]
	if g == nil || len(names) == 0 {
		return nil, false
	}
	if client.IsValid() && e.clients.lookup(client) != g {
		return nil, false
	}
	var storage [nameStorage]byte
	d, found := e.decideIn(g, foldName(storage[:0], names[0]), names[0])
	if !found {
		d = g.fallback
	}
	if d.Verdict == Deny && d.Mode == ModeEnforce {
		return nil, false
	}
	if _, denied := DeniedAddress(d.DenyAddresses, dest); denied && d.Mode == ModeEnforce {
		return nil, false
	}
	for _, target := range names[1:] {
		if td, denied := e.DeniesTarget(group, target); denied && td.Mode == ModeEnforce {
			return nil, false
		}
	}
	return d.Ports, true
}

// ModeOf is the mode the group's decision for name is in (the rule's,
// or the group's default): the resolver's own checks of an answer for
// name (rebinding protection) deny only in enforce mode. An unknown
// group is ModeEnforce.
func (e *Engine) ModeOf(group, name string) Mode {
	g := e.byName[group]
	if g == nil {
		return ModeEnforce
	}
	var storage [nameStorage]byte
	d, found := e.decideIn(g, foldName(storage[:0], name), name)
	if !found {
		d = g.fallback
	}
	return d.Mode
}
