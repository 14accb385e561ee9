// Package report summarizes egressd query logs per client group and
// proposes allow rules for what the resolver saw, typically after running
// a group in audit mode. It backs `egressd report`.
package report

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd/querylog"
)

// DefaultThreshold is how many distinct subdomains of one registrable
// domain may be listed one by one before they collapse into a wildcard.
const DefaultThreshold = 3

// Options tunes the proposal.
type Options struct {
	// Threshold: when more than this many distinct names below one
	// registrable domain were seen, propose "*.domain" plus the apex
	// instead of each name. 0 means DefaultThreshold; negative never
	// collapses.
	Threshold int
	// Policy, when set, is the running configuration: names its deny
	// rules or deny categories cover are never proposed, and groups whose
	// default is allow get no proposal. Without it the report goes by the
	// rule each log line names.
	Policy Policy
}

// Policy is what the report needs of the configuration.
type Policy interface {
	// DeniedBy returns the deny rule or deny category of group that
	// covers name (lower case, no trailing dot), or "".
	DeniedBy(group, name string) string
	// DefaultAllow reports whether group allows the names no rule covers.
	DefaultAllow(group string) bool
}

// Report is the summary of a set of query logs.
type Report struct {
	Files []string `json:"files"`
	// Entries counts valid log lines; refused ones included.
	Entries int `json:"entries"`
	// Malformed counts lines that were not a query log entry and were skipped.
	Malformed int `json:"malformed"`
	// Refused counts queries from clients outside [server].clients. They
	// carry no policy decision, so they appear in no group.
	Refused int       `json:"refused"`
	From    time.Time `json:"from,omitzero"`
	To      time.Time `json:"to,omitzero"`
	Groups  []*Group  `json:"groups"`
}

// Group is what one client group asked for.
type Group struct {
	Name      string `json:"name"`
	Allowed   int    `json:"allowed"`
	Denied    int    `json:"denied"`
	WouldDeny int    `json:"would_deny"`
	// Names is every query name, busiest first.
	Names []*Name `json:"names"`
	// Allow is the proposed allow list, in domain order.
	Allow []string `json:"proposed_allow"`
	// Collapsed explains each wildcard in Allow.
	Collapsed []Collapse `json:"collapsed"`
	// DeniedNames were blocked in enforce mode. They are never proposed:
	// a rule denied them on purpose.
	DeniedNames []string `json:"denied_names"`
	// PolicyDenied are names a deny rule or deny category of the group
	// covers (audit mode logs them would_deny, or the configuration now
	// denies them). They are never proposed either.
	PolicyDenied []PolicyDenial `json:"policy_denied"`
	// Tunnelling lists domains with a burst of random-looking subdomains,
	// the shape of DNS tunnelling; nothing under them is proposed.
	Tunnelling []Burst `json:"possible_tunnelling"`
	// DefaultAllow: the group allows unlisted names, so nothing is
	// proposed for it.
	DefaultAllow bool `json:"default_allow"`
}

// PolicyDenial is a name kept out of the proposal and the rule that
// denies it.
type PolicyDenial struct {
	QName string `json:"qname"`
	Rule  string `json:"rule"`
}

// Burst is a domain whose subdomains look like encoded data.
type Burst struct {
	Domain        string `json:"domain"`
	Subdomains    int    `json:"subdomains"`
	RandomLooking int    `json:"random_looking"`
}

// Name is one query name's tally within a group.
type Name struct {
	QName     string    `json:"qname"`
	Allowed   int       `json:"allowed"`
	Denied    int       `json:"denied"`
	WouldDeny int       `json:"would_deny"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// DeniedBy is the deny rule or category that covers the name ("" for
	// none): from the log's rule, or from Options.Policy.
	DeniedBy string `json:"denied_by,omitempty"`
}

// Total is the number of queries for the name.
func (n *Name) Total() int { return n.Allowed + n.Denied + n.WouldDeny }

// Collapse records that Subdomains distinct names below Domain were
// replaced by "*.Domain" and "Domain".
type Collapse struct {
	Domain     string `json:"domain"`
	Subdomains int    `json:"subdomains"`
}

// Run reads the query logs in files ("-" is standard input; gzip-compressed
// files, as logrotate leaves them, are read transparently) and builds the
// report. Malformed lines are counted and skipped; a file that cannot be
// read is an error.
func Run(files []string, opts Options) (*Report, error) {
	threshold := opts.Threshold
	if threshold == 0 {
		threshold = DefaultThreshold
	}
	agg := newAggregator()
	for _, file := range files {
		if err := readFile(file, agg); err != nil {
			return nil, err
		}
	}
	r := agg.report(threshold, opts.Policy)
	r.Files = slices.Clone(files)
	if r.Files == nil {
		r.Files = []string{}
	}
	return r, nil
}

// logLine is the part of a querylog.Entry the report needs.
type logLine struct {
	Time     time.Time `json:"time"`
	Group    string    `json:"group"`
	QName    string    `json:"qname"`
	Decision string    `json:"decision"`
	Rule     string    `json:"rule"`
}

type aggregator struct {
	r      Report
	groups map[string]*groupAgg
}

type groupAgg struct {
	g     Group
	names map[string]*Name
	// defaultAllowed: the log shows a name allowed by the group's default.
	defaultAllowed bool
}

func newAggregator() *aggregator {
	return &aggregator{groups: map[string]*groupAgg{}}
}

// add tallies one entry; false means it is not a usable entry.
func (a *aggregator) add(l *logLine) bool {
	qname := normalize(l.QName)
	if qname == "" {
		return false
	}
	switch l.Decision {
	case querylog.DecisionAllow, querylog.DecisionDeny, querylog.DecisionWouldDeny:
	case querylog.DecisionRefused:
		a.r.Entries++
		a.r.Refused++
		a.seen(l.Time)
		return true
	default:
		return false
	}
	a.r.Entries++
	a.seen(l.Time)
	ga := a.groups[l.Group]
	if ga == nil {
		ga = &groupAgg{g: Group{Name: l.Group}, names: map[string]*Name{}}
		a.groups[l.Group] = ga
	}
	n := ga.names[qname]
	if n == nil {
		n = &Name{QName: qname}
		ga.names[qname] = n
	}
	switch l.Decision {
	case querylog.DecisionAllow:
		ga.g.Allowed++
		n.Allowed++
		ga.defaultAllowed = ga.defaultAllowed || l.Rule == ruleDefault
	case querylog.DecisionDeny:
		ga.g.Denied++
		n.Denied++
	case querylog.DecisionWouldDeny:
		ga.g.WouldDeny++
		n.WouldDeny++
		if l.Rule != ruleDefault && l.Rule != "" && n.DeniedBy == "" {
			n.DeniedBy = l.Rule // a deny rule or category, not the default
		}
	}
	if !l.Time.IsZero() {
		if n.FirstSeen.IsZero() || l.Time.Before(n.FirstSeen) {
			n.FirstSeen = l.Time
		}
		if l.Time.After(n.LastSeen) {
			n.LastSeen = l.Time
		}
	}
	return true
}

func (a *aggregator) seen(t time.Time) {
	if t.IsZero() {
		return
	}
	if a.r.From.IsZero() || t.Before(a.r.From) {
		a.r.From = t
	}
	if t.After(a.r.To) {
		a.r.To = t
	}
}

// ruleDefault is the query log's rule for a group's default decision.
const ruleDefault = "default"

func (a *aggregator) report(threshold int, pol Policy) *Report {
	r := a.r
	r.From, r.To = utc(r.From), utc(r.To)
	r.Groups = []*Group{}
	for _, ga := range a.groups {
		g := ga.g
		g.Names = make([]*Name, 0, len(ga.names))
		for _, n := range ga.names {
			n.FirstSeen, n.LastSeen = utc(n.FirstSeen), utc(n.LastSeen)
			g.Names = append(g.Names, n)
		}
		slices.SortFunc(g.Names, func(x, y *Name) int {
			return cmp.Or(cmp.Compare(y.Total(), x.Total()), compareDomains(x.QName, y.QName))
		})
		g.DefaultAllow = ga.defaultAllowed
		if pol != nil {
			g.DefaultAllow = pol.DefaultAllow(g.Name)
			for _, n := range g.Names {
				if n.DeniedBy == "" && n.Denied == 0 {
					n.DeniedBy = pol.DeniedBy(g.Name, n.QName)
				}
			}
		}
		p := propose(g.Names, threshold)
		g.Allow, g.Collapsed, g.DeniedNames, g.PolicyDenied, g.Tunnelling = p.allow, p.collapsed, p.denied, p.policy, p.tunnelling
		if g.DefaultAllow {
			// Allow rules change nothing for such a group; proposing
			// them would only suggest the policy is being narrowed.
			g.Allow, g.Collapsed = []string{}, []Collapse{}
		}
		r.Groups = append(r.Groups, &g)
	}
	slices.SortFunc(r.Groups, func(x, y *Group) int { return strings.Compare(x.Name, y.Name) })
	return &r
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// normalize makes names from different resolvers and clients compare
// equal: lower case, no trailing dot (the root stays ".").
func normalize(qname string) string {
	qname = strings.ToLower(strings.TrimSpace(qname))
	if len(qname) > 1 {
		qname = strings.TrimSuffix(qname, ".")
	}
	return qname
}
