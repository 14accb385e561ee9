package policy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Limits from RFC 1035 section 2.3.4, in presentation form with the
// trailing dot: 63 octets a label, 255 octets on the wire (253 characters
// plus the root dot).
const (
	maxLabelLen = 63
	maxNameLen  = 254
)

// nameStorage is the stack space Decide folds a query name into. Names
// longer than this only occur with \DDD escapes; append moves them to the
// heap.
const nameStorage = 256

// NormalizeName returns s in the form rule tables are keyed by: ASCII
// lowercase with a trailing dot. A name that is already normalized is
// returned as is, without allocating. Non-ASCII input (a name typed by a
// person, for example on the explain command line) is converted to punycode
// when it is a valid international name, so it compares like the wire form.
func NormalizeName(s string) string {
	if isNormalized(s) {
		return s
	}
	if !isASCII(s) {
		if n, err := canonicalName(s); err == nil {
			return n
		}
	}
	return string(foldName(make([]byte, 0, len(s)+1), s))
}

// isNormalized reports whether s has no ASCII upper case and ends in an
// unescaped dot.
func isNormalized(s string) bool {
	if !hasTrailingDot(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// foldName appends s to dst in normalized form and returns the result.
func foldName(dst []byte, s string) []byte {
	start := len(dst)
	dst = append(dst, s...)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; 'A' <= c && c <= 'Z' {
			dst[i] = c + ('a' - 'A')
		}
	}
	if !hasTrailingDot(s) {
		dst = append(dst, '.')
	}
	return dst
}

// hasTrailingDot reports whether s ends in a label separator. A dot that
// is escaped ("a\.") is part of the last label, not a separator.
func hasTrailingDot(s string) bool {
	if s == "" || s[len(s)-1] != '.' {
		return false
	}
	backslashes := 0
	for i := len(s) - 2; i >= 0 && s[i] == '\\'; i-- {
		backslashes++
	}
	return backslashes%2 == 0
}

// nextLabel returns the index just past the first unescaped dot at or
// after i in a presentation-format name, or len(name) when there is none.
// Walking with it visits every parent of a name without allocating.
func nextLabel(name []byte, i int) int {
	for ; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++ // the escaped byte (or the first digit of \DDD) is no separator
		case '.':
			return i + 1
		}
	}
	return len(name)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// idnaDots are the full stops IDNA (UTS #46) treats as label separators.
var idnaDots = strings.NewReplacer("\u3002", ".", "\uff0e", ".", "\uff61", ".")

// canonicalName validates a name written in the config (no wildcard) and
// returns it lowercased, in punycode, with a trailing dot.
func canonicalName(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", errors.New("empty name")
	}
	if !isASCII(s) {
		s = idnaDots.Replace(s)
	}
	var b strings.Builder
	b.Grow(len(s) + 1)
	for label := range strings.SplitSeq(s, ".") {
		ascii, err := canonicalLabel(label)
		if err != nil {
			return "", err
		}
		b.WriteString(ascii)
		b.WriteByte('.')
	}
	if b.Len() > maxNameLen {
		return "", fmt.Errorf("name is longer than %d characters", maxNameLen-1)
	}
	return b.String(), nil
}

// canonicalLabel converts one label: Unicode labels go through the IDNA
// lookup profile, ASCII labels are checked for host-name characters
// (underscore allowed, as in "_dns.resolver.arpa") and lowercased.
func canonicalLabel(label string) (string, error) {
	if label == "" {
		return "", errors.New("empty label")
	}
	if !isASCII(label) {
		ascii, err := idna.Lookup.ToASCII(label)
		if err != nil {
			return "", fmt.Errorf("label %q is not a valid international name: %v", label, err)
		}
		label = ascii
	} else {
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isNameByte(c) {
				return "", fmt.Errorf("invalid character %q in label %q", c, label)
			}
		}
		label = strings.ToLower(label)
		if strings.HasPrefix(label, "xn--") {
			if _, err := idna.Lookup.ToUnicode(label); err != nil {
				return "", fmt.Errorf("label %q is not valid punycode", label)
			}
		}
	}
	if len(label) > maxLabelLen {
		return "", fmt.Errorf("label %q is longer than %d characters", label, maxLabelLen)
	}
	return label, nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
