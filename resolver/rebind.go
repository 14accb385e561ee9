package resolver

import (
	"maps"
	"net/netip"
	"strings"

	"github.com/egressd/egressd/policy"
)

// DNS rebinding protection: a public name must not lead a client to an
// address on its own network, or a web page from that name could talk to
// services that trust the local network. Answers from upstream with any
// address (anywhere on the CNAME chain, or in an HTTPS/SVCB hint) that is
// private, shared (CGNAT), link-local, loopback, unspecified, multicast,
// broadcast, or a NAT64 (64:ff9b::/96) address embedding one of those are
// denied like a policy denial, with rule ruleRebinding, unless the group
// allows private answers.
const (
	ruleRebinding   = "rebinding-protection"
	sourceRebinding = "server.rebinding_protection"
)

// privateSuffixes are zones whose names are expected to resolve to local
// addresses: the query name being under one of them exempts the answer.
// None of them is delegated in the public DNS. The reverse zones
// (in-addr.arpa., ip6.arpa.) are not here: they are delegated to whoever
// holds an address block, who can put any record under its names. Reverse
// zones the operator forwards ([[upstream.zone]]) are exempt like any
// forwarded zone.
var privateSuffixes = []string{
	"local.", "internal.", "lan.", "home.arpa.", "localhost.",
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598, carrier-grade NAT
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")     // 0.0.0.0 reaches the host itself
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

// localAddr reports whether a is an address a public name should never
// resolve to.
func localAddr(a netip.Addr) bool {
	a = a.Unmap()
	if v4, ok := policy.EmbeddedIPv4(a); ok {
		a = v4
	}
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() ||
		sharedSpace.Contains(a) || neverPushed(a)
}

// neverPushed reports whether a is no destination any group is granted,
// even one that allows private answers: unspecified and "this network"
// addresses (they reach the host itself), multicast and the limited
// broadcast address, also behind NAT64.
func neverPushed(a netip.Addr) bool {
	a = a.Unmap()
	if v4, ok := policy.EmbeddedIPv4(a); ok {
		a = v4
	}
	return a.IsUnspecified() || thisNetwork.Contains(a) || a.IsMulticast() || a == broadcast
}

// pushable returns addrs without the addresses never pushed; addrs itself
// when none is.
func pushable(addrs []netip.Addr) []netip.Addr {
	n := 0
	for _, a := range addrs {
		if !neverPushed(a) {
			n++
		}
	}
	if n == len(addrs) {
		return addrs
	}
	out := make([]netip.Addr, 0, n)
	for _, a := range addrs {
		if !neverPushed(a) {
			out = append(out, a)
		}
	}
	return out
}

// privateName reports whether qname (normalized) is under a zone that may
// hold local addresses.
func privateName(qname string) bool {
	for _, suffix := range privateSuffixes {
		if qname == suffix || strings.HasSuffix(qname, "."+suffix) {
			return true
		}
	}
	return false
}

// anyLocal reports whether one of addrs is a local address (localAddr).
// Answers record it once, when built, so cache hits need not look again.
func anyLocal(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if localAddr(a) {
			return true
		}
	}
	return false
}

// rebinding reports whether an upstream answer for qname to group, with
// local addresses when local is set, must be denied.
func (s *Server) rebinding(cfg *current, group, qname string, local bool) bool {
	// Zones the operator forwards to its own servers are trusted like the
	// local suffixes.
	if !local || privateName(qname) || s.forwarder.InZone(qname) {
		return false
	}
	return !cfg.PrivateAnswers[group]
}

// deniedAddress returns the first of addrs inside one of deny, the group's
// deny_addresses, and that prefix. A NAT64 address counts as the IPv4
// address it embeds too.
func deniedAddress(deny []netip.Prefix, addrs []netip.Addr) (netip.Prefix, bool) {
	if len(deny) == 0 {
		return netip.Prefix{}, false
	}
	for _, a := range addrs {
		if p, ok := policy.DeniedAddress(deny, a); ok {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// RecheckFunc is the shape of a policy's re-check of a firewall element
// (policy.Engine.Recheck, firewall.Recheck).
type RecheckFunc func(group string, client, dest netip.Addr, names []string) (ports []policy.PortRange, ok bool)

// RecheckPolicy is the policy RebindingRecheck adds rebinding protection
// to; policy.Engine satisfies it.
type RecheckPolicy interface {
	Recheck(group string, client, dest netip.Addr, names []string) (ports []policy.PortRange, ok bool)
	ModeOf(group, name string) policy.Mode
}

// RebindingRecheck is pol's Recheck with the rebinding protection of st
// (the settings a reload is about to install) added, for the firewall's
// re-check of live elements and of answers decided before the reload: a
// local address (localAddr) stays approved only where an answer with it
// would be pushed now, that is when the group allows private answers,
// the query name (names[0]) is under a private suffix, in a forwarded
// zone or one of st.Hosts, or the group's decision for it is in audit
// mode. Only the element's own address is known: an element for a public
// address of an answer that also held a local one stays while the policy
// approves its names.
func (s *Server) RebindingRecheck(st Settings, pol RecheckPolicy) RecheckFunc {
	hosts := make(map[string]bool, len(st.Hosts))
	for name := range st.Hosts {
		hosts[normalizeName(name)] = true
	}
	private := maps.Clone(st.PrivateAnswers)
	return func(group string, client, dest netip.Addr, names []string) ([]policy.PortRange, bool) {
		if len(names) > 0 && localAddr(dest) && !private[group] {
			qname := normalizeName(names[0])
			if !privateName(qname) && !s.forwarder.InZone(qname) && !hosts[qname] && pol.ModeOf(group, qname) == policy.ModeEnforce {
				return nil, false
			}
		}
		return pol.Recheck(group, client, dest, names)
	}
}
