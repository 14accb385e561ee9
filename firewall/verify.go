package firewall

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
)

// tableState describes the structure of egressd's table as the kernel lists
// it (chains, their rules, sets; no set elements), one line per object, so
// two listings compare by map equality and differences can be named.
type tableState struct {
	table   string
	present bool
	objects map[string]string // "chain forward" -> its hook and policy, ...
}

// readTableState lists the table's structure over c. It costs one dump of
// the inet tables, one of the inet chains, one of the table's sets and one
// per chain for its rules.
func readTableState(c nftConn, table string) (tableState, error) {
	st := tableState{table: table, objects: map[string]string{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("firewall: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == table {
			st.present = true
		}
	}
	if !st.present {
		return st, nil
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: table}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("firewall: list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != table {
			continue
		}
		st.objects["chain "+ch.Name] = describeChain(ch)
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return st, fmt.Errorf("firewall: list rules of chain %s: %w", ch.Name, err)
		}
		st.objects["rules of chain "+ch.Name] = describeRules(rules)
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return st, fmt.Errorf("firewall: list sets: %w", err)
	}
	for _, s := range sets {
		st.objects["set "+s.Name] = describeSet(s)
	}
	return st, nil
}

func describeChain(ch *nftables.Chain) string {
	var b strings.Builder
	fmt.Fprintf(&b, "type=%s", ch.Type)
	if ch.Hooknum != nil {
		fmt.Fprintf(&b, " hook=%d", *ch.Hooknum)
	}
	if ch.Priority != nil {
		fmt.Fprintf(&b, " priority=%d", *ch.Priority)
	}
	if ch.Policy != nil {
		fmt.Fprintf(&b, " policy=%d", *ch.Policy)
	}
	return b.String()
}

// describeRules prints each rule's expressions. Handles are left out: they
// change with every install.
func describeRules(rules []*nftables.Rule) string {
	var b strings.Builder
	for _, r := range rules {
		for _, e := range r.Exprs {
			fmt.Fprintf(&b, "%T%+v ", e, e)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func describeSet(s *nftables.Set) string {
	return fmt.Sprintf("key=%s/%d constant=%t interval=%t timeout=%t concat=%t default_timeout=%s",
		s.KeyType.Name, s.KeyType.Bytes, s.Constant, s.Interval, s.HasTimeout, s.Concatenation, s.Timeout)
}

// differences names what got lists that want lacks, has extra, or has
// changed. Empty means got matches want.
func (want tableState) differences(got tableState) []string {
	if !got.present {
		return []string{"table inet " + want.table + " missing"}
	}
	var out []string
	for k, w := range want.objects {
		g, ok := got.objects[k]
		switch {
		case !ok:
			out = append(out, k+" missing")
		case g != w:
			out = append(out, k+" changed")
		}
	}
	for k := range got.objects {
		if _, ok := want.objects[k]; !ok {
			out = append(out, k+" unexpected")
		}
	}
	sort.Strings(out)
	return out
}

// matchesLayout checks that a freshly read state has exactly the layout's
// chains, rule counts and sets, so a baseline taken right after an install
// is known to be egressd's own.
func (st tableState) matchesLayout(l layout) error {
	if !st.present {
		return fmt.Errorf("firewall: table %s not listed after install", l.table)
	}
	want := map[string]bool{}
	for _, ch := range l.chains {
		want["chain "+ch.name] = true
		want["rules of chain "+ch.name] = true
		got := strings.Count(st.objects["rules of chain "+ch.name], "\n")
		if got != len(ch.rules) {
			return fmt.Errorf("firewall: chain %s lists %d rules after install, want %d", ch.name, got, len(ch.rules))
		}
	}
	for _, s := range l.sets {
		want["set "+s.name] = true
	}
	for k := range st.objects {
		if !want[k] {
			return fmt.Errorf("firewall: %s listed after install", k)
		}
	}
	if len(st.objects) != len(want) {
		return fmt.Errorf("firewall: table %s lists %d objects after install, want %d", l.table, len(st.objects), len(want))
	}
	return nil
}
