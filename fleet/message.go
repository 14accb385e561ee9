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
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/policy"
)

// Version is the message format written: version 2 carries several
// approvals of one group in one message. Agents read version 1 (one
// approval inline) too; messages of another version are rejected (reason
// "version").
const Version = 2

// Version1 is the format of one approval per message, still read.
const Version1 = 1

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
	// maxApprovals bounds the approvals of one message; a publisher
	// puts at most maxBatch into one.
	maxApprovals = 1024
	maxBatch     = 128
)

// Message is what travels on an approval subject, JSON-encoded: in
// version 2 the approvals of one group published together (Approvals),
// each with its own lifetime; in version 1 one approval, its fields inline
// (the embedded Approval). Lifetime is what is left of the element's life
// in the publisher's kernel (answer TTL plus grace) when it was published:
// a duration, never a wall-clock time, so the clocks of publisher and
// agent need not agree.
type Message struct {
	V     int    `json:"v"`
	ID    string `json:"id"`   // unique per message published, the JetStream Nats-Msg-Id
	Node  string `json:"node"` // the publishing node
	Group string `json:"group"`
	Scope string `json:"scope"` // ScopeGroup or ScopeClient
	// Approval is the approval of a version 1 message.
	Approval
	// Approvals are those of a version 2 message.
	Approvals []Approval `json:"approvals,omitempty"`
	// Confirm names the nodes that are to report having applied it.
	Confirm []string `json:"confirm,omitempty"`
}

// Approval is one approval: a client (client scope only), addresses,
// ports, the lifetime left, and the names behind it.
type Approval struct {
	// Client is set with client scope only.
	Client string   `json:"client,omitempty"`
	IPs    []string `json:"ips,omitempty"`
	// Ports are the port ranges the approval is limited to; none: any port.
	Ports      []Port `json:"ports,omitempty"`
	LifetimeMS int64  `json:"lifetime_ms,omitempty"`
	// Name is the query name, Targets the names it led to.
	Name    string   `json:"name,omitempty"`
	Targets []string `json:"targets,omitempty"`
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

// approvalOf is a's approval as it travels, without its lifetime.
func approvalOf(a enforce.Allowance, scopeClient bool) Approval {
	ap := Approval{Name: a.Name, Targets: a.Targets}
	if scopeClient {
		ap.Client = a.Client.Unmap().WithZone("").String()
	}
	ap.IPs = make([]string, len(a.IPs))
	for i, ip := range a.IPs {
		ap.IPs[i] = ip.String()
	}
	for _, p := range a.Ports {
		proto := "tcp"
		if p.Proto == policy.ProtoUDP {
			proto = "udp"
		}
		ap.Ports = append(ap.Ports, Port{Proto: proto, From: p.From, To: p.To})
	}
	return ap
}

// appendMessage appends the version 2 message of approvals aps to buf,
// lifetimes[i] the lifetime of aps[i]: the encoding json.Marshal gives
// such a Message, without its reflection and allocations.
func appendMessage(buf []byte, id, node, group, scope string, aps []*Approval, lifetimes []time.Duration, confirm []string) []byte {
	buf = append(buf, `{"v":`...)
	buf = strconv.AppendInt(buf, Version, 10)
	buf = appendField(buf, "id", id)
	buf = appendField(buf, "node", node)
	buf = appendField(buf, "group", group)
	buf = appendField(buf, "scope", scope)
	buf = append(buf, `,"approvals":[`...)
	for i, ap := range aps {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '{')
		if ap.Client != "" {
			buf = append(buf, `"client":`...)
			buf = appendString(buf, ap.Client)
			buf = append(buf, ',')
		}
		buf = appendList(buf, "ips", ap.IPs)
		if len(ap.Ports) > 0 {
			buf = append(buf, `,"ports":[`...)
			for j, p := range ap.Ports {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, `{"proto":`...)
				buf = appendString(buf, p.Proto)
				buf = append(buf, `,"from":`...)
				buf = strconv.AppendUint(buf, uint64(p.From), 10)
				buf = append(buf, `,"to":`...)
				buf = strconv.AppendUint(buf, uint64(p.To), 10)
				buf = append(buf, '}')
			}
			buf = append(buf, ']')
		}
		buf = append(buf, `,"lifetime_ms":`...)
		buf = strconv.AppendInt(buf, lifetimes[i].Milliseconds(), 10)
		buf = appendField(buf, "name", ap.Name)
		if len(ap.Targets) > 0 {
			buf = append(buf, ',')
			buf = appendList(buf, "targets", ap.Targets)
		}
		buf = append(buf, '}')
	}
	buf = append(buf, ']')
	if len(confirm) > 0 {
		buf = append(buf, ',')
		buf = appendList(buf, "confirm", confirm)
	}
	return append(buf, '}')
}

// appendField appends ,"key":"s".
func appendField(buf []byte, key, s string) []byte {
	buf = append(buf, ',', '"')
	buf = append(buf, key...)
	buf = append(buf, '"', ':')
	return appendString(buf, s)
}

// appendList appends "key":["s",...].
func appendList(buf []byte, key string, ss []string) []byte {
	buf = append(buf, '"')
	buf = append(buf, key...)
	buf = append(buf, '"', ':', '[')
	for i, s := range ss {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, s)
	}
	return append(buf, ']')
}

// appendString appends s as a JSON string. Addresses, tokens and names in
// presentation format are printable ASCII; anything else is left to
// encoding/json.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(buf, q...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
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
// does not need this node's configuration. The approvals of a version 1
// message are put into Approvals too, so the caller reads only those.
func decode(data []byte) (Message, error) {
	var m Message
	if len(data) > MaxMessageBytes {
		return m, reject(ReasonMalformed, "%d bytes", len(data))
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, reject(ReasonMalformed, "%v", err)
	}
	switch m.V {
	case Version1:
		if m.Approvals != nil {
			return m, reject(ReasonMalformed, "approvals in a version 1 message")
		}
		m.Approvals = []Approval{m.Approval}
	case Version:
		if !m.Approval.empty() {
			return m, reject(ReasonMalformed, "approval fields outside approvals")
		}
	default:
		return m, reject(ReasonVersion, "version %d, want %d or %d", m.V, Version1, Version)
	}
	switch {
	case m.ID == "" || len(m.ID) > 128:
		return m, reject(ReasonMalformed, "bad id")
	case !ValidToken(m.Node):
		return m, reject(ReasonMalformed, "bad node %q", m.Node)
	case !ValidToken(m.Group):
		return m, reject(ReasonMalformed, "bad group %q", m.Group)
	case len(m.Confirm) > maxNames:
		return m, reject(ReasonMalformed, "%d nodes to confirm", len(m.Confirm))
	case len(m.Approvals) == 0 || len(m.Approvals) > maxApprovals:
		return m, reject(ReasonMalformed, "%d approvals", len(m.Approvals))
	case m.Scope != ScopeGroup && m.Scope != ScopeClient:
		return m, reject(ReasonMalformed, "scope %q", m.Scope)
	}
	for i := range m.Approvals {
		if err := m.Approvals[i].check(m.Scope); err != nil {
			return m, err
		}
	}
	return m, nil
}

// presentationName reports whether s could be a name in presentation
// form as resolvers write it: not empty, printable ASCII, where a space or
// any other byte stands for itself only after a backslash. The firewall keeps
// names in an element's comment separated by unescaped spaces.
func presentationName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i++; i == len(s) || s[i] < ' ' || s[i] > '~' {
				return false
			}
		case c <= ' ' || c > '~':
			return false
		}
	}
	return true
}

func (ap *Approval) empty() bool {
	return ap.Client == "" && ap.IPs == nil && ap.Ports == nil && ap.LifetimeMS == 0 && ap.Name == "" && ap.Targets == nil
}

// check checks the shape of one approval of a message of scope.
func (ap *Approval) check(scope string) error {
	switch {
	case len(ap.IPs) == 0 || len(ap.IPs) > maxIPs:
		return reject(ReasonMalformed, "%d addresses", len(ap.IPs))
	case len(ap.Ports) > maxPorts:
		return reject(ReasonMalformed, "%d port ranges", len(ap.Ports))
	case ap.Name == "" || len(ap.Targets) > maxNames:
		return reject(ReasonMalformed, "bad names")
	case !presentationName(ap.Name):
		return reject(ReasonMalformed, "name %q", ap.Name)
	}
	for _, t := range ap.Targets {
		if !presentationName(t) {
			return reject(ReasonMalformed, "target %q", t)
		}
	}
	if scope == ScopeGroup && ap.Client != "" {
		return reject(ReasonMalformed, "client %q with group scope", ap.Client)
	}
	if scope == ScopeClient {
		if _, err := netip.ParseAddr(ap.Client); err != nil {
			return reject(ReasonMalformed, "client: %v", err)
		}
	}
	for _, p := range ap.Ports {
		if (p.Proto != "tcp" && p.Proto != "udp") || p.From == 0 || p.To < p.From {
			return reject(ReasonMalformed, "port range %+v", p)
		}
	}
	for _, s := range ap.IPs {
		if _, err := netip.ParseAddr(s); err != nil {
			return reject(ReasonMalformed, "address: %v", err)
		}
	}
	return nil
}

// allowance is ap of group as an Allowance for the local firewall, with
// ttl as its answer TTL (the firewall adds its grace to it), marked as
// another node's.
func (ap *Approval) allowance(group, scope string, ttl time.Duration) enforce.Allowance {
	a := enforce.Allowance{Group: group, TTL: ttl, Name: ap.Name, Targets: slices.Clone(ap.Targets), FromFleet: true}
	if scope == ScopeClient {
		a.Client, _ = netip.ParseAddr(ap.Client)
	}
	a.IPs = make([]netip.Addr, len(ap.IPs))
	for i, s := range ap.IPs {
		a.IPs[i], _ = netip.ParseAddr(s)
	}
	for _, p := range ap.Ports {
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
