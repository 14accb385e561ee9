package blocklists

import (
	"bytes"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// An entry that is a public suffix (com, co.uk) or the root would cover a
// whole registry: "com" in an allow category allowed every .com name.
// Such lines are invalid in every format; names below a suffix, and
// suffixes from the PSL's private section (duckdns.org, which malware
// lists block on purpose), stay usable.
func TestPublicSuffixEntriesRefused(t *testing.T) {
	tests := []struct {
		name        string
		input       string
		format      Format
		want        []string
		wantInvalid []int
	}{
		{
			name: "domains",
			input: "com\nco.uk\n*.com\n.com\n.\nexample.com\nduckdns.org\nfoo.duckdns.org\nuk\n" +
				"lan\nfoo.kawasaki.jp\nCOM.\nxn--p1ai\n*.co.uk\nshop.co.uk\n",
			format:      FormatDomains,
			want:        []string{"example.com:6", "duckdns.org:7", "foo.duckdns.org:8", "shop.co.uk:15"},
			wantInvalid: []int{1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14},
		},
		{
			name:        "hosts",
			input:       "0.0.0.0 com ok.example.com\n127.0.0.1 co.uk\n",
			format:      FormatHosts,
			want:        []string{"ok.example.com:1"},
			wantInvalid: []int{1, 2},
		},
		{
			name:        "adblock, exceptions too",
			input:       "||com^\n@@||co.uk^\n||ok.example^\n||*.net^\n",
			format:      FormatAdblock,
			want:        []string{"ok.example:3"},
			wantInvalid: []int{1, 2, 4},
		},
		{
			name:        "rpz",
			input:       "$ORIGIN rpz.example.\ncom CNAME .\n*.org CNAME .\nok.example CNAME .\n",
			format:      FormatRPZ,
			want:        []string{"ok.example:4"},
			wantInvalid: []int{2, 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := parseAll(t, tt.input, tt.format)
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries:\n got %q\nwant %q", got, tt.want)
			}
			if lines := problemLines(res.Problems); !slices.Equal(lines, tt.wantInvalid) {
				t.Errorf("invalid lines = %v, want %v (%v)", lines, tt.wantInvalid, res.Problems)
			}
			if res.Invalid != len(tt.wantInvalid) {
				t.Errorf("Invalid = %d, want %d", res.Invalid, len(tt.wantInvalid))
			}
		})
	}
}

// egressd check names the file and line of a public-suffix entry.
func TestCheckReportsPublicSuffix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "allow.txt")
	if err := os.WriteFile(path, []byte("good.example\nco.uk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	problems, err := CheckSources([]CategorySpec{{Name: "ok", Sources: []string{path}}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 {
		t.Fatalf("problems %v, want one", problems)
	}
	if s := problems[0].String(); !strings.HasPrefix(s, path+":2: ") || !strings.Contains(s, "public suffix") {
		t.Errorf("problem %q, want %s:2 naming a public suffix", s, path)
	}
}

// Start-up (every new Manager) warns about each plain http:// source,
// with the source's redacted label.
func TestManagerWarnsPlainHTTP(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	_, err := NewManager([]CategorySpec{
		{Name: "a", Sources: []string{"http://lists.example/a.txt?key=s3cret", "https://lists.example/b.txt"}},
	}, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	if n := strings.Count(got, "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, got)
	}
	if !strings.Contains(got, "anyone on the network path can rewrite this list") || !strings.Contains(got, "http://lists.example/a.txt?key=xxxxx") || strings.Contains(got, "s3cret") {
		t.Errorf("warning does not name the redacted source:\n%s", got)
	}
}

// TestSuffixReasonAllocs checks that names no ICANN rule can make a
// public suffix are decided without calling into publicsuffix (whose
// address check allocates an error for every domain name), and that
// suffixes whose parent has rules are still refused.
func TestSuffixReasonAllocs(t *testing.T) {
	tests := []struct {
		name    string
		refused bool
		allocs  bool // whether the check may allocate
	}{
		{"com", true, false},
		{"co.uk", true, true},
		{"foo.kawasaki.jp", true, true},
		{"pvt.k12.ma.us", true, true}, // among the deepest ICANN rules
		{"x.pvt.k12.ma.us", false, false},
		{"example.com", false, false},
		{"ads7.site123.com", false, false},
		{"a.b.c.example.com", false, false},
		{"ads.tracker.cdn.example.co.uk", false, false},
		{"shop.co.uk", false, false},
		{"duckdns.org", false, false},
		{"example.de", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := []byte(tt.name)
			if got := suffixReason(d) != ""; got != tt.refused {
				t.Fatalf("refused = %v, want %v", got, tt.refused)
			}
			if a := testing.AllocsPerRun(100, func() { suffixReason(d) }); a != 0 && !tt.allocs {
				t.Errorf("%v allocations a check", a)
			}
		})
	}
}

// TestICANNParents reads the rules of the golang.org/x/net module in use
// (its publicsuffix/table_test.go lists them, ICANN ones first) and
// checks that icannParents holds the parent of every ICANN rule but the
// exceptions: suffixReason asks publicsuffix only about names whose
// parent is there.
func TestICANNParents(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/net").Output()
	if err != nil {
		t.Skipf("cannot locate golang.org/x/net without the go command: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "publicsuffix", "table_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	_, after, ok := strings.Cut(text, "const numICANNRules = ")
	if !ok {
		t.Fatal("no numICANNRules in x/net's publicsuffix/table_test.go")
	}
	numStr, _, _ := strings.Cut(after, "\n")
	n, err := strconv.Atoi(strings.TrimSpace(numStr))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(text, "var rules = [...]string{")
	if !ok {
		t.Fatal("no rules in x/net's publicsuffix/table_test.go")
	}
	body, _, _ = strings.Cut(body, "\n}")
	seen := 0
	want := map[string]bool{}
	for line := range strings.Lines(body) {
		rule, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(line), ","))
		if err != nil {
			continue // blank or comment
		}
		if seen++; seen > n {
			break
		}
		if _, parent, ok := strings.Cut(rule, "."); ok && !strings.HasPrefix(rule, "!") {
			want[parent] = true
		}
	}
	if seen < n || len(want) == 0 {
		t.Fatalf("read %d ICANN rules (%d parents), want %d rules", seen, len(want), n)
	}
	got := strings.Fields(icannParents)
	if len(got) != len(icannParentSet) || !slices.Equal(slices.Sorted(maps.Keys(want)), got) {
		t.Errorf("icannParents differs from golang.org/x/net's ICANN rules; new list:\n%s",
			strings.Join(slices.Sorted(maps.Keys(want)), " "))
	}
}
