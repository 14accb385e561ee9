package blocklists

import (
	"bytes"
	"unsafe"

	"golang.org/x/net/publicsuffix"
)

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
	if bytes.IndexByte(d, '.') < 0 {
		return "top-level domain (as an entry it would cover every name in it)"
	}
	// PublicSuffix keeps nothing of its argument and only the length of
	// its result is used here, so d is read in place: converting it
	// would cost an allocation per list entry.
	if suffix, icann := publicsuffix.PublicSuffix(unsafe.String(&d[0], len(d))); icann && len(suffix) == len(d) {
		return "public suffix (as an entry it would cover every name registered under it)"
	}
	return ""
}
