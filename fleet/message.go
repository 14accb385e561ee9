// Package fleet shares approvals between egressd nodes through NATS
// JetStream: a resolver publishes every approval it installs in its own
// firewall, and agents (egressd agent, or egressd serve with [fleet]
// enforce) install the approvals of the groups they enforce in theirs, with
// the lifetime that is left of them. See README.md.
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

// Version is the message format written; messages of another version are
// rejected (reason "version").
const Version = 1

// Scopes of an approval: the whole group, or one client of it.
const (
	ScopeGroup  = "group"
	ScopeClient = "client"
)

// Limits on one message, so a message cannot make an agent allocate much.
const (
	MaxMessageBytes = 64 << 10
	maxIPs          = 1024
	maxPorts        = 256
	maxNames        = 64
)

// Message is one approval as it travels, JSON-encoded. Lifetime is what
// is left of the element's life in the publisher's kernel (answer TTL plus
// grace) when it was published: a duration, never a wall-clock time, so
// the clocks of publisher and agent need not agree.
type Message struct {
	V     int    `json:"v"`
	ID    string `json:"id"`   // unique per approval published, the JetStream Nats-Msg-Id
	Node  string `json:"node"` // the publishing node
	Group string `json:"group"`
	Scope string `json:"scope"` // ScopeGroup or ScopeClient
	// Client is set with client scope only.
	Client string   `json:"client,omitempty"`
	IPs    []string `json:"ips"`
	// Ports are the port ranges the approval is limited to; none: any port.
	Ports      []Port `json:"ports,omitempty"`
	LifetimeMS int64  `json:"lifetime_ms"`
	// Name is the query name, Targets the names it led to.
	Name    string   `json:"name"`
	Targets []string `json:"targets,omitempty"`
	// Confirm names the nodes that are to report having applied it.
	Confirm []string `json:"confirm,omitempty"`
}

// Port is a protocol and an inclusive port range.
type Port struct {
	Proto string `json:"proto"` // "tcp" or "udp"
	From  uint16 `json:"from"`
	To    uint16 `json:"to"`
}

// Applied is what an agent publishes on AppliedSubject(prefix, node) once
// it has installed a message that asked it to confirm.
type Applied struct {
	V    int    `json:"v"`
	ID   string `json:"id"`
	Node string `json:"node"`
}

// ApprovalSubject is the subject approvals of group are published on.
func ApprovalSubject(prefix, group string) string { return prefix + ".approvals." + group }

// AppliedSubject is the subject node reports applied approvals on.
func AppliedSubject(prefix, node string) string { return prefix + ".applied." + node }

// ValidToken reports whether s can be one token of a NATS subject: not
// empty, no dots, wildcards, or white space. Group and node names are.
func ValidToken(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	return !strings.ContainsAny(s, ".*> \t\r\n\x00")
}

// newMessage is a's message, with lifetime left.
func newMessage(id, node string, a enforce.Allowance, scopeClient bool, lifetime time.Duration, confirm []string) Message {
	m := Message{
		V: Version, ID: id, Node: node, Group: a.Group, Scope: ScopeGroup,
		LifetimeMS: lifetime.Milliseconds(), Name: a.Name, Targets: a.Targets, Confirm: confirm,
	}
	if scopeClient {
		m.Scope, m.Client = ScopeClient, a.Client.Unmap().WithZone("").String()
	}
	m.IPs = make([]string, len(a.IPs))
	for i, ip := range a.IPs {
		m.IPs[i] = ip.String()
	}
	for _, p := range a.Ports {
		proto := "tcp"
		if p.Proto == policy.ProtoUDP {
			proto = "udp"
		}
		m.Ports = append(m.Ports, Port{Proto: proto, From: p.From, To: p.To})
	}
	return m
}

// Rejection reasons (the reason label of egressd_fleet_rejected_total).
const (
	ReasonMalformed   = "malformed"     // not JSON, or a field out of shape
	ReasonVersion     = "version"       // another message format version
	ReasonForeign     = "foreign_group" // a group this node does not enforce, or not its subject's
	ReasonScope       = "scope"         // group scope here and client scope there, or the reverse
	ReasonAddress     = "address"       // an address egressd never approves, or a client outside the group
	ReasonPolicy      = "policy"        // this node's policy does not approve it
	ReasonExpired     = "expired"       // no lifetime left
	ReasonTooLong     = "too_long"      // a lifetime longer than max_ttl plus grace
	ReasonApplyFailed = "apply_failed"  // the local firewall refused it
)

// errReject carries a rejection reason.
type errReject struct {
	reason string
	err    error
}

func (e *errReject) Error() string { return e.reason + ": " + e.err.Error() }

func reject(reason, format string, args ...any) error {
	return &errReject{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf is err's rejection reason, ReasonMalformed for any other error.
func reasonOf(err error) string {
	var r *errReject
	if errors.As(err, &r) {
		return r.reason
	}
	return ReasonMalformed
}

// decode parses data into a Message and checks its shape: everything that
// does not need this node's configuration.
func decode(data []byte) (Message, error) {
	var m Message
	if len(data) > MaxMessageBytes {
		return m, reject(ReasonMalformed, "%d bytes", len(data))
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, reject(ReasonMalformed, "%v", err)
	}
	if m.V != Version {
		return m, reject(ReasonVersion, "version %d, want %d", m.V, Version)
	}
	switch {
	case m.ID == "" || len(m.ID) > 128:
		return m, reject(ReasonMalformed, "bad id")
	case !ValidToken(m.Node):
		return m, reject(ReasonMalformed, "bad node %q", m.Node)
	case !ValidToken(m.Group):
		return m, reject(ReasonMalformed, "bad group %q", m.Group)
	case len(m.IPs) == 0 || len(m.IPs) > maxIPs:
		return m, reject(ReasonMalformed, "%d addresses", len(m.IPs))
	case len(m.Ports) > maxPorts:
		return m, reject(ReasonMalformed, "%d port ranges", len(m.Ports))
	case m.Name == "" || len(m.Targets) > maxNames:
		return m, reject(ReasonMalformed, "bad names")
	case len(m.Confirm) > maxNames:
		return m, reject(ReasonMalformed, "%d nodes to confirm", len(m.Confirm))
	}
	switch m.Scope {
	case ScopeGroup:
		if m.Client != "" {
			return m, reject(ReasonMalformed, "client %q with group scope", m.Client)
		}
	case ScopeClient:
		if _, err := netip.ParseAddr(m.Client); err != nil {
			return m, reject(ReasonMalformed, "client: %v", err)
		}
	default:
		return m, reject(ReasonMalformed, "scope %q", m.Scope)
	}
	for _, p := range m.Ports {
		if (p.Proto != "tcp" && p.Proto != "udp") || p.From == 0 || p.To < p.From {
			return m, reject(ReasonMalformed, "port range %+v", p)
		}
	}
	for _, s := range m.IPs {
		if _, err := netip.ParseAddr(s); err != nil {
			return m, reject(ReasonMalformed, "address: %v", err)
		}
	}
	return m, nil
}

// allowance is m as an Allowance for the local firewall, with ttl as its
// answer TTL (the firewall adds its grace to it).
func (m Message) allowance(ttl time.Duration) enforce.Allowance {
	a := enforce.Allowance{Group: m.Group, TTL: ttl, Name: m.Name, Targets: slices.Clone(m.Targets)}
	if m.Scope == ScopeClient {
		a.Client, _ = netip.ParseAddr(m.Client)
	}
	a.IPs = make([]netip.Addr, len(m.IPs))
	for i, s := range m.IPs {
		a.IPs[i], _ = netip.ParseAddr(s)
	}
	for _, p := range m.Ports {
		proto := policy.ProtoTCP
		if p.Proto == "udp" {
			proto = policy.ProtoUDP
		}
		a.Ports = append(a.Ports, policy.PortRange{Proto: proto, From: p.From, To: p.To})
	}
	return a
}

// neverApproved reports addresses no answer ever puts into a set: the
// unspecified address, "this network" 0.0.0.0/8, multicast and broadcast
// (IPv4-mapped and embedded IPv4 addresses are judged as IPv4).
func neverApproved(a netip.Addr) bool {
	a = a.Unmap()
	if v4, ok := policy.EmbeddedIPv4(a); ok {
		a = v4
	}
	thisNetwork := netip.MustParsePrefix("0.0.0.0/8")
	return a.IsUnspecified() || thisNetwork.Contains(a) || a.IsMulticast() ||
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
