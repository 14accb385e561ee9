package resolver

import (
	"net/netip"
	"strings"
)

// DNS rebinding protection: a public name must not lead a client to an
// address on its own network, or a web page from that name could talk to
// services that trust the local network. Answers from upstream whose
// addresses (at the end of the CNAME chain) are private, shared (CGNAT),
// link-local, loopback or unspecified are denied like a policy denial,
// with rule ruleRebinding, unless the group allows private answers.
const (
	ruleRebinding   = "rebinding-protection"
	sourceRebinding = "server.rebinding_protection"
)

// privateSuffixes are zones whose names are expected to resolve to local
// addresses: the query name being under one of them exempts the answer.
var privateSuffixes = []string{
	"local.", "internal.", "lan.", "home.arpa.", "localhost.",
	"in-addr.arpa.", "ip6.arpa.",
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598, carrier-grade NAT
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")     // 0.0.0.0 reaches the host itself
)

// localAddr reports whether a is an address a public name should never
// resolve to.
func localAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		sharedSpace.Contains(a) || thisNetwork.Contains(a)
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

// rebinding reports whether an upstream answer for qname to group must be
// denied because it points at local addresses.
func (s *Server) rebinding(group, qname string, addrs []netip.Addr) bool {
	local := false
	for _, a := range addrs {
		if localAddr(a) {
			local = true
			break
		}
	}
	// Zones the operator forwards to its own servers are trusted like the
	// local suffixes.
	if !local || privateName(qname) || s.forwarder.InZone(qname) {
		return false
	}
	return s.opts.AllowPrivateAnswers == nil || !s.opts.AllowPrivateAnswers(group)
}
