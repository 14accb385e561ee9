package blocklists

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

const maxNameLen = 253

// normalizeDomain lower-cases b in place, drops one trailing dot, converts
// internationalized names to punycode and checks that the result is a
// usable host name. The returned slice may alias b. On failure it returns a
// short reason suitable for a Problem.
func normalizeDomain(b []byte) ([]byte, string) {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return nil, "empty name"
	}
	ascii := true
	for i, c := range b {
		switch {
		case c >= 0x80:
			ascii = false
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
	}
	if !ascii {
		s, err := idna.Lookup.ToASCII(string(b))
		if err != nil {
			return nil, "invalid internationalized name: " + trimIDNAError(err)
		}
		b = []byte(strings.ToLower(s))
	}
	if reason := checkHostname(b); reason != "" {
		return nil, reason
	}
	return b, ""
}

func trimIDNAError(err error) string {
	return strings.TrimPrefix(err.Error(), "idna: ")
}

// checkHostname accepts letters, digits, hyphens and underscores in labels
// of 1 to 63 bytes. Real lists contain names with leading hyphens or
// underscores that resolvers answer for, so only what can never be a
// lookup name is refused.
func checkHostname(b []byte) string {
	if bytes.Contains(b, []byte("://")) {
		return "URL, not a domain name"
	}
	if len(b) > maxNameLen {
		return fmt.Sprintf("name longer than %d bytes", maxNameLen)
	}
	labelStart := 0
	allDigits := true
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			n := i - labelStart
			if n == 0 {
				return "empty label"
			}
			if n > 63 {
				return "label longer than 63 bytes"
			}
			if i == len(b) && allDigits {
				return "numeric top-level label (an address, not a name)"
			}
			labelStart = i + 1
			allDigits = true
			continue
		}
		c := b[i]
		switch {
		case 'a' <= c && c <= 'z', c == '-', c == '_':
			allDigits = false
		case '0' <= c && c <= '9':
		default:
			return fmt.Sprintf("invalid character %q", rune(c))
		}
	}
	return ""
}
