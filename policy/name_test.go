package policy

import (
	"reflect"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com.", "example.com."},
		{"example.com", "example.com."},
		{"WWW.Example.COM.", "www.example.com."},
		{"", "."},
		{".", "."},
		{`a\.b.com`, `a\.b.com.`},
		{`odd\.`, `odd\..`}, // the last dot is escaped, so a separator is added
		{`even\\.`, `even\\.`},
		{"bücher.de", "xn--bcher-kva.de."},
		{"Bücher.DE.", "xn--bcher-kva.de."},
		{"a b.com", "a b.com."}, // not a valid name, but still folded, never dropped
	}
	for _, tc := range tests {
		if got := NormalizeName(tc.in); got != tc.want {
			t.Errorf("NormalizeName(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeNameDoesNotCopyNormalizedNames(t *testing.T) {
	s := "www.example.com."
	if n := testing.AllocsPerRun(100, func() { _ = NormalizeName(s) }); n != 0 {
		t.Errorf("NormalizeName on a normalized name allocates %v times", n)
	}
}

func TestNextLabelVisitsParents(t *testing.T) {
	tests := []struct {
		name    string
		parents []string
	}{
		{"a.b.example.com.", []string{"b.example.com.", "example.com.", "com."}},
		{"com.", nil},
		{".", nil},
		{`evil\.allowed.com.`, []string{"com."}},
		{`a\\.b.com.`, []string{"b.com.", "com."}},
		{`x\065.y.com.`, []string{"y.com.", "com."}},
	}
	for _, tc := range tests {
		b := []byte(tc.name)
		var got []string
		for i := nextLabel(b, 0); i < len(b); i = nextLabel(b, i) {
			got = append(got, string(b[i:]))
		}
		if !reflect.DeepEqual(got, tc.parents) {
			t.Errorf("parents of %q = %q; want %q", tc.name, got, tc.parents)
		}
	}
}
