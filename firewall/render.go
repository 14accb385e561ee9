package firewall

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Render returns the table egressd installs on a kernel with every
// optional feature (AllFeatures), in the text format `nft list table inet
// NAME` prints (and `nft -f` accepts). It does not look at the kernel; see
// RenderFor and RenderForKernel. It returns an error text comment when the
// spec is invalid, so callers printing rules for a human still get an
// explanation; use Spec.Validate to check first.
func Render(spec Spec) string {
	return RenderFor(spec, AllFeatures())
}

// RenderFor is Render for a kernel with features f: the table NewNFTables
// installs there. Rules left out for a missing feature are named in a
// leading `#` comment, which `nft -f` ignores.
func RenderFor(spec Spec, f Features) string {
	if err := spec.Validate(); err != nil {
		return "# " + err.Error() + "\n"
	}
	var note string
	if !f.CtLabels {
		note = "# " + missingLabelsNote + "\n"
	}
	return note + buildLayout(spec, f).render()
}

// RenderForKernel is RenderFor with the features of the kernel egressd runs
// on (DetectFeatures). Without the privilege to probe it renders every
// feature, after a `#` comment saying the kernel was not checked.
func RenderForKernel(spec Spec) string {
	return renderDetected(spec, func() (Features, error) { return DetectFeatures(0) })
}

func renderDetected(spec Spec, detect func() (Features, error)) string {
	f, err := detect()
	if err != nil {
		why := err.Error()
		if errors.Is(err, ErrNoNetAdmin) {
			why = "probing needs CAP_NET_ADMIN"
		}
		return "# kernel not checked for conntrack labels (" + why + "); " +
			"without them egressd leaves out the prenat chains and ct label matches\n" + Render(spec)
	}
	return RenderFor(spec, f)
}

func (l layout) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", l.table)
	var blocks []string
	for _, s := range l.sets {
		gc := time.Duration(0)
		if s.dynamic() {
			gc = l.gcInterval
		}
		blocks = append(blocks, s.render(gc))
	}
	for _, c := range l.chains {
		blocks = append(blocks, c.render())
	}
	b.WriteString(strings.Join(blocks, "\n"))
	b.WriteString("}\n")
	return b.String()
}

func (s setDef) typeText() string {
	addr := "ipv6_addr"
	if s.is4 {
		addr = "ipv4_addr"
	}
	parts := []string{}
	for _, f := range s.keyFields() {
		switch f {
		case fieldSaddr, fieldDaddr:
			parts = append(parts, addr)
		case fieldL4Proto:
			parts = append(parts, "inet_proto")
		case fieldDport:
			parts = append(parts, "inet_service")
		}
	}
	return strings.Join(parts, " . ")
}

func (s setDef) flagsText() string {
	switch s.kind {
	case setClients:
		return "constant,interval"
	case setPorts:
		return "interval,timeout"
	}
	return "timeout"
}

// render prints the set as nft lists it; gc is its gc-interval (zero:
// the kernel's default, which nft does not print).
func (s setDef) render(gc time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tset %s {\n", s.name)
	fmt.Fprintf(&b, "\t\ttype %s\n", s.typeText())
	fmt.Fprintf(&b, "\t\tflags %s\n", s.flagsText())
	if gc > 0 {
		fmt.Fprintf(&b, "\t\tgc-interval %s\n", nftDuration(gc))
	}
	if len(s.clients) > 0 {
		elems := make([]string, len(s.clients))
		for i, r := range s.clients {
			elems[i] = r.String()
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
	return b.String()
}

func (c chainDef) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tchain %s {\n", c.name)
	if c.hook != "" {
		fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy accept;\n", c.hook, c.priority)
	}
	for _, r := range c.rules {
		parts := make([]string, len(r))
		for i, st := range r {
			parts[i] = st.text()
		}
		fmt.Fprintf(&b, "\t\t%s\n", strings.Join(parts, " "))
	}
	b.WriteString("\t}\n")
	return b.String()
}

// nftDuration writes d as nft lists a time: days, hours, minutes, seconds
// and milliseconds, zero parts left out ("1m30s", "1h").
func nftDuration(d time.Duration) string {
	var b strings.Builder
	ms := d.Milliseconds()
	for _, u := range []struct {
		ms   int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if n := ms / u.ms; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			ms -= n * u.ms
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}
