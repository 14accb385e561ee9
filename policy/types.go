// Package policy decides, per client group, whether a DNS name may be
// resolved. It is pure: no I/O, no config parsing, no clocks.
//
// Compile turns GroupSpecs into an immutable Engine. A client belongs to
// the group with the most specific client prefix containing its address
// (IPv4-mapped IPv6 addresses count as IPv4). Within a group the order is:
//
//  1. explicit allow and deny rules, the most specific first: an exact name
//     beats any wildcard, "*.a.example.com" beats "*.example.com", and when
//     the same name is both allowed and denied the deny wins;
//  2. categories: any denied category that lists the name (or a parent)
//     beats any permitted one;
//  3. the group default.
//
// A wildcard never matches the name it sits under: "*.example.com" does
// not match "example.com". Names are compared in normalized form (ASCII
// lowercase, trailing dot, punycode), see NormalizeName and ParseRule.
package policy

import (
	"net/netip"
	"slices"
)

// Verdict is the outcome of a policy decision.
type Verdict uint8

const (
	Allow Verdict = iota
	Deny
)

func (v Verdict) String() string {
	if v == Allow {
		return "allow"
	}
	return "deny"
}

// Action is how a denied query is answered.
type Action uint8

const (
	ActionNXDomain Action = iota
	ActionNoData
	ActionRefused
	ActionSinkhole
)

var actionNames = [...]string{"nxdomain", "nodata", "refused", "sinkhole"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// ParseAction maps a config word to an Action.
func ParseAction(s string) (Action, bool) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), true
		}
	}
	return 0, false
}

// Protocol numbers used in port-scoped rules.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// PortRange scopes a firewall allowance to destination ports of one protocol.
type PortRange struct {
	Proto uint8 // ProtoTCP or ProtoUDP
	From  uint16
	To    uint16 // inclusive; equal to From for a single port
}

// Mode says whether a group's denials are enforced or only logged.
type Mode uint8

const (
	ModeEnforce Mode = iota
	ModeAudit
)

func (m Mode) String() string {
	if m == ModeAudit {
		return "audit"
	}
	return "enforce"
}

// Decision is what policy says about one query.
type Decision struct {
	Verdict Verdict
	Group   string // name of the client's group; "" when no group matched
	// Rule is the rule that decided: the rule text ("*.example.com:443"),
	// "category:NAME", or "default".
	Rule string
	// Source says where Rule came from: a config key such as
	// "group[servers].allow" or "categories.malware".
	Source   string
	Action   Action
	Sinkhole []netip.Addr
	// Ports limits the firewall allowance; nil means any port.
	Ports []PortRange
	Mode  Mode
	// DenyAddresses are the group's deny_addresses: an answer with an
	// address inside one of them is denied whatever the name. Shared
	// between calls; must not be modified.
	DenyAddresses []netip.Prefix
}

// GroupSpec is a group as written in the config, already parsed.
type GroupSpec struct {
	Name            string
	Clients         []netip.Prefix
	Allow           []string // rule texts: "name", "*.name", optional ":port[-port][/proto]"
	Deny            []string
	AllowCategories []string
	DenyCategories  []string
	DefaultAllow    bool // default = "allow"; false means deny
	Action          Action
	Sinkhole        []netip.Addr
	Mode            Mode
	// DenyAddresses are never approved for the group, whatever the name
	// (deny_addresses); every Decision of the group carries them.
	DenyAddresses []netip.Prefix
}

// CategoryMatcher reports which categories contain a name or one of its
// parents, as a bit set over category indices assigned by the caller.
// The engine calls Match with a normalized name (ASCII lowercase, trailing
// dot, see NormalizeName) from many goroutines at once, so it must be safe
// for concurrent use.
type CategoryMatcher interface {
	Match(qname string) uint64
}

// PortsWithin reports whether every range of have (none: any port) lies
// within one range of allowed (none: any port) of the same protocol; a
// zero protocol counts as TCP. A re-check uses it to tell that an
// allowance asks for no more ports than the policy gives.
func PortsWithin(have, allowed []PortRange) bool {
	if len(allowed) == 0 {
		return true
	}
	if len(have) == 0 {
		return false
	}
	proto := func(p PortRange) uint8 {
		if p.Proto == 0 {
			return ProtoTCP
		}
		return p.Proto
	}
	for _, h := range have {
		if !slices.ContainsFunc(allowed, func(p PortRange) bool {
			return proto(p) == proto(h) && p.From <= h.From && h.To <= p.To
		}) {
			return false
		}
	}
	return true
}
