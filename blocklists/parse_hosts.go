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
	if len(name) > len("localhost.localdomain") {
		return false
	}
	var buf [32]byte
	return localNames[string(bytes.ToLower(append(buf[:0], name...)))]
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
	fields := bytes.Fields(line)
	names := fields
	if _, err := netip.ParseAddr(string(fields[0])); err == nil {
		names = fields[1:]
		if len(names) == 0 {
			p.invalid("address without a name")
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
