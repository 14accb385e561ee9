package blocklists

import (
	"bytes"
	"strings"
	"unsafe"

	"golang.org/x/net/publicsuffix"
)

// icannParentSet holds icannParents; indexing it with string(b) of a
// []byte does not allocate.
var icannParentSet = func() map[string]struct{} {
	set := make(map[string]struct{})
	for _, p := range strings.Fields(icannParents) {
		set[p] = struct{}{}
	}
	return set
}()

// suffixReason refuses a normalized entry that names a whole registry: a
// top-level domain (known or not) or a public suffix from the ICANN part
// of the Public Suffix List (co.uk, or foo.kawasaki.jp under a wildcard
// rule). Listed, it would cover every name registered below it: "com" in
// an allow category allows all of .com, and an exception "@@||com^" lifts
// every deny in .com. Suffixes of the list's private part (duckdns.org,
// github.io) are single operators' domains; deny lists block them on
// purpose, so they stay usable. The root never gets here: it normalizes
// to an empty name.
func suffixReason(d []byte) string {
	dot := bytes.IndexByte(d, '.')
	if dot < 0 {
		return "top-level domain (as an entry it would cover every name in it)"
	}
	if _, ok := icannParentSet[string(d[dot+1:])]; !ok {
		// No ICANN rule (d itself, or *.parent) can make d a public
		// suffix. publicsuffix.PublicSuffix would first try the name as
		// an IP address and allocate the error, for every list entry.
		return ""
	}
	// PublicSuffix keeps nothing of its argument and only the length of
	// its result is used here, so d is read in place: converting it
	// would cost an allocation per list entry.
	if suffix, icann := publicsuffix.PublicSuffix(unsafe.String(&d[0], len(d))); icann && len(suffix) == len(d) {
		return "public suffix (as an entry it would cover every name registered under it)"
	}
	return ""
}
