package report

import (
	"fmt"
	"strconv"
)

// writeNameTable prints one row per name: the name left-aligned, counts
// right-aligned, then first and last seen.
func writeNameTable(ew *errWriter, names []*Name) {
	header := []string{"QNAME", "ALLOWED", "DENIED", "WOULD_DENY", "FIRST_SEEN", "LAST_SEEN"}
	rows := [][]string{header}
	for _, n := range names {
		rows = append(rows, []string{
			n.QName, strconv.Itoa(n.Allowed), strconv.Itoa(n.Denied), strconv.Itoa(n.WouldDeny),
			stamp(n.FirstSeen), stamp(n.LastSeen),
		})
	}
	widths := make([]int, len(header))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		ew.printf("  %-*s  %*s  %*s  %*s  %-*s  %s\n",
			widths[0], row[0], widths[1], row[1], widths[2], row[2], widths[3], row[3], widths[4], row[4], row[5])
	}
}

// writeTOML prints the group's proposal as a [[group]] table ready to
// paste into the configuration; each wildcard carries a comment saying
// how many names it replaced.
func writeTOML(ew *errWriter, g *Group) {
	collapsed := map[string]int{}
	for _, c := range g.Collapsed {
		collapsed["*."+c.Domain] = c.Subdomains
	}
	ew.printf("[[group]]\nname = %s\n", tomlString(g.Name))
	if len(g.Allow) == 0 {
		ew.printf("allow = []\n")
		return
	}
	ew.printf("allow = [\n")
	for _, a := range g.Allow {
		if n, ok := collapsed[a]; ok {
			ew.printf("  %s, # %d subdomains seen\n", tomlString(a), n)
			continue
		}
		ew.printf("  %s,\n", tomlString(a))
	}
	ew.printf("]\n")
}

// tomlString quotes s as a TOML basic string. Go's %q is close but emits
// escapes TOML lacks (\x00, \a, \v), so control characters use \uXXXX.
func tomlString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20 || r == 0x7f:
			b = fmt.Appendf(b, `\u%04X`, r)
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}
