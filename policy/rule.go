package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Rule is one parsed allow or deny entry.
type Rule struct {
	// Text is the rule as written in the config, surrounding space removed.
	Text string
	// Name is the normalized name (lowercase, punycode, trailing dot). For
	// a wildcard it is the parent the wildcard sits under: "*.example.com"
	// has Name "example.com.".
	Name string
	// Wildcard rules match every name below Name but not Name itself.
	Wildcard bool
	// Ports scopes the firewall allowance; nil means any port.
	Ports []PortRange
}

// ParseRule parses "name" or "*.name" with an optional
// ":PORT[-PORT][/tcp|/udp]" suffix (tcp when no protocol is given). Error
// messages quote the rule, so a caller only has to prefix "FILE:LINE: ".
func ParseRule(text string) (Rule, error) {
	t := strings.TrimSpace(text)
	if t == "" {
		return Rule{}, errors.New("empty rule")
	}
	namePart, portPart, hasPorts := strings.Cut(t, ":")
	if !hasPorts && strings.Contains(namePart, "/") {
		return Rule{}, fmt.Errorf("protocol without port in rule %q; write NAME:PORT/PROTO", t)
	}

	r := Rule{Text: t}
	if namePart == "*" || namePart == "*." {
		return Rule{}, fmt.Errorf("rule %q matches every name; use default = \"allow\" instead", t)
	}
	if rest, ok := strings.CutPrefix(namePart, "*."); ok {
		r.Wildcard = true
		namePart = rest
	}
	if strings.Contains(namePart, "*") {
		return Rule{}, fmt.Errorf("invalid wildcard in rule %q: \"*\" may only be the whole first label", t)
	}
	name, err := canonicalName(namePart)
	if err != nil {
		return Rule{}, fmt.Errorf("invalid name %q in rule %q: %v", namePart, t, err)
	}
	r.Name = name

	if hasPorts {
		pr, err := parsePortSpec(portPart, t)
		if err != nil {
			return Rule{}, err
		}
		r.Ports = []PortRange{pr}
	}
	return r, nil
}

// parsePortSpec parses "PORT", "PORT-PORT", optionally followed by
// "/tcp" or "/udp".
func parsePortSpec(spec, rule string) (PortRange, error) {
	ports, proto, hasProto := strings.Cut(spec, "/")
	pr := PortRange{Proto: ProtoTCP}
	if hasProto {
		switch strings.ToLower(proto) {
		case "tcp":
		case "udp":
			pr.Proto = ProtoUDP
		default:
			return PortRange{}, fmt.Errorf("invalid protocol %q in rule %q; use tcp or udp", proto, rule)
		}
	}
	from, to, isRange := strings.Cut(ports, "-")
	var err error
	if pr.From, err = parsePort(from, rule); err != nil {
		return PortRange{}, err
	}
	pr.To = pr.From
	if isRange {
		if pr.To, err = parsePort(to, rule); err != nil {
			return PortRange{}, err
		}
		if pr.From > pr.To {
			return PortRange{}, fmt.Errorf("invalid port range %q in rule %q: start is above end", ports, rule)
		}
	}
	return pr, nil
}

func parsePort(s, rule string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("invalid port %q in rule %q", s, rule)
	}
	return uint16(n), nil
}

// mergePorts unions the port scopes of rules that allow the same name. A
// rule without ports allows any port, so the union is then nil. Overlapping
// and adjacent ranges are coalesced, because nftables interval sets reject
// overlapping elements.
func mergePorts(rules []Rule) []PortRange {
	var all []PortRange
	for _, r := range rules {
		if r.Ports == nil {
			return nil
		}
		all = append(all, r.Ports...)
	}
	slices.SortFunc(all, func(a, b PortRange) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.From) - int(b.From)
	})
	merged := all[:0]
	for _, pr := range all {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.Proto == pr.Proto && uint32(pr.From) <= uint32(last.To)+1 {
				last.To = max(last.To, pr.To)
				continue
			}
		}
		merged = append(merged, pr)
	}
	return slices.Clip(merged)
}
