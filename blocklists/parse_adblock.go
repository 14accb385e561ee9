package blocklists

import "bytes"

// adblockLine applies the DNS-level subset of AdBlock syntax: "||name^"
// blocks name and its subdomains, "@@||name^" excepts them, "$important",
// "$all" and "$document" options are harmless. Everything else (cosmetic
// filters, URL paths, regular expressions, scoped options) cannot be
// enforced by a resolver and is counted as unsupported.
func (p *parser) adblockLine(line []byte) {
	switch {
	case line[0] == '!' || line[0] == '[':
		return
	case isCosmetic(line):
		p.unsupported("cosmetic rule")
		return
	case line[0] == '#':
		return
	}
	exception := false
	if bytes.HasPrefix(line, []byte("@@")) {
		exception, line = true, line[2:]
	}
	if !bytes.HasPrefix(line, []byte("||")) {
		// Bare fragments such as "-ad-banner-" are URL substring rules.
		if exception || bytes.ContainsAny(line, "/$^|*") || bytes.IndexByte(line, '.') < 0 || !isAlnum(line[0]) {
			p.unsupported("rule %q", line)
			return
		}
		// Bare host names and hosts-style lines are accepted by DNS
		// blockers, so they are here too.
		p.hostsLine(line, true)
		return
	}
	rest := line[2:]
	caret := bytes.IndexByte(rest, '^')
	if caret < 0 {
		p.unsupported("rule without '^' separator matches URL prefixes")
		return
	}
	name, tail := rest[:caret], rest[caret+1:]
	tail = bytes.TrimPrefix(tail, []byte("|"))
	if len(tail) > 0 {
		if tail[0] != '$' || !harmlessOptions(tail[1:]) {
			p.unsupported("rule options %q", tail)
			return
		}
	}
	if bytes.ContainsAny(bytes.TrimPrefix(name, []byte("*.")), "/:*") {
		p.unsupported("URL pattern %q", name)
		return
	}
	if reason := p.addName(name, exception); reason != "" {
		p.invalid("%s: %q", reason, name)
	}
}

func isCosmetic(line []byte) bool {
	for _, sep := range [...]string{"##", "#@#", "#?#", "#$#", "#%#", "#@$#", "#@?#"} {
		if bytes.Contains(line, []byte(sep)) {
			return true
		}
	}
	return false
}

// harmlessOptions reports whether every option only widens or affirms a
// whole-host block, which a resolver can honour.
func harmlessOptions(opts []byte) bool {
	for opt := range bytes.SplitSeq(opts, []byte(",")) {
		switch string(bytes.TrimSpace(opt)) {
		case "important", "all", "document", "doc", "":
		default:
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
