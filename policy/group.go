package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// group is one compiled GroupSpec. Every Decision it can return is built at
// compile time, so deciding only copies a struct.
type group struct {
	name      string
	exact     map[string]*nameRules // keyed by normalized name
	wildcard  map[string]*nameRules // keyed by the parent a "*." rule sits under
	denyCats  []categoryRule        // config order; the first match is reported
	allowCats []categoryRule
	catMask   uint64 // union of every category bit the group refers to
	fallback  Decision
}

// nameRules holds every rule written for one name at one specificity
// (exact, or wildcard under that parent).
type nameRules struct {
	allow, deny []Rule
	decision    Decision // deny when any deny rule exists: a tie goes to deny
}

type categoryRule struct {
	name     string
	mask     uint64
	decision Decision
}

func compileGroup(spec GroupSpec, categoryBits map[string]int) (*group, error) {
	g := &group{
		name:     spec.Name,
		exact:    make(map[string]*nameRules),
		wildcard: make(map[string]*nameRules),
	}
	base := Decision{
		Group:    spec.Name,
		Action:   spec.Action,
		Sinkhole: slices.Clone(spec.Sinkhole),
		Mode:     spec.Mode,
		// Answers are checked against them after the name: see
		// Decision.DenyAddresses.
		DenyAddresses: slices.Clone(spec.DenyAddresses),
	}
	src := func(key string) string { return "group[" + spec.Name + "]." + key }

	for i, text := range spec.Allow {
		r, err := ParseRule(text)
		if err != nil {
			return nil, &CompileError{Group: spec.Name, Key: "allow", Index: i, Err: err}
		}
		nr := g.rulesFor(r)
		nr.allow = append(nr.allow, r)
	}
	for i, text := range spec.Deny {
		r, err := ParseRule(text)
		if err == nil && r.Ports != nil {
			err = fmt.Errorf("deny rule %q has ports; a denied name is never resolved, so ports cannot apply", r.Text)
		}
		if err != nil {
			return nil, &CompileError{Group: spec.Name, Key: "deny", Index: i, Err: err}
		}
		nr := g.rulesFor(r)
		nr.deny = append(nr.deny, r)
	}
	for _, table := range []map[string]*nameRules{g.exact, g.wildcard} {
		for _, nr := range table {
			nr.decision = nr.decide(base, src("allow"), src("deny"))
		}
	}

	var err error
	if g.denyCats, err = compileCategories(spec.Name, "deny_categories", spec.DenyCategories, categoryBits, base, Deny); err != nil {
		return nil, err
	}
	if g.allowCats, err = compileCategories(spec.Name, "allow_categories", spec.AllowCategories, categoryBits, base, Allow); err != nil {
		return nil, err
	}
	for _, c := range slices.Concat(g.denyCats, g.allowCats) {
		g.catMask |= c.mask
	}

	g.fallback = base
	g.fallback.Verdict = Deny
	if spec.DefaultAllow {
		g.fallback.Verdict = Allow
	}
	g.fallback.Rule = "default"
	g.fallback.Source = src("default")
	return g, nil
}

func (g *group) rulesFor(r Rule) *nameRules {
	table := g.exact
	if r.Wildcard {
		table = g.wildcard
	}
	nr := table[r.Name]
	if nr == nil {
		nr = &nameRules{}
		table[r.Name] = nr
	}
	return nr
}

// decide builds the decision for one name. Several allow rules for the
// same name (say "api.x.com:443" and "api.x.com:8443") merge their ports
// and are all named in Rule.
func (nr *nameRules) decide(base Decision, allowSource, denySource string) Decision {
	d := base
	if len(nr.deny) > 0 {
		d.Verdict = Deny
		d.Rule = nr.deny[0].Text
		d.Source = denySource
		return d
	}
	var texts []string
	for _, r := range nr.allow {
		if !slices.Contains(texts, r.Text) {
			texts = append(texts, r.Text)
		}
	}
	d.Verdict = Allow
	d.Rule = strings.Join(texts, ", ")
	d.Source = allowSource
	d.Ports = mergePorts(nr.allow)
	return d
}

func compileCategories(groupName, key string, names []string, categoryBits map[string]int, base Decision, v Verdict) ([]categoryRule, error) {
	var out []categoryRule
	for i, name := range names {
		bit, ok := categoryBits[name]
		if !ok {
			return nil, &CompileError{Group: groupName, Key: key, Index: i, Err: fmt.Errorf("unknown category %q", name)}
		}
		if slices.ContainsFunc(out, func(c categoryRule) bool { return c.name == name }) {
			continue
		}
		d := base
		d.Verdict = v
		d.Rule = "category:" + name
		d.Source = "categories." + name
		out = append(out, categoryRule{name: name, mask: 1 << bit, decision: d})
	}
	return out, nil
}

// explicit applies the allow and deny rules: the exact name first, then
// wildcards from the longest parent to the shortest. A wildcard never
// matches the name it sits under, so the walk starts at the parent.
func (g *group) explicit(name []byte) (*nameRules, bool) {
	if nr := g.exact[string(name)]; nr != nil {
		return nr, true
	}
	for i := nextLabel(name, 0); i < len(name); i = nextLabel(name, i) {
		if nr := g.wildcard[string(name[i:])]; nr != nil {
			return nr, true
		}
	}
	return nil, false
}

// categorized applies the group's categories to the set bits reported by
// the matcher: any denied category beats any permitted one.
func (g *group) categorized(bits uint64) (*categoryRule, bool) {
	if bits&g.catMask == 0 {
		return nil, false
	}
	for i := range g.denyCats {
		if bits&g.denyCats[i].mask != 0 {
			return &g.denyCats[i], true
		}
	}
	for i := range g.allowCats {
		if bits&g.allowCats[i].mask != 0 {
			return &g.allowCats[i], true
		}
	}
	return nil, false
}

// CompileError locates a problem in one group so a config loader can map
// it to a file line: Key is the group key ("allow", "deny",
// "allow_categories", "deny_categories", "name" or "clients") and Index
// the position in that list, or -1.
type CompileError struct {
	Group string
	Key   string
	Index int
	Err   error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("group[%s].%s: %v", e.Group, e.Key, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

var errNoMatcher = errors.New("categories are used but no category matcher was given")
