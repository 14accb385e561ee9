package blocklists

import "time"

// Match modes of a category.
const (
	MatchSubdomains = "subdomains" // a listed name covers itself and every name below it
	MatchExact      = "exact"      // a listed name covers only itself
)

// listMatcher is one category's loaded lists. It is immutable once built,
// so queries read it without locks while a refresh builds its successor.
type listMatcher struct {
	block  table
	except table
	exact  bool
	// sources are the locations refs point into (file path or URL).
	sources []string
	loaded  time.Time
	results []ParseResult // per source, problems dropped
	// digests are, per source, of the bytes parsed; zero for a source
	// that could not be read, so the next refresh rebuilds.
	digests []contentDigest
}

// applies reports whether an entry with flags decides for a suffix that
// is the query name itself (self) or a parent of it.
func (m *listMatcher) applies(flags uint64, self bool) bool {
	if self {
		return flags&flagName != 0
	}
	return flags&flagWildcard != 0 || (flags&flagName != 0 && !m.exact)
}

// find walks from the whole name up to its last label; the most specific
// entry decides, so an exception below a listed parent wins over it.
// It returns the suffix index and ref of the deciding entry.
func (m *listMatcher) find(s *suffixes) (idx int, wildcard bool, ref uint32, ok bool) {
	depths := m.block.depths | m.except.depths
	for i := s.n - 1; i >= 0; i-- {
		if depths&depthBit(i+1) == 0 {
			continue // no entry has i+1 labels
		}
		self := i == s.n-1
		if m.except.hasDepth(i + 1) {
			if f, _ := m.except.lookup(s.hash[i]); f != 0 && m.applies(f, self) {
				return i, false, 0, false
			}
		}
		if f, r := m.block.lookup(s.hash[i]); f != 0 && m.applies(f, self) {
			return i, !(self || (f&flagName != 0 && !m.exact)), r, true
		}
	}
	return 0, false, 0, false
}

func (m *listMatcher) contains(s *suffixes) bool {
	_, _, _, ok := m.find(s)
	return ok
}
