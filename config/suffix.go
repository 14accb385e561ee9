package config

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// isPublicSuffix reports whether name (normalized, trailing dot) is a
// public suffix of the ICANN part of the Public Suffix List: com, co.uk.
// A wildcard allow rule over one allows every domain registered there.
func isPublicSuffix(name string) bool {
	name = strings.TrimSuffix(name, ".")
	suffix, icann := publicsuffix.PublicSuffix(name)
	return icann && suffix == name
}
