package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteJSON writes the whole report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a per-group summary table followed by a TOML block
// that can be pasted into the configuration.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("egressd query log report\n")
	ew.printf("files:     %s\n", strings.Join(r.Files, ", "))
	ew.printf("entries:   %d (malformed lines skipped: %d, refused queries: %d)\n", r.Entries, r.Malformed, r.Refused)
	if !r.From.IsZero() {
		ew.printf("period:    %s .. %s\n", stamp(r.From), stamp(r.To))
	}
	if len(r.Groups) == 0 {
		ew.printf("\nno group queries found\n")
	}
	for _, g := range r.Groups {
		writeGroup(ew, g)
	}
	return ew.err
}

func writeGroup(ew *errWriter, g *Group) {
	ew.printf("\ngroup %s: %d queries (%d allowed, %d denied, %d would_deny), %d names\n",
		tomlString(g.Name), g.Allowed+g.Denied+g.WouldDeny, g.Allowed, g.Denied, g.WouldDeny, len(g.Names))
	writeNameTable(ew, g.Names)

	if len(g.DeniedNames) > 0 {
		ew.printf("\n  denied by policy, not proposed:\n")
		for _, n := range g.DeniedNames {
			ew.printf("    %s\n", n)
		}
	}
	if len(g.PolicyDenied) > 0 {
		ew.printf("\n  denied by the group's policy, not proposed:\n")
		for _, d := range g.PolicyDenied {
			ew.printf("    %s (%s)\n", d.QName, d.Rule)
		}
	}
	for _, b := range g.Tunnelling {
		ew.printf("\n  possible DNS tunnelling, not proposed: %s: %d subdomains, %d random-looking; review the clients that asked before allowing any of it\n",
			b.Domain, b.Subdomains, b.RandomLooking)
	}
	if g.DefaultAllow {
		ew.printf("\n  default is allow: nothing to propose (allow rules would change nothing)\n")
		return
	}
	ew.printf("\n  proposed allow rules:\n\n")
	writeTOML(ew, g)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// errWriter keeps the first write error so the formatting code stays flat.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	fmt.Fprintf(e, format, args...)
}
