package blocklists

import (
	"bytes"
	"strconv"
)

// rpzLine reads a response policy zone (RFC-style zone file, as published
// for BIND and Unbound). "name CNAME ." (NXDOMAIN), "CNAME *." (NODATA)
// and "CNAME rpz-drop." list name; "*.name" lists what is below it;
// "CNAME rpz-passthru." is an exception. SOA and NS records and $TTL are
// zone plumbing and skipped; local-data rewrites and IP/NSDNAME triggers
// cannot be expressed as a category and count as unsupported.
// ownerOmitted is set for lines starting with blanks, which reuse the
// previous owner; only zone plumbing is expected there.
func (p *parser) rpzLine(line []byte, ownerOmitted bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = bytes.TrimSpace(line[:i])
		if len(line) == 0 {
			return
		}
	}
	if p.inParens {
		if bytes.IndexByte(line, ')') >= 0 {
			p.inParens = false
		}
		return
	}
	if bytes.IndexByte(line, '(') >= 0 && bytes.IndexByte(line, ')') < 0 {
		p.inParens = true
	}
	if line[0] == '#' || line[0] == '!' {
		return
	}
	fields := bytes.Fields(line)
	if line[0] == '$' {
		p.rpzDirective(fields)
		return
	}
	var owner []byte
	rest := fields
	if !ownerOmitted {
		owner, rest = fields[0], fields[1:]
	}
	if len(rest) == 0 {
		p.invalid("expected 'NAME [TTL] [CLASS] TYPE DATA'")
		return
	}
	for len(rest) > 0 && (isTTL(rest[0]) || isClass(rest[0])) {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		p.invalid("record without a type")
		return
	}
	rrtype := string(bytes.ToUpper(rest[0]))
	switch rrtype {
	case "SOA", "NS":
		return
	case "CNAME":
	default:
		p.unsupported("%s record (local data)", rrtype)
		return
	}
	if len(rest) < 2 {
		p.invalid("CNAME without a target")
		return
	}
	if owner == nil {
		p.unsupported("policy record without its own name")
		return
	}
	exception := false
	switch target := string(bytes.ToLower(rest[1])); target {
	case ".", "*.", "rpz-drop.":
	case "rpz-passthru.":
		exception = true
	default:
		p.unsupported("CNAME to %q (rewrite)", target)
		return
	}
	trigger, ok := p.rpzTrigger(owner)
	if !ok {
		return
	}
	if reason := p.addName(trigger, exception); reason != "" {
		p.invalid("%s: %q", reason, owner)
	}
}

func (p *parser) rpzDirective(fields [][]byte) {
	switch string(bytes.ToUpper(fields[0])) {
	case "$TTL":
	case "$ORIGIN":
		if len(fields) < 2 {
			p.invalid("$ORIGIN without a name")
			return
		}
		p.origin = bytes.ToLower(bytes.TrimSuffix(fields[1], []byte(".")))
	default:
		p.unsupported("directive %s", fields[0])
	}
}

// rpzTrigger turns a record owner into the name it triggers on: absolute
// owners lose the zone origin, relative ones are already relative to it.
func (p *parser) rpzTrigger(owner []byte) ([]byte, bool) {
	if bytes.Equal(owner, []byte("@")) {
		p.unsupported("policy on the zone apex")
		return nil, false
	}
	name := bytes.ToLower(owner)
	if bytes.HasSuffix(name, []byte(".")) {
		name = name[:len(name)-1]
		if len(p.origin) > 0 {
			if bytes.Equal(name, p.origin) {
				p.unsupported("policy on the zone apex")
				return nil, false
			}
			if len(name) > len(p.origin) && name[len(name)-len(p.origin)-1] == '.' && bytes.HasSuffix(name, p.origin) {
				name = name[:len(name)-len(p.origin)-1]
			}
		}
	}
	last := name
	if i := bytes.LastIndexByte(name, '.'); i >= 0 {
		last = name[i+1:]
	}
	if bytes.HasPrefix(last, []byte("rpz-")) {
		p.unsupported("%s trigger", last)
		return nil, false
	}
	return name, true
}

func isTTL(f []byte) bool {
	_, err := strconv.ParseUint(string(f), 10, 32)
	return err == nil
}

func isClass(f []byte) bool {
	switch string(bytes.ToUpper(f)) {
	case "IN", "CH", "HS":
		return true
	}
	return false
}
