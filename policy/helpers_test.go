package policy

import (
	"fmt"
	"strings"
)

// fakeMatcher maps domains to category bits; a domain matches itself and
// every name below it, like a "subdomains" list. It panics on names that
// break the CategoryMatcher contract so a test notices.
type fakeMatcher map[string]uint64

func (m fakeMatcher) Match(qname string) uint64 {
	if !isNormalized(qname) {
		panic(fmt.Sprintf("fakeMatcher.Match called with unnormalized name %q", qname))
	}
	var bits uint64
	for name := qname; name != ""; {
		bits |= m[name]
		_, rest, ok := strings.Cut(name, ".")
		if !ok {
			break
		}
		name = rest
	}
	return bits
}

// Category bits shared by the tests.
var testCategoryBits = map[string]int{"malware": 0, "business": 1, "doh": 5}

const (
	bitMalware  = 1 << 0
	bitBusiness = 1 << 1
	bitDoH      = 1 << 5
)
