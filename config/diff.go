package config

import (
	"fmt"
	"sort"
)

// Diff describes what changed between two configs, for the reload log:
// groups, their rules and categories, and category definitions.
func Diff(old, cur *Config) []string {
	var out []string
	oldCats, curCats := keys(old.Categories), keys(cur.Categories)
	for _, c := range minus(curCats, oldCats) {
		out = append(out, "category added: "+c)
	}
	for _, c := range minus(oldCats, curCats) {
		out = append(out, "category removed: "+c)
	}
	oldGroups := map[string]*Group{}
	for _, g := range old.Groups {
		oldGroups[g.Name] = g
	}
	curNames := map[string]bool{}
	for _, g := range cur.Groups {
		curNames[g.Name] = true
		prev, ok := oldGroups[g.Name]
		if !ok {
			out = append(out, "group added: "+g.Name)
			continue
		}
		for _, f := range []struct {
			what     string
			old, cur []string
		}{
			{"allow", prev.Allow, g.Allow},
			{"deny", prev.Deny, g.Deny},
			{"allow_categories", prev.AllowCategories, g.AllowCategories},
			{"deny_categories", prev.DenyCategories, g.DenyCategories},
			{"clients", prev.Clients, g.Clients},
			{"deny_addresses", prev.DenyAddresses, g.DenyAddresses},
		} {
			for _, r := range minus(f.cur, f.old) {
				out = append(out, fmt.Sprintf("group[%s].%s added: %s", g.Name, f.what, r))
			}
			for _, r := range minus(f.old, f.cur) {
				out = append(out, fmt.Sprintf("group[%s].%s removed: %s", g.Name, f.what, r))
			}
		}
		for _, f := range []struct{ what, old, cur string }{
			{"default", prev.Default, g.Default},
			{"action", prev.Action, g.Action},
			{"mode", prev.Spec.Mode.String(), g.Spec.Mode.String()},
		} {
			if f.old != f.cur {
				out = append(out, fmt.Sprintf("group[%s].%s: %s -> %s", g.Name, f.what, f.old, f.cur))
			}
		}
	}
	for _, g := range old.Groups {
		if !curNames[g.Name] {
			out = append(out, "group removed: "+g.Name)
		}
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// minus returns the elements of a not in b, in a's order.
func minus(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	return out
}
