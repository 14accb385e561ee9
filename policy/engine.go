package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Engine is a compiled, immutable policy. It is safe for concurrent use;
// a reload compiles a new Engine and swaps it in.
type Engine struct {
	groups  []*group // config order
	byName  map[string]*group
	clients clientIndex
	matcher CategoryMatcher
	gen     uint64 // see Generation
}

// generations numbers compiled engines, from 1.
var generations atomic.Uint64

// Generation numbers this Engine among those the process compiled: an
// Engine compiled later has a larger one. An answer decided under an
// Engine carries it to the firewall (enforce.Allowance.Generation), which
// can then tell an answer decided before a reload.
func (e *Engine) Generation() uint64 { return e.gen }

// noGroup is the decision for a client that no group contains; the server
// answers it REFUSED.
var noGroup = Decision{Verdict: Deny, Rule: "no-group", Action: ActionRefused}

// Compile builds an Engine. categoryBits assigns each category name its bit
// in the sets m.Match returns (0 to 63); m may be nil when no group uses
// categories. Errors about one group are *CompileError.
func Compile(groups []GroupSpec, categoryBits map[string]int, m CategoryMatcher) (*Engine, error) {
	if err := checkCategoryBits(categoryBits); err != nil {
		return nil, err
	}
	e := &Engine{byName: make(map[string]*group, len(groups)), matcher: m}
	for _, spec := range groups {
		if spec.Name == "" {
			return nil, &CompileError{Group: "", Key: "name", Index: -1, Err: errors.New("group has no name")}
		}
		if _, dup := e.byName[spec.Name]; dup {
			return nil, &CompileError{Group: spec.Name, Key: "name", Index: -1, Err: fmt.Errorf("duplicate group name %q", spec.Name)}
		}
		g, err := compileGroup(spec, categoryBits)
		if err != nil {
			return nil, err
		}
		if g.catMask != 0 && m == nil {
			key := "deny_categories"
			if len(g.denyCats) == 0 {
				key = "allow_categories"
			}
			return nil, &CompileError{Group: spec.Name, Key: key, Index: -1, Err: errNoMatcher}
		}
		for i, p := range spec.Clients {
			if err := e.clients.add(p, g); err != nil {
				return nil, &CompileError{Group: spec.Name, Key: "clients", Index: i, Err: err}
			}
		}
		e.groups = append(e.groups, g)
		e.byName[g.name] = g
	}
	e.gen = generations.Add(1)
	return e, nil
}

func checkCategoryBits(categoryBits map[string]int) error {
	owner := make(map[int]string, len(categoryBits))
	for name, bit := range categoryBits {
		if bit < 0 || bit > 63 {
			return fmt.Errorf("category %q has bit %d; bits must be 0 to 63", name, bit)
		}
		if other, ok := owner[bit]; ok {
			a, b := min(name, other), max(name, other)
			return fmt.Errorf("categories %q and %q share bit %d", a, b, bit)
		}
		owner[bit] = name
	}
	return nil
}

// Decide applies the client's group to qname (wire form: any case, with or
// without the trailing dot). Precedence: the most specific explicit rule
// (exact beats wildcard, a longer wildcard parent beats a shorter, deny wins
// a tie); then categories (any denied one beats any permitted one); then the
// group default. qtype does not influence the decision today. The returned
// Ports and Sinkhole slices are shared between calls and must not be
// modified.
func (e *Engine) Decide(client netip.Addr, qname string, qtype uint16) Decision {
	g := e.clients.lookup(client)
	if g == nil {
		return noGroup
	}
	var storage [nameStorage]byte
	name := foldName(storage[:0], qname)
	if d, ok := e.decideIn(g, name, qname); ok {
		return d
	}
	return g.fallback
}

// DeniesTarget reports whether the named group denies name when it appears
// as a CNAME target: by an explicit deny rule that wins over the allows, or
// by a denied category. Names no rule or category matches are not denied;
// the group default does not apply to targets.
func (e *Engine) DeniesTarget(group string, name string) (Decision, bool) {
	g := e.byName[group]
	if g == nil {
		return Decision{}, false
	}
	var storage [nameStorage]byte
	d, ok := e.decideIn(g, foldName(storage[:0], name), name)
	if !ok || d.Verdict != Deny {
		return Decision{}, false
	}
	return d, true
}

// decideIn applies explicit rules and categories, without the default.
// name is the normalized form of raw.
func (e *Engine) decideIn(g *group, name []byte, raw string) (Decision, bool) {
	if nr, ok := g.explicit(name); ok {
		return nr.decision, true
	}
	if g.catMask == 0 {
		return Decision{}, false
	}
	if c, ok := g.categorized(e.matcher.Match(matcherName(name, raw))); ok {
		return c.decision, true
	}
	return Decision{}, false
}

// matcherName hands the matcher a normalized string: the caller's own
// string when it already was (no copy), a copy of the folded bytes if not.
func matcherName(name []byte, raw string) string {
	if string(name) == raw {
		return raw
	}
	return string(name)
}

// Groups returns the group names in config order.
func (e *Engine) Groups() []string {
	names := make([]string, len(e.groups))
	for i, g := range e.groups {
		names[i] = g.name
	}
	return names
}

// HasGroup reports whether a group of that name exists.
func (e *Engine) HasGroup(name string) bool {
	_, ok := e.byName[name]
	return ok
}
