package blocklists

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// buildMatcher makes a matcher from entries written as in lists: "name",
// "*.name", and "-name" / "-*.name" for exceptions. Each entry's line is
// its index + 1.
func buildMatcher(t testing.TB, entries []string, exact bool) *listMatcher {
	t.Helper()
	b := &listBuilder{block: tableBuilder{lines: true}, except: tableBuilder{lines: true}}
	for i, e := range entries {
		exc := strings.HasPrefix(e, "-")
		e = strings.TrimPrefix(e, "-")
		wild := strings.HasPrefix(e, "*.")
		d, reason := normalizeDomain([]byte(strings.TrimPrefix(e, "*.")))
		if reason != "" {
			t.Fatalf("entry %q: %s", e, reason)
		}
		b.emit(Entry{Domain: d, Line: i + 1, Wildcard: wild, Exception: exc})
	}
	return &listMatcher{block: b.block.build(), except: b.except.build(), exact: exact, sources: []string{"test.list"}}
}

func matches(m *listMatcher, q string) bool {
	var s suffixes
	s.split(q)
	return m.contains(&s)
}

func TestMatcherSemantics(t *testing.T) {
	entries := []string{"example.com", "*.wild.test", "deep.a.b.example.net", "-good.example.com", "-*.ok.wild.test", "tld"}
	tests := []struct {
		q              string
		subdoms, exact bool
	}{
		{"example.com", true, true},
		{"EXAMPLE.com.", true, true},
		{"www.example.com", true, false},
		{"good.example.com", false, false},
		{"x.good.example.com", false, false}, // an exception covers its subdomains too
		{"notexample.com", false, false},
		{"com", false, false},
		{"wild.test", false, false},
		{"a.wild.test", true, true},
		{"a.b.wild.test", true, true},
		{"ok.wild.test", true, true}, // "-*.ok" excepts only what is below ok
		{"x.ok.wild.test", false, false},
		{"deep.a.b.example.net", true, true},
		{"a.b.example.net", false, false},
		{"tld", true, true},
		{"anything.tld", true, false},
		{"", false, false},
		{".", false, false},
		{"a..example.com", false, false},
		{".example.com", false, false},
		{strings.Repeat("a.", 130) + "example.com", false, false}, // longer than a name can be
	}
	sub := buildMatcher(t, entries, false)
	ex := buildMatcher(t, entries, true)
	for _, tt := range tests {
		if got := matches(sub, tt.q); got != tt.subdoms {
			t.Errorf("subdomains: match(%q) = %v, want %v", tt.q, got, tt.subdoms)
		}
		if got := matches(ex, tt.q); got != tt.exact {
			t.Errorf("exact: match(%q) = %v, want %v", tt.q, got, tt.exact)
		}
	}
}

// naiveMatch is the reference: the same rules over a map of strings.
func naiveMatch(block, except map[string]uint64, exact bool, q string) bool {
	q = strings.ToLower(strings.TrimSuffix(q, "."))
	applies := func(f uint64, self bool) bool {
		if self {
			return f&flagName != 0
		}
		return f&flagWildcard != 0 || (f&flagName != 0 && !exact)
	}
	for name, self := q, true; ; self = false {
		if applies(except[name], self) {
			return false
		}
		if applies(block[name], self) {
			return true
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return false
		}
		name = name[i+1:]
	}
}

func randomName(r *rand.Rand) string {
	labels := []string{"a", "b", "ads", "cdn", "x1", "tracker", "www", "mail"}
	tlds := []string{"com", "net", "test"}
	parts := []string{tlds[r.IntN(len(tlds))]}
	for range 1 + r.IntN(4) {
		parts = append([]string{labels[r.IntN(len(labels))]}, parts...)
	}
	return strings.Join(parts, ".")
}

func TestMatcherAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		block, except := map[string]uint64{}, map[string]uint64{}
		var entries []string
		for range 200 {
			name := randomName(r)
			flag, text := flagName, name
			if r.IntN(4) == 0 {
				flag, text = flagWildcard, "*."+name
			}
			if r.IntN(6) == 0 {
				except[name] |= flag
				text = "-" + text
			} else {
				block[name] |= flag
			}
			entries = append(entries, text)
		}
		exact := round%2 == 1
		m := buildMatcher(t, entries, exact)
		for range 2000 {
			q := randomName(r)
			if r.IntN(3) == 0 {
				q = strings.ToUpper(q[:1]) + q[1:] + "."
			}
			if got, want := matches(m, q), naiveMatch(block, except, exact, q); got != want {
				t.Fatalf("round %d exact=%v: match(%q) = %v, naive %v", round, exact, q, got, want)
			}
		}
	}
}

func TestSplitMatchesHashName(t *testing.T) {
	var s suffixes
	s.split("WWW.Example.COM.")
	want := []string{"com", "example.com", "www.example.com"}
	if s.n != len(want) {
		t.Fatalf("n = %d, want %d", s.n, len(want))
	}
	for i, w := range want {
		if s.hash[i] != hashName([]byte(w)) {
			t.Errorf("suffix %d hash differs from hashName(%q)", i, w)
		}
		if got := strings.ToLower("WWW.Example.COM")[s.start[i]:]; got != w {
			t.Errorf("suffix %d starts at %q, want %q", i, got, w)
		}
	}
}

func TestTableMergesDuplicates(t *testing.T) {
	m := buildMatcher(t, []string{"dup.example", "dup.example", "*.dup.example", "other.example"}, false)
	if m.block.count != 2 {
		t.Errorf("count = %d, want 2", m.block.count)
	}
	f, ref := m.block.lookup(hashName([]byte("dup.example")))
	if f != flagName|flagWildcard || refLine(ref) != 1 {
		t.Errorf("flags = %b line = %d, want both flags and the first line", f, refLine(ref))
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	m := buildMatcher(t, []string{"example.com"}, false)
	allocs := testing.AllocsPerRun(100, func() { matches(m, "www.Example.com.") })
	if allocs != 0 {
		t.Errorf("allocs = %v, want 0", allocs)
	}
}

func TestAdviseHugePagesBounds(t *testing.T) {
	// Sizes below, at and around the threshold, and an odd length: the
	// advised range must stay inside the slice (a fault would crash).
	for _, n := range []int{0, 1, hugePageMin/8 - 1, hugePageMin / 8, hugePageMin/8 + 12345, 3 * hugePageMin / 8} {
		s := make([]uint64, n)
		adviseHugePages(s)
		for i := range s {
			s[i] = uint64(i)
		}
		if n > 0 && s[n-1] != uint64(n-1) {
			t.Fatal("slice content changed")
		}
	}
}
