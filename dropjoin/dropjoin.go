// Package dropjoin explains firewall drops by the DNS answers egressd gave:
// a bounded index of recent answers keyed by address, and Explain, which
// picks one of a fixed set of reasons for a dropped packet.
package dropjoin

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/egressd/egressd/policy"
	"golang.org/x/sys/unix"
)

// Reasons, a bounded set (they are metric label values).
const (
	NeverResolved         = "never_resolved"
	ResolvedByOtherClient = "resolved_by_other_client"
	Expired               = "expired"
	OtherPorts            = "other_ports"
	NameDenied            = "name_denied"
	ForeignResolver       = "foreign_resolver"
	UnlistedSource        = "unlisted_source"
	// Unexplained: an answer approved the destination on this port and had
	// not expired, the policy still allows its names, yet the packet was
	// dropped (a set limit, or a table replaced since).
	Unexplained = "unexplained"
)

// Reasons lists every reason, for metrics.
var Reasons = []string{NeverResolved, ResolvedByOtherClient, Expired, OtherPorts, NameDenied, ForeignResolver, UnlistedSource, Unexplained}

// Port is a transport protocol and port range an answer approved.
type Port = policy.PortRange

// PortString is "443/tcp" or "8000-8099/udp".
func PortString(p Port) string {
	r := fmt.Sprint(p.From)
	if p.To != p.From {
		r = fmt.Sprintf("%d-%d", p.From, p.To)
	}
	return r + "/" + ProtoName(p.Proto)
}

// ProtoName is "tcp", "udp" or the protocol number.
func ProtoName(proto uint8) string {
	switch proto {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return fmt.Sprint(proto)
}

// Answer is one answer egressd gave: to Client of Group for Name, with
// Addrs. Ports empty means every port. Expiry is when the firewall's
// elements for it time out (TTL plus grace). Denied answers carry the Rule
// that denied them.
type Answer struct {
	Time   time.Time
	Expiry time.Time
	Client netip.Addr
	Group  string
	Name   string
	// Targets are the names Name led to (CNAME and HTTPS/SVCB targets):
	// they pointed at Addrs too.
	Targets []string
	Addrs   []netip.Addr
	Ports   []Port
	Denied  bool
	Rule    string
	// Inherited answers were read back from the firewall's live set
	// elements at start (an approval of an earlier run): Time is when
	// they were read, not when they were answered; Name may be empty.
	Inherited bool
}

// Drop is one dropped packet. Group is the source's group, empty when the
// source is in none.
type Drop struct {
	Time  time.Time
	Src   netip.Addr
	Group string
	Dst   netip.Addr
	Proto uint8
	Port  uint16
}

// Result is the explanation of a drop.
type Result struct {
	Reason string
	// Name, AnswerTime, Expiry: the answer the reason refers to, if any.
	Name       string
	AnswerTime time.Time
	Expiry     time.Time
	// Client is the other client that resolved the address
	// (ResolvedByOtherClient).
	Client netip.Addr
	// Ports are the ports the answer approved (OtherPorts).
	Ports []Port
	// Rule is the rule that denied Name (NameDenied).
	Rule string
	// Names are all names recently answered with the destination
	// address, the targets of their chains included.
	Names []string
}

// Index holds the most recent answers, at most max address entries and
// none older than maxAge. It is safe for concurrent use; Add costs a map
// insert per address.
type Index struct {
	mu     sync.Mutex
	max    int
	maxAge time.Duration
	byAddr map[netip.Addr][]*Answer
	// order is a ring of the addresses in insertion order: evicting its
	// oldest removes the oldest answer of that address.
	order      []netip.Addr
	head, size int
	// denials is a ring of the newest denied queries, at most maxDenials.
	denials      []Denial
	dHead, dSize int
}

// maxDenials bounds the denied queries kept to explain drops (about 100
// bytes each): a client flooding denied queries pushes out the oldest,
// its own and others'.
const maxDenials = 4096

// Denial is a query of Client for Name that the policy denied by Rule.
type Denial struct {
	Time   time.Time
	Client netip.Addr
	Name   string
	Rule   string
}

// PolicyFunc says whether the policy denies name to client now, and by
// which rule.
type PolicyFunc func(client netip.Addr, name string) (rule string, denied bool)

// NewIndex makes an index of at most max address entries, each kept at
// most maxAge.
func NewIndex(max int, maxAge time.Duration) *Index {
	if max < 1 {
		max = 1
	}
	return &Index{max: max, maxAge: maxAge, byAddr: make(map[netip.Addr][]*Answer), order: make([]netip.Addr, max)}
}

// Add records an answer. Answers should be added in time order.
func (x *Index) Add(a Answer) {
	ap := &a
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(a.Time)
	for _, addr := range a.Addrs {
		addr = addr.Unmap()
		if x.size == x.max {
			x.evictOldest()
		}
		x.order[(x.head+x.size)%x.max] = addr
		x.size++
		x.byAddr[addr] = append(x.byAddr[addr], ap)
	}
}

func (x *Index) evictOldest() {
	addr := x.order[x.head]
	x.head = (x.head + 1) % x.max
	x.size--
	list := x.byAddr[addr]
	if len(list) <= 1 {
		delete(x.byAddr, addr)
		return
	}
	list[0] = nil
	x.byAddr[addr] = list[1:]
}

// expire drops answers older than maxAge at now.
func (x *Index) expire(now time.Time) {
	if x.maxAge <= 0 {
		return
	}
	for x.size > 0 {
		list := x.byAddr[x.order[x.head]]
		if len(list) == 0 || now.Sub(list[0].Time) <= x.maxAge {
			return
		}
		x.evictOldest()
	}
}

// AddDenial records a denied query. Denials should be added in time order.
func (x *Index) AddDenial(d Denial) {
	d.Client = d.Client.Unmap()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.denials == nil {
		x.denials = make([]Denial, maxDenials)
	}
	if x.dSize == maxDenials {
		x.denials[x.dHead] = Denial{}
		x.dHead = (x.dHead + 1) % maxDenials
		x.dSize--
	}
	x.denials[(x.dHead+x.dSize)%maxDenials] = d
	x.dSize++
}

// Denials is the number of denied queries held.
func (x *Index) Denials() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.dSize
}

// deniedQuery returns the newest denied query of client, at most maxAge
// old and not after now, for one of names (compared without case).
func (x *Index) deniedQuery(client netip.Addr, names []string, now time.Time) (Denial, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := x.dSize - 1; i >= 0; i-- {
		d := x.denials[(x.dHead+i)%maxDenials]
		if d.Time.After(now) || d.Client != client {
			continue
		}
		if x.maxAge > 0 && now.Sub(d.Time) > x.maxAge {
			break // older ones are older still
		}
		for _, n := range names {
			if strings.EqualFold(strings.TrimSuffix(n, "."), strings.TrimSuffix(d.Name, ".")) {
				return d, true
			}
		}
	}
	return Denial{}, false
}

// Len is the number of address entries held.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.size
}

// lookup returns the answers for addr, oldest first.
func (x *Index) lookup(addr netip.Addr, now time.Time) []*Answer {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expire(now)
	return append([]*Answer(nil), x.byAddr[addr.Unmap()]...)
}

// Explain decides why d was dropped. scopeClient is true when approvals
// are per client (firewall scope "client"), not per group.
func (x *Index) Explain(d Drop, scopeClient bool) Result {
	return x.ExplainWith(d, scopeClient, nil)
}

// ExplainWith is Explain with the policy at hand: when no approval of the
// source's own explains the drop, a denied query of the source for a name
// recently answered (to anyone) with the destination makes it
// name_denied; so do such names when policy denies every one of them to
// the source. Nothing is resolved to explain a drop.
func (x *Index) ExplainWith(d Drop, scopeClient bool, policy PolicyFunc) Result {
	answers := x.lookup(d.Dst, d.Time)
	var r Result
	seen := map[string]bool{}
	for _, a := range answers {
		for _, n := range append([]string{a.Name}, a.Targets...) {
			if n != "" && !seen[n] {
				seen[n] = true
				r.Names = append(r.Names, n)
			}
		}
	}
	sort.Strings(r.Names)
	if d.Group == "" {
		r.Reason = UnlistedSource
		return r
	}
	if (d.Proto == unix.IPPROTO_TCP || d.Proto == unix.IPPROTO_UDP) && (d.Port == 53 || d.Port == 853) {
		r.Reason = ForeignResolver
		return r
	}
	var mine, others []*Answer
	for _, a := range answers {
		if a.Group == d.Group && (!scopeClient || a.Client == d.Src.Unmap()) {
			mine = append(mine, a)
		} else if !a.Denied {
			others = append(others, a)
		}
	}
	// The newest of the source's own answers decides, in this order: a
	// live approval on other ports, an expired approval, a denial.
	var live, expired, denied *Answer
	var livePorts []Port
	for _, a := range mine {
		switch {
		case a.Denied:
			denied = a
		case !d.Time.Before(a.Expiry):
			expired = a
		default:
			if len(a.Ports) == 0 || hasPort(a.Ports, d.Proto, d.Port) {
				r.Reason, r.Name, r.AnswerTime, r.Expiry = Unexplained, a.Name, a.Time, a.Expiry
				if a.Inherited {
					r.AnswerTime = time.Time{}
				}
				// A reload (or a restart's re-check) removes the elements
				// of answers the policy denies now: say which name.
				if name, rule, ok := deniedNow(policy, d.Src.Unmap(), a); ok {
					r.Reason, r.Name, r.Rule = NameDenied, name, rule
				}
				return r
			}
			live = a
			for _, p := range a.Ports {
				if !slices.Contains(livePorts, p) {
					livePorts = append(livePorts, p)
				}
			}
		}
	}
	set := func(a *Answer, reason string) Result {
		r.Reason, r.Name, r.AnswerTime, r.Expiry = reason, a.Name, a.Time, a.Expiry
		if a.Inherited {
			r.AnswerTime = time.Time{}
		}
		return r
	}
	if live != nil {
		r = set(live, OtherPorts)
		r.Ports = livePorts
		return r
	}
	if expired != nil {
		return set(expired, Expired)
	}
	if denied != nil {
		r = set(denied, NameDenied)
		r.Rule = denied.Rule
		return r
	}
	if den, ok := x.deniedQuery(d.Src.Unmap(), r.Names, d.Time); ok {
		r.Reason, r.Name, r.Rule, r.AnswerTime = NameDenied, den.Name, den.Rule, den.Time
		return r
	}
	if policy != nil && len(others) > 0 {
		// The names of others' answers, newest first: name_denied when
		// the policy denies the source every one of them.
		var deniedBy *Answer
		var rule string
		allowed := false
		for i := len(others) - 1; i >= 0 && !allowed; i-- {
			rl, no := policy(d.Src.Unmap(), others[i].Name)
			if !no {
				allowed = true
			} else if deniedBy == nil {
				deniedBy, rule = others[i], rl
			}
		}
		if !allowed && deniedBy != nil {
			r = set(deniedBy, NameDenied)
			r.Rule = rule
			return r
		}
	}
	if len(others) > 0 {
		a := others[len(others)-1]
		r = set(a, ResolvedByOtherClient)
		r.Client = a.Client
		return r
	}
	r.Reason = NeverResolved
	return r
}

// deniedNow is the first of a's names (query name, then targets) that
// policy denies client now, and the rule; ok is false when it denies none
// or there is no policy.
func deniedNow(policy PolicyFunc, client netip.Addr, a *Answer) (name, rule string, ok bool) {
	if policy == nil {
		return "", "", false
	}
	for _, n := range append([]string{a.Name}, a.Targets...) {
		if n == "" {
			continue
		}
		if rl, denied := policy(client, n); denied {
			return n, rl, true
		}
	}
	return "", "", false
}

func hasPort(ports []Port, proto uint8, port uint16) bool {
	for _, q := range ports {
		if q.Proto == proto && q.From <= port && port <= q.To {
			return true
		}
	}
	return false
}
