package blocklists

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// parseAll parses input and renders entries as "name:line", with "*."
// for wildcards and a leading "-" for exceptions.
func parseAll(t *testing.T, input string, format Format) ([]string, ParseResult) {
	t.Helper()
	var got []string
	res, err := Parse(strings.NewReader(input), "list.txt", format, func(e Entry) {
		s := string(e.Domain)
		if e.Wildcard {
			s = "*." + s
		}
		if e.Exception {
			s = "-" + s
		}
		got = append(got, fmt.Sprintf("%s:%d", s, e.Line))
	})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return got, res
}

func problemLines(ps []Problem) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.Line)
	}
	return out
}

func TestParse(t *testing.T) {
	tests := []struct {
		name        string
		input       string
		format      Format
		wantFormat  Format
		want        []string
		wantInvalid []int // lines reported as invalid
		unsupported int
	}{
		{
			name:       "plain domains with comments, case, trailing dots, CRLF and BOM",
			input:      "\xEF\xBB\xBFExample.COM\r\n# comment\r\n\r\n  ads.example.net.  \r\n*.tracker.test # inline\n.dnsmasq.example\n",
			wantFormat: FormatDomains,
			want:       []string{"example.com:1", "ads.example.net:4", "*.tracker.test:5", "dnsmasq.example:6"},
		},
		{
			name:        "plain domains with broken lines",
			input:       "good.example\nbad_char!.example\nhttp://url.example/path\ntwo names.example\n1.2.3.4\na..b\n" + strings.Repeat("x", 64) + ".example\nlast.example",
			wantFormat:  FormatDomains,
			want:        []string{"good.example:1", "last.example:8"},
			wantInvalid: []int{2, 3, 4, 5, 6, 7},
		},
		{
			name:       "internationalized names become punycode",
			input:      "bücher.example\nMÜNCHEN.test\n",
			wantFormat: FormatDomains,
			want:       []string{"xn--bcher-kva.example:1", "xn--mnchen-3ya.test:2"},
		},
		{
			name: "hosts file",
			input: "# hosts\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" +
				"0.0.0.0 ads.example tracker.example # two names\n" +
				"127.0.0.1\tmal.example\n:: v6.example\n0.0.0.0 0.0.0.0\n255.255.255.255 broadcasthost\n0.0.0.0\n",
			wantFormat:  FormatHosts,
			want:        []string{"ads.example:4", "tracker.example:4", "mal.example:5", "v6.example:6"},
			wantInvalid: []int{9},
		},
		{
			name: "adblock",
			input: "[Adblock Plus 2.0]\n! Title: test\n||ads.example^\n||Tracker.Example^$important\n" +
				"@@||good.ads.example^\n||*.wild.example^\nexample.com##.banner\n||cdn.example/path^\n" +
				"/regex/\n||third.example^$third-party\n||noseparator.example\n0.0.0.0 hosts.example\nplain.example\n-ad-banner-\n",
			wantFormat:  FormatAdblock,
			want:        []string{"ads.example:3", "tracker.example:4", "-good.ads.example:5", "*.wild.example:6", "hosts.example:12", "plain.example:13"},
			unsupported: 6,
		},
		{
			name: "rpz zone",
			input: "$TTL 300\n$ORIGIN rpz.example.\n@ IN SOA localhost. admin.localhost. (\n 1 3600 600\n 86400 300 )\n" +
				"  IN NS localhost.\nbad.example CNAME . ; nxdomain\n*.bad.example 300 IN CNAME .\n" +
				"nodata.example CNAME *.\nok.bad.example CNAME rpz-passthru.\nabs.example.rpz.example. CNAME .\n" +
				"redirect.example A 192.0.2.1\nwalled.example CNAME garden.example.\n32.1.2.0.192.rpz-ip CNAME .\n" +
				"broken..example CNAME .\nnotype.example\n",
			wantFormat:  FormatRPZ,
			want:        []string{"bad.example:7", "*.bad.example:8", "nodata.example:9", "-ok.bad.example:10", "abs.example:11"},
			wantInvalid: []int{15, 16},
			unsupported: 3,
		},
		{
			name:        "format override reads hosts lines as plain domains would",
			input:       "||looks.adblock^\nplain.example\n",
			format:      FormatDomains,
			wantFormat:  FormatDomains,
			want:        []string{"plain.example:2"},
			wantInvalid: []int{1},
		},
		{
			name:       "empty input",
			input:      "",
			wantFormat: FormatDomains,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := parseAll(t, tt.input, tt.format)
			if res.Format != tt.wantFormat {
				t.Errorf("format = %v, want %v", res.Format, tt.wantFormat)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries:\n got %q\nwant %q", got, tt.want)
			}
			if lines := problemLines(res.Problems); !slices.Equal(lines, tt.wantInvalid) {
				t.Errorf("invalid lines = %v, want %v (%v)", lines, tt.wantInvalid, res.Problems)
			}
			if res.Invalid != len(tt.wantInvalid) {
				t.Errorf("Invalid = %d, want %d", res.Invalid, len(tt.wantInvalid))
			}
			if res.Unsupported != tt.unsupported {
				t.Errorf("Unsupported = %d, want %d (%v)", res.Unsupported, tt.unsupported, res.Skipped)
			}
		})
	}
}

func TestParseProblemText(t *testing.T) {
	_, res := parseAll(t, "ok.example\nno spaces.example\n", FormatDomains)
	if len(res.Problems) != 1 {
		t.Fatalf("problems = %v", res.Problems)
	}
	if got := res.Problems[0].String(); !strings.HasPrefix(got, "list.txt:2: ") {
		t.Errorf("problem = %q, want list.txt:2: prefix", got)
	}
}

func TestParseLongLine(t *testing.T) {
	input := "first.example\n" + strings.Repeat("a", maxLineLen+10) + "\nafter.example\n"
	got, res := parseAll(t, input, FormatDomains)
	want := []string{"first.example:1", "after.example:3"}
	if !slices.Equal(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
	if lines := problemLines(res.Problems); !slices.Equal(lines, []int{2}) {
		t.Errorf("problem lines = %v, want [2]", lines)
	}
}

func TestParseProblemsAreCapped(t *testing.T) {
	input := strings.Repeat("bad name\n", maxProblems*3)
	_, res := parseAll(t, input, FormatDomains)
	if res.Invalid != maxProblems*3 || len(res.Problems) != maxProblems {
		t.Errorf("Invalid = %d, problems kept = %d; want %d and %d", res.Invalid, len(res.Problems), maxProblems*3, maxProblems)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	r := iotest.TimeoutReader(strings.NewReader(strings.Repeat("x.example\n", 10000)))
	_, err := Parse(r, "f", FormatDomains, func(Entry) {})
	if err == nil {
		t.Fatal("want a read error")
	}
	_, err = Parse(iotest.ErrReader(boom), "f", FormatAuto, func(Entry) {})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
}

func TestDetectFormat(t *testing.T) {
	tests := []struct {
		head string
		want Format
	}{
		{"a.example\nb.example\n", FormatDomains},
		{"# c\n0.0.0.0 a.example\n0.0.0.0 b.example\nbare.example\n", FormatHosts},
		{"! c\n||a.example^\n||b.example^\n", FormatAdblock},
		{"[Adblock Plus 2.0]\na.example\n", FormatAdblock},
		{"$TTL 60\n@ SOA a. b. 1 2 3 4 5\na.example CNAME .\n", FormatRPZ},
		{"a.example CNAME .\n", FormatRPZ},
		{"a.example\nb.example\nc.example\nd.example\ne.example\n0.0.0.0 f.example\n", FormatDomains},
	}
	for _, tt := range tests {
		if got := detectFormat([]byte(tt.head)); got != tt.want {
			t.Errorf("detectFormat(%q) = %v, want %v", tt.head, got, tt.want)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatAuto, FormatDomains, FormatHosts, FormatAdblock, FormatRPZ} {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil {
		t.Error("ParseFormat(csv) succeeded")
	}
}

func TestParseGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	fmt.Fprint(zw, "0.0.0.0 zipped.example\n0.0.0.0 second.example\n")
	zw.Close()
	var got []string
	res, err := Parse(&buf, "l.gz", FormatAuto, func(e Entry) { got = append(got, string(e.Domain)) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != FormatHosts || !slices.Equal(got, []string{"zipped.example", "second.example"}) {
		t.Errorf("format %v, entries %q", res.Format, got)
	}
	if _, err := Parse(strings.NewReader("\x1f\x8bnot gzip"), "bad.gz", FormatAuto, func(Entry) {}); err == nil {
		t.Error("a broken gzip stream parsed without error")
	}
}
