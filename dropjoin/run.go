package dropjoin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/nflog"
	"github.com/egressd/egressd/querylog"
	"golang.org/x/sys/unix"
)

// dropPrefix starts the log prefix of the firewall's drop rules; the group
// id or "unlisted" follows.
const dropPrefix = "egressd drop "

// Joiner turns drop events into query log lines and counts. Events reach
// it through a bounded queue (Enqueue never blocks); a full queue counts
// the event as lost.
type Joiner struct {
	Index       *Index
	ScopeClient bool
	// GroupOf is the group of a source address, "" for none.
	GroupOf func(netip.Addr) string
	// Log writes a drop line (the query log's Write).
	Log func(*querylog.Entry)
	// Count counts a drop by group and reason.
	Count func(group, reason string)
	// Policy says what the policy decides now for a client and a name
	// (nil: drops are explained by answers and denied queries only).
	Policy PolicyFunc

	queue chan nflog.Event
	lost  atomic.Uint64
}

// NewJoiner makes a joiner with a queue of queueLen events.
func NewJoiner(x *Index, queueLen int) *Joiner {
	return &Joiner{Index: x, queue: make(chan nflog.Event, queueLen)}
}

// Enqueue hands ev to Run without blocking.
func (j *Joiner) Enqueue(ev nflog.Event) {
	select {
	case j.queue <- ev:
	default:
		j.lost.Add(1)
	}
}

// Lost is how many events a full queue turned away.
func (j *Joiner) Lost() uint64 { return j.lost.Load() }

// Run handles queued events until ctx ends.
func (j *Joiner) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-j.queue:
			j.Handle(ev)
		}
	}
}

// Handle explains one event, logs and counts it. Events of other rules
// than the drop rules (audit's would-deny) are ignored.
func (j *Joiner) Handle(ev nflog.Event) {
	if !strings.HasPrefix(ev.Prefix, dropPrefix) {
		return
	}
	d := Drop{Time: ev.Time, Src: ev.Src.Unmap(), Dst: ev.Dst.Unmap(), Proto: ev.Proto, Port: ev.Dport}
	if !strings.HasPrefix(ev.Prefix, dropPrefix+"unlisted:") && j.GroupOf != nil {
		d.Group = j.GroupOf(d.Src)
	}
	r := j.Index.ExplainWith(d, j.ScopeClient, j.Policy)
	if j.Count != nil {
		j.Count(d.Group, r.Reason)
	}
	if j.Log != nil {
		j.Log(Entry(d, r))
	}
}

// Entry is the query log line of a drop.
func Entry(d Drop, r Result) *querylog.Entry {
	e := &querylog.Entry{
		Time: d.Time, Client: d.Src.String(), Group: d.Group, QName: r.Name,
		Decision: querylog.DecisionDrop, Rule: r.Rule,
		Drop: &querylog.Drop{
			Destination: d.Dst.String(), Protocol: ProtoName(d.Proto), Port: d.Port, Reason: r.Reason,
		},
	}
	if r.Client.IsValid() {
		e.Drop.ResolvedBy = r.Client.String()
	}
	for _, p := range r.Ports {
		e.Drop.ApprovedPorts = append(e.Drop.ApprovedPorts, PortString(p))
	}
	if !r.AnswerTime.IsZero() {
		e.Drop.AnswerTime = r.AnswerTime.UTC().Format(time.RFC3339Nano)
	}
	if !r.Expiry.IsZero() {
		e.Drop.Expiry = r.Expiry.UTC().Format(time.RFC3339Nano)
	}
	return e
}

// Recording is an Enforcer that records every allowance in effect in an
// index, with the firewall's element timeout (TTL plus Grace) as expiry.
type Recording struct {
	enforce.Enforcer
	Index *Index
	Grace time.Duration
	Now   func() time.Time
}

func (r *Recording) record(a enforce.Allowance) {
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	r.Index.Add(Answer{
		Time: now, Expiry: now.Add(a.TTL + r.Grace), Client: a.Client, Group: a.Group,
		Name: a.Name, Targets: slices.Clone(a.Targets), Addrs: slices.Clone(a.IPs), Ports: a.Ports,
	})
}

// Allow installs a and records it once in effect.
func (r *Recording) Allow(ctx context.Context, a enforce.Allowance) error {
	err := r.Enforcer.Allow(ctx, a)
	if err == nil && len(a.IPs) > 0 {
		r.record(a)
	}
	return err
}

// InEffect asks the enforcer; an allowance in effect is recorded too, as
// its answer is given.
func (r *Recording) InEffect(a enforce.Allowance) bool {
	c, ok := r.Enforcer.(enforce.InEffectChecker)
	if !ok || !c.InEffect(a) {
		return false
	}
	if len(a.IPs) > 0 {
		r.record(a)
	}
	return true
}

// QueryLogger is the resolver's query log (resolver.QueryLogger).
type QueryLogger interface {
	Keep(decision string) bool
	Write(e *querylog.Entry)
}

// DenialLog is a query log that records every denied query in Index on
// its way, also when the query log itself keeps none.
type DenialLog struct {
	QueryLogger
	Index *Index
}

// Keep keeps denied queries for the index, the rest as the query log does.
func (l *DenialLog) Keep(decision string) bool {
	return decision == querylog.DecisionDeny || l.QueryLogger.Keep(decision)
}

// Write records a denied query and hands e to the query log if it keeps
// denied queries; other entries were kept by Keep already.
func (l *DenialLog) Write(e *querylog.Entry) {
	if e.Decision == querylog.DecisionDeny {
		if c, err := netip.ParseAddr(e.Client); err == nil {
			t := e.Time
			if t.IsZero() {
				t = time.Now()
			}
			l.Index.AddDenial(Denial{Time: t, Client: c, Name: e.QName, Rule: e.Rule})
		}
		if !l.QueryLogger.Keep(e.Decision) {
			return
		}
	}
	l.QueryLogger.Write(e)
}

// Why is the answer of the /why endpoint.
type Why struct {
	Entry *querylog.Entry `json:"drop"`
	// Policy is what the policy decides now, per name that pointed at the
	// destination: "allow", "deny (RULE)".
	Policy map[string]string `json:"policy"`
}

// WhyHandler answers GET /why?client=IP&dest=ADDR[:PORT[/PROTO]] with the
// reasoning a drop of that packet would get now. decide says what the
// policy decides for client and name.
func (j *Joiner) WhyHandler(decide func(client netip.Addr, name string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		client, err := netip.ParseAddr(req.URL.Query().Get("client"))
		if err != nil {
			http.Error(w, "client: "+err.Error(), http.StatusBadRequest)
			return
		}
		d, err := ParseDest(req.URL.Query().Get("dest"))
		if err != nil {
			http.Error(w, "dest: "+err.Error(), http.StatusBadRequest)
			return
		}
		d.Time, d.Src = time.Now(), client.Unmap()
		if j.GroupOf != nil {
			d.Group = j.GroupOf(d.Src)
		}
		r := j.Index.ExplainWith(d, j.ScopeClient, j.Policy)
		out := Why{Entry: Entry(d, r), Policy: map[string]string{}}
		for _, n := range r.Names {
			out.Policy[n] = decide(d.Src, n)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
}

// ParseDest parses ADDR, ADDR:PORT, [V6]:PORT or either with /tcp or
// /udp (the default is tcp). Without a port the port is 0.
func ParseDest(s string) (Drop, error) {
	d := Drop{Proto: unix.IPPROTO_TCP}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		switch s[i+1:] {
		case "tcp":
		case "udp":
			d.Proto = unix.IPPROTO_UDP
		default:
			return d, fmt.Errorf("protocol %q is not tcp or udp", s[i+1:])
		}
		s = s[:i]
	}
	if a, err := netip.ParseAddr(s); err == nil {
		d.Dst = a.Unmap()
		return d, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return d, err
	}
	d.Dst, d.Port = ap.Addr().Unmap(), ap.Port()
	return d, nil
}

// FormatWhy prints w for people.
func FormatWhy(w Why) string {
	var b strings.Builder
	e := w.Entry
	fmt.Fprintf(&b, "client %s (group %s) -> %s %s port %d: %s\n", e.Client, orNone(e.Group), e.Drop.Destination, e.Drop.Protocol, e.Drop.Port, e.Drop.Reason)
	switch e.Drop.Reason {
	case NeverResolved:
		b.WriteString("  no recent answer of egressd contains this address\n")
	case ResolvedByOtherClient:
		if e.Drop.ResolvedBy == "" {
			fmt.Fprintf(&b, "  %s was resolved to it for another group, not this client's\n", nameOr(e.QName))
		} else {
			fmt.Fprintf(&b, "  %s was resolved to it for client %s, not this client's approval\n", nameOr(e.QName), e.Drop.ResolvedBy)
		}
	case Expired:
		if e.Drop.AnswerTime == "" {
			fmt.Fprintf(&b, "  %s was approved before egressd started; the approval expired at %s\n", nameOr(e.QName), e.Drop.Expiry)
		} else {
			fmt.Fprintf(&b, "  %s was answered at %s; the approval expired at %s\n", e.QName, e.Drop.AnswerTime, e.Drop.Expiry)
		}
	case OtherPorts:
		fmt.Fprintf(&b, "  %s is approved only on %s\n", nameOr(e.QName), strings.Join(e.Drop.ApprovedPorts, ", "))
	case NameDenied:
		fmt.Fprintf(&b, "  %s was denied by rule %s\n", e.QName, e.Rule)
	case ForeignResolver:
		b.WriteString("  DNS and DNS over TLS go to egressd only\n")
	case UnlistedSource:
		b.WriteString("  the source is in no group\n")
	case Unexplained:
		fmt.Fprintf(&b, "  %s approved it on this port until %s\n", nameOr(e.QName), e.Drop.Expiry)
	}
	names := make([]string, 0, len(w.Policy))
	for n := range w.Policy {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  policy now for %s: %s\n", n, w.Policy[n])
	}
	return b.String()
}

// nameOr is the name, or what stands for an unknown one (an approval
// carried over from an earlier run without its name).
func nameOr(name string) string {
	if name == "" {
		return "an approval of an unknown name"
	}
	return name
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
