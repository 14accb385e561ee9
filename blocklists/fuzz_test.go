package blocklists

import (
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic and that everything it
// emits is a normalized host name whose line exists.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"example.com\n", "0.0.0.0 a.example b.example\n", "||ads.example^$important\n@@||ok.ads.example^\n",
		"$ORIGIN rpz.\n@ SOA a. b. (\n1 2 3 4 5 )\nx.example CNAME .\n*.y.example CNAME rpz-passthru.\n",
		"\xEF\xBB\xBFBÜCHER.example.\r\n", "a..b\n*.\n.\n||^\n@@\n0.0.0.0\n",
	} {
		for format := range FormatRPZ + 1 {
			f.Add(seed, uint8(format))
		}
	}
	f.Fuzz(func(t *testing.T, input string, format uint8) {
		lines := strings.Count(input, "\n") + 1
		res, err := Parse(strings.NewReader(input), "fuzz", Format(format%uint8(FormatRPZ+1)), func(e Entry) {
			if reason := checkHostname(e.Domain); reason != "" {
				t.Fatalf("emitted %q: %s", e.Domain, reason)
			}
			if strings.ToLower(string(e.Domain)) != string(e.Domain) {
				t.Fatalf("emitted %q with upper case", e.Domain)
			}
			if e.Line < 1 || e.Line > lines {
				t.Fatalf("line %d outside 1..%d", e.Line, lines)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Invalid < len(res.Problems) || res.Unsupported < len(res.Skipped) {
			t.Fatalf("counts %d/%d below kept problems %d/%d", res.Invalid, res.Unsupported, len(res.Problems), len(res.Skipped))
		}
	})
}
