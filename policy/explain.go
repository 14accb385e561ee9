package policy

import "net/netip"

// MatchKind says how a rule or category matched a name.
type MatchKind uint8

const (
	MatchExact MatchKind = iota
	MatchWildcard
	MatchCategory
)

var matchKindNames = [...]string{"exact", "wildcard", "category"}

func (k MatchKind) String() string {
	if int(k) < len(matchKindNames) {
		return matchKindNames[k]
	}
	return "unknown"
}

// Match is one rule or category of the client's group that matches the
// name, whether or not it decided.
type Match struct {
	Kind    MatchKind
	Rule    string // rule text, or "category:NAME"
	Source  string // config key: "group[servers].allow", "categories.malware"
	Verdict Verdict
	Ports   []PortRange // this rule's own ports; nil means any
	// Deciding marks the matches the decision came from.
	Deciding bool
}

// Explanation is a decision with everything that led to it, for the
// explain command.
type Explanation struct {
	Client   netip.Addr
	Name     string // the query name, normalized (punycode for Unicode input)
	QType    uint16
	Decision Decision
	// Matches lists the matching rules in precedence order: exact rules,
	// wildcards from the longest parent to the shortest, denied categories,
	// permitted categories. Empty when the client is in no group.
	Matches []Match
}

// Explain decides like Decide and also reports every rule and category of
// the client's group that matches the name. It allocates freely; it is not
// meant for the query path.
func (e *Engine) Explain(client netip.Addr, qname string, qtype uint16) Explanation {
	name := NormalizeName(qname)
	ex := Explanation{Client: client, Name: name, QType: qtype, Decision: e.Decide(client, name, qtype)}
	g := e.clients.lookup(client)
	if g == nil {
		return ex
	}
	b := []byte(name)
	decidingRules, _ := g.explicit(b)
	addRules := func(nr *nameRules, kind MatchKind) {
		if nr == nil {
			return
		}
		deciding := nr == decidingRules
		src := "group[" + g.name + "]."
		for _, r := range nr.deny {
			ex.Matches = append(ex.Matches, Match{Kind: kind, Rule: r.Text, Source: src + "deny", Verdict: Deny, Deciding: deciding})
		}
		for _, r := range nr.allow {
			ex.Matches = append(ex.Matches, Match{Kind: kind, Rule: r.Text, Source: src + "allow", Verdict: Allow, Ports: r.Ports,
				Deciding: deciding && nr.decision.Verdict == Allow})
		}
	}
	addRules(g.exact[name], MatchExact)
	for i := nextLabel(b, 0); i < len(b); i = nextLabel(b, i) {
		addRules(g.wildcard[name[i:]], MatchWildcard)
	}

	if g.catMask == 0 {
		return ex
	}
	bits := e.matcher.Match(name)
	decidingCat := ""
	if decidingRules == nil {
		if c, ok := g.categorized(bits); ok {
			decidingCat = c.name
		}
	}
	for _, cats := range [][]categoryRule{g.denyCats, g.allowCats} {
		for _, c := range cats {
			if bits&c.mask != 0 {
				ex.Matches = append(ex.Matches, Match{Kind: MatchCategory, Rule: c.decision.Rule, Source: c.decision.Source,
					Verdict: c.decision.Verdict, Deciding: c.name == decidingCat})
			}
		}
	}
	return ex
}
