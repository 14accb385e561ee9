package blocklists

import (
	"bytes"
	"net/netip"
)

// localNames are the entries every hosts file carries for the machine
// itself; they are skipped silently rather than listed or reported.
var localNames = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true,
	"broadcasthost": true, "ip6-localhost": true, "ip6-loopback": true,
	"ip6-localnet": true, "ip6-mcastprefix": true, "ip6-allnodes": true,
	"ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

func isLocalName(name []byte) bool {
	name = bytes.TrimSuffix(name, []byte("."))
	var buf [len("localhost.localdomain")]byte
	if len(name) > len(buf) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return localNames[string(buf[:len(name)])]
}

// looksLikeAddr is a cheap filter before netip.ParseAddr, which is costly
// to call on every name of a multi-million-line list: IPv6 addresses have
// a colon (names never do), IPv4 ones are only digits and dots.
func looksLikeAddr(f []byte) bool {
	if bytes.IndexByte(f, ':') >= 0 {
		return true
	}
	for _, c := range f {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return len(f) > 0
}

func isAddr(f []byte) bool {
	if !looksLikeAddr(f) {
		return false
	}
	_, err := netip.ParseAddr(string(f))
	return err == nil
}

// splitFields is bytes.Fields reusing buf, so a list's lines cost no
// allocations.
func splitFields(line []byte, buf [][]byte) [][]byte {
	buf = buf[:0]
	for len(line) > 0 {
		i := 0
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		line = line[i:]
		if len(line) == 0 {
			break
		}
		j := 0
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		buf = append(buf, line[:j])
		line = line[j:]
	}
	return buf
}

// hostsLine reads plain-domain and hosts lines alike: "name",
// "ADDRESS name [name...]", with "#" starting a comment anywhere. With
// lenient set (AdBlock lists), unusable names count as unsupported rules
// instead of invalid lines.
func (p *parser) hostsLine(line []byte, lenient bool) {
	if isComment(line) {
		return
	}
	if i := bytes.IndexByte(line, '#'); i >= 0 {
		line = bytes.TrimSpace(line[:i])
		if len(line) == 0 {
			return
		}
	}
	p.fields = splitFields(line, p.fields)
	fields := p.fields
	names := fields
	if isAddr(fields[0]) {
		names = fields[1:]
		if len(names) == 0 {
			p.invalid("IP address without a name (address lists are not supported)")
			return
		}
	} else if len(fields) > 1 {
		if lenient {
			p.unsupported("rule %q", line)
		} else {
			p.invalid("expected one name, or an address followed by names")
		}
		return
	}
	for _, name := range names {
		if isLocalName(name) {
			continue
		}
		if reason := p.addName(name, false); reason != "" {
			if lenient {
				p.unsupported("rule %q", name)
			} else {
				p.invalid("%s: %q", reason, name)
			}
		}
	}
}
