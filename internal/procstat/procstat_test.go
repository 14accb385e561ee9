package procstat

import "testing"

func TestParseLoadAverage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0.52 0.58 0.59 1/123 4567\n", "0.52 0.58 0.59"},
		{"3.10 2.00\n", "?"},
		{"", "?"},
	} {
		if got := parseLoadAverage(tc.in); got != tc.want {
			t.Errorf("parseLoadAverage(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
