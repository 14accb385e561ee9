package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Drop reports per chain: packets a second and burst, unless the spec
// says otherwise.
const (
	defaultDropEventsRate  = 10
	defaultDropEventsBurst = nftDefaultBurst
)

// dropLog is the rate limit of the spec's drop reports, with prefix.
func (s Spec) dropLog(prefix string) rateLog {
	l := rateLog{ratePerSecond: defaultDropEventsRate, burst: defaultDropEventsBurst, prefix: prefix, group: s.NFLOGGroup}
	if s.DropEventsRate > 0 {
		l.ratePerSecond = uint64(s.DropEventsRate)
	}
	if s.DropEventsBurst > 0 {
		l.burst = s.DropEventsBurst
	}
	return l
}

// maxIDLen keeps set and chain names short and readable in `nft list`.
const maxIDLen = 40

type setKind uint8

const (
	setClients setKind = iota // constant client prefixes of a group
	setDest                   // destinations allowed on any port
	setPorts                  // destination . protocol . port ranges
)

// setDef is one named set of the layout.
type setDef struct {
	name    string
	group   string // the group's config name, not its sanitized id
	kind    setKind
	is4     bool
	scoped  bool        // key starts with the client address (scope "client")
	clients []addrRange // elements of a setClients set
}

// dynamic reports whether Allow fills the set, with elements that time
// out; the others are the client sets, which the spec fixes.
func (s setDef) dynamic() bool { return s.kind != setClients }

// keyFields is the packet data the set is looked up with.
func (s setDef) keyFields() []keyField {
	var f []keyField
	if s.kind == setClients {
		return []keyField{fieldSaddr}
	}
	if s.scoped {
		f = append(f, fieldSaddr)
	}
	f = append(f, fieldDaddr)
	if s.kind == setPorts {
		f = append(f, fieldL4Proto, fieldDport)
	}
	return f
}

func (s setDef) lookup() setLookup {
	return setLookup{is4: s.is4, fields: s.keyFields(), set: s.name}
}

// chainDef is a chain; hook is empty for a regular (jump target) chain.
type chainDef struct {
	name     string
	hook     string // nft hook name: forward, output or prerouting
	priority string // nft priority name of a base chain: filter or mangle
	rules    [][]stmt
}

// nft priority names of the base chains.
const (
	priorityFilter = "filter" // 0: after destination NAT
	priorityMangle = "mangle" // -150: after conntrack, before destination NAT
)

// groupSets names the dynamic sets of one group.
type groupSets struct {
	d4, d6, p4, p6 string
	scoped         bool
}

// layout is the whole table, the single source for Render and netlink.
type layout struct {
	table  string
	sets   []setDef
	chains []chainDef
	groups map[string]groupSets
	// gcInterval is set on the sets Allow fills after install (tuneSetGC);
	// only the rendering carries it.
	gcInterval time.Duration
}

// Validate reports the first problem that would stop the table from being
// built.
func (s Spec) Validate() error {
	if err := CheckTableName(s.Table); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	for _, ap := range s.DNS {
		if !ap.Addr().IsValid() || ap.Port() == 0 {
			return fmt.Errorf("firewall: invalid DNS listen address %q", ap)
		}
	}
	for _, ap := range s.EncryptedDNS {
		if !ap.Addr().IsValid() || ap.Port() == 0 {
			return fmt.Errorf("firewall: invalid encrypted DNS listen address %q", ap)
		}
	}
	if len(s.Hooks) == 0 {
		return errors.New("firewall: no hooks configured")
	}
	seenHook := map[string]bool{}
	for _, h := range s.Hooks {
		if h != HookForward && h != HookOutput {
			return fmt.Errorf("firewall: unknown hook %q (want %q or %q)", h, HookForward, HookOutput)
		}
		if seenHook[h] {
			return fmt.Errorf("firewall: hook %q listed twice", h)
		}
		seenHook[h] = true
	}
	if s.Scope != "" && s.Scope != ScopeGroup && s.Scope != ScopeClient {
		return fmt.Errorf("firewall: unknown scope %q (want %q or %q)", s.Scope, ScopeGroup, ScopeClient)
	}
	if s.Grace < 0 {
		return errors.New("firewall: negative grace")
	}
	if s.SetGCInterval < 0 || s.SetGCInterval > MaxSetGCInterval {
		return fmt.Errorf("firewall: set gc interval %s out of range (0 to %s)", s.SetGCInterval, MaxSetGCInterval)
	}
	seen := map[string]bool{}
	for _, g := range s.Groups {
		if g.Name == "" {
			return errors.New("firewall: group without a name")
		}
		if seen[g.Name] {
			return fmt.Errorf("firewall: group %q listed twice", g.Name)
		}
		seen[g.Name] = true
		for _, p := range g.Clients {
			if !p.IsValid() {
				return fmt.Errorf("firewall: group %q has an invalid client prefix", g.Name)
			}
		}
	}
	return nil
}

// maxTableName is the longest table name egressd uses; the kernel takes
// more, but set and chain names are derived from group names, not this.
const maxTableName = 64

// CheckTableName says why name cannot be egressd's table: letters first,
// then letters, digits, _ and -, at most maxTableName bytes.
func CheckTableName(name string) error {
	if name == "" || len(name) > maxTableName {
		return fmt.Errorf("invalid table name %q (1 to %d characters)", name, maxTableName)
	}
	for i, r := range name {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		ok := letter || i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-')
		if !ok {
			return fmt.Errorf("invalid table name %q (a letter first, then letters, digits, _ and -)", name)
		}
	}
	return nil
}

// groupIDs turns group names into unique identifiers made of letters,
// digits and underscores, fit for set, chain and log prefix text.
func groupIDs(groups []GroupSpec) []string {
	ids := make([]string, len(groups))
	used := map[string]bool{}
	for i, g := range groups {
		var b strings.Builder
		for _, r := range g.Name {
			ok := r < 128 && (r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			if !ok {
				r = '_'
			}
			b.WriteRune(r)
		}
		id := b.String()
		if len(id) > maxIDLen {
			id = id[:maxIDLen]
		}
		base := id
		for n := 2; used[id]; n++ {
			id = fmt.Sprintf("%s_%d", base, n)
		}
		used[id] = true
		ids[i] = id
	}
	return ids
}

// groupJump sends a group's clients to its chain.
type groupJump struct {
	chain  string
	c4, c6 setDef
	dests  []setDef // the group's dynamic sets
}

// buildLayout turns a validated spec into the table layout for a kernel
// with features f.
func buildLayout(s Spec, f Features) layout {
	l := layout{table: s.Table, groups: map[string]groupSets{}, gcInterval: s.SetGCInterval}
	scoped := s.Scope == ScopeClient
	ids := groupIDs(s.Groups)
	c4, c6 := partitionClients(s.Groups)

	var jumps []groupJump
	var groupChains []chainDef
	for i, g := range s.Groups {
		prefix := "g_" + ids[i]
		set := func(suffix string, kind setKind, is4 bool) setDef {
			return setDef{group: g.Name, name: prefix + suffix, kind: kind, is4: is4, scoped: scoped && kind != setClients}
		}
		c4set, c6set := set("_c4", setClients, true), set("_c6", setClients, false)
		c4set.clients, c6set.clients = c4[i], c6[i]
		d4, d6 := set("_d4", setDest, true), set("_d6", setDest, false)
		p4, p6 := set("_p4", setPorts, true), set("_p6", setPorts, false)
		l.sets = append(l.sets, c4set, c6set, d4, d6, p4, p6)
		l.groups[g.Name] = groupSets{d4: d4.name, d6: d6.name, p4: p4.name, p6: p6.name, scoped: scoped}

		rules := groupRules(s, ids[i], s.Audit || g.Audit, f.CtLabels, []setDef{d4, d6, p4, p6})
		groupChains = append(groupChains, chainDef{name: prefix, rules: rules})
		jumps = append(jumps, groupJump{chain: prefix, c4: c4set, c6: c6set, dests: []setDef{d4, d6, p4, p6}})
	}
	for _, hook := range s.Hooks {
		l.chains = append(l.chains, chainDef{name: hook, hook: hook, priority: priorityFilter, rules: baseRules(s, hook, jumps)})
		if f.CtLabels {
			l.chains = append(l.chains, chainDef{name: "prenat_" + hook, hook: prenatHook(hook), priority: priorityMangle, rules: prenatRules(jumps)})
		}
	}
	for _, hook := range s.Hooks {
		if hook == HookOutput {
			l.chains = append(l.chains, chainDef{name: ipv6LinkChain, rules: ipv6LinkRules()})
		}
	}
	l.chains = append(l.chains, groupChains...)
	return l
}

// groupRules: block DNS bypass, accept what the sets allow, then log and
// drop, or in audit mode log and accept. labels adds the match on the
// label the prenat chains set.
func groupRules(s Spec, id string, audit, labels bool, sets []setDef) [][]stmt {
	var rules [][]stmt
	if !audit {
		// Bypass prevention: clients resolve through egressd only. 853 is
		// DNS over TLS (tcp) and DNS over QUIC (udp, RFC 9250).
		bypass := []l4Dport{{protoUDP, 53}, {protoTCP, 53}, {protoTCP, 853}, {protoUDP, 853}}
		for _, p := range bypass {
			// Drop events read from NFLOG report bypass attempts too
			// (the kernel log stays as quiet as before).
			if s.DropEvents == DropEventsNFLOG || s.DropEvents == DropEventsBoth {
				l := s.dropLog(fmt.Sprintf("egressd drop %s: ", id))
				l.nflog = true
				rules = append(rules, []stmt{p, l})
			}
			rules = append(rules, []stmt{p, drop})
		}
	}
	if labels {
		// Approved before destination NAT (see prenatRules).
		rules = append(rules, []stmt{ctLabelIs(approvedLabel), accept})
	}
	for _, set := range sets {
		rules = append(rules, []stmt{set.lookup(), accept})
	}
	if audit {
		rules = appendDropLog(rules, s, fmt.Sprintf("egressd would_deny %s: ", id))
		return append(rules, []stmt{accept})
	}
	rules = appendDropLog(rules, s, fmt.Sprintf("egressd drop %s: ", id))
	return append(rules, []stmt{drop})
}

// appendDropLog adds the rule that reports a drop (or would-be drop) with
// prefix, as Spec.DropEvents says; with DropEventsNone it adds nothing.
func appendDropLog(rules [][]stmt, s Spec, prefix string) [][]stmt {
	l := s.dropLog(prefix)
	switch s.DropEvents {
	case DropEventsNone:
		return rules
	case DropEventsNFLOG:
		l.nflog = true
	case DropEventsBoth:
		l.kernel, l.nflog = true, true
	default:
		l.kernel = true
	}
	return append(rules, []stmt{l})
}

// baseRules is a hook's chain: established flows, traffic that is always
// fine, DNS to egressd, a jump per group, then sources in no group.
func baseRules(s Spec, hook string, jumps []groupJump) [][]stmt {
	// On the forward hook a grouped client's packets in a connection it did
	// not open (one opened to it from outside) are judged by its group
	// chain like new ones, unless inbound connections are accepted: the
	// established shortcut then covers only the direction the connection
	// was opened in, until the group jumps have had their say.
	judgeInbound := hook == HookForward && !s.AcceptInbound
	var rules [][]stmt
	if judgeInbound {
		rules = append(rules, []stmt{ctOriginal, ctEstablished{}, accept})
	} else {
		rules = append(rules, []stmt{ctEstablished{}, accept})
	}
	if hook == HookOutput {
		// Loopback never leaves the host; this also covers DNS to a local
		// egressd.
		rules = append(rules, []stmt{oifName("lo"), accept})
		// What IPv6 needs on the link: neighbour and router discovery and
		// MLD (see ipv6LinkRules).
		rules = append(rules, []stmt{l4protoIs(unix.IPPROTO_ICMPV6), jump(ipv6LinkChain)})
		if s.Mark != 0 {
			rules = append(rules, []stmt{ownSocket{uid: s.UID, mark: s.Mark}, accept})
		}
	}
	for _, ap := range s.DNS {
		a := ap.Addr().Unmap().WithZone("")
		if a.IsUnspecified() {
			// A wildcard listener is local: forwarded packets never reach
			// it, and the output hook admits it via loopback.
			continue
		}
		for _, proto := range []uint8{protoUDP, protoTCP} {
			rules = append(rules, []stmt{daddrIs(a), l4Dport{proto: proto, port: ap.Port()}, accept})
		}
	}
	// DNS over TLS and HTTPS to egressd: TCP only (no DNS over QUIC or
	// HTTP/3 is served).
	for _, ap := range s.EncryptedDNS {
		if a := ap.Addr().Unmap().WithZone(""); !a.IsUnspecified() {
			rules = append(rules, []stmt{daddrIs(a), l4Dport{proto: protoTCP, port: ap.Port()}, accept})
		}
	}
	for _, j := range jumps {
		rules = append(rules,
			[]stmt{j.c4.lookup(), jump(j.chain)},
			[]stmt{j.c6.lookup(), jump(j.chain)})
	}
	if judgeInbound {
		// Replies to grouped clients, and everything established of
		// sources in no group.
		rules = append(rules, []stmt{ctEstablished{}, accept})
	}
	if !s.AcceptUnlisted {
		if s.Audit {
			rules = appendDropLog(rules, s, "egressd would_deny unlisted: ")
		} else {
			rules = appendDropLog(rules, s, "egressd drop unlisted: ")
			rules = append(rules, []stmt{drop})
		}
	}
	return rules
}

// ipv6LinkChain holds what the output hook lets through for IPv6 itself.
const ipv6LinkChain = "ipv6_link"

// ipv6LinkRules: neighbour and router discovery (RFC 4861: hop limit 255)
// and MLD reports (hop limit 1) from anyone, as long as they cannot leave
// the link: ND to link-local or link-scope multicast destinations, which
// are never routed, MLD with a hop limit no router forwards. Neighbour
// solicitations and advertisements also go to a neighbour's global address
// (unreachability probes, answers to a solicitation from a global
// address); those are accepted only when the kernel sends them. A packet a
// process sends (a socket with an owner) returns to the base chain and is
// judged like any other, so an ND-shaped datagram from a raw socket is no
// way to an unapproved global address.
func ipv6LinkRules() [][]stmt {
	linkLocal := netip.MustParsePrefix("fe80::/10")
	linkMulticast := netip.MustParsePrefix("ff02::/16")
	multicast := netip.MustParsePrefix("ff00::/8")
	return [][]stmt{
		{linkICMPv6{from: icmpv6RouterSolicit, to: icmpv6NeighborAdvert, hopLimit: 255, dst: linkLocal}, accept},
		{linkICMPv6{from: icmpv6RouterSolicit, to: icmpv6NeighborAdvert, hopLimit: 255, dst: linkMulticast}, accept},
		{linkICMPv6{from: icmpv6MLDReport, to: icmpv6MLDDone, hopLimit: 1, dst: multicast}, accept},
		{linkICMPv6{from: icmpv6MLD2Report, to: icmpv6MLD2Report, hopLimit: 1, dst: multicast}, accept},
		{userSocket{}, verdict{kind: expr.VerdictReturn}},
		{linkICMPv6{from: icmpv6NeighborSolicit, to: icmpv6NeighborAdvert, hopLimit: 255}, accept},
	}
}

// approvedLabel is the conntrack label bit egressd sets on a connection
// whose destination, as the client addressed it, is in its group's sets.
const approvedLabel = 23

// prenatHook is where a hook's packets still carry the destination the
// client addressed: forwarded packets are rewritten in prerouting (dstnat),
// local ones in output (dstnat), both at priority -100.
func prenatHook(hook string) string {
	if hook == HookForward {
		return "prerouting"
	}
	return HookOutput
}

// prenatRules label new connections of grouped clients whose destination
// is approved before any DNAT rewrites it (a Kubernetes Service address
// turned into a pod address, say). The group chain accepts the label, so
// a destination counts as approved as addressed or as rewritten.
func prenatRules(jumps []groupJump) [][]stmt {
	rules := [][]stmt{{ctEstablished{}, accept}}
	for _, j := range jumps {
		for _, d := range j.dests {
			clients := j.c6
			if d.is4 {
				clients = j.c4
			}
			rules = append(rules, []stmt{bothIn{clients.lookup(), d.lookup()}, ctLabelSet(approvedLabel)})
		}
	}
	return rules
}

const (
	protoTCP = 6
	protoUDP = 17
)
