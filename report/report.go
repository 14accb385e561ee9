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
}

// Name is one query name's tally within a group.
type Name struct {
	QName     string    `json:"qname"`
	Allowed   int       `json:"allowed"`
	Denied    int       `json:"denied"`
	WouldDeny int       `json:"would_deny"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
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
	r := agg.report(threshold)
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
}

type aggregator struct {
	r      Report
	groups map[string]*groupAgg
}

type groupAgg struct {
	g     Group
	names map[string]*Name
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
	case querylog.DecisionDeny:
		ga.g.Denied++
		n.Denied++
	case querylog.DecisionWouldDeny:
		ga.g.WouldDeny++
		n.WouldDeny++
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

func (a *aggregator) report(threshold int) *Report {
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
		g.Allow, g.Collapsed, g.DeniedNames = propose(g.Names, threshold)
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
