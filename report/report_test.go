package report

import (
	"bytes"
	"compress/gzip"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const sampleLog = "testdata/queries.log"

// mustRun reports on the given files with default options.
func mustRun(t *testing.T, files ...string) *Report {
	t.Helper()
	r, err := Run(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// requireSampleReport fails unless got, apart from its file list, is the
// report on sampleLog; what names the other way of reading it.
func requireSampleReport(t *testing.T, got *Report, what string) {
	t.Helper()
	want := mustRun(t, sampleLog)
	same := *got
	same.Files = want.Files
	if !reflect.DeepEqual(&same, want) {
		t.Errorf("%s gave a different report", what)
	}
}

func TestGolden(t *testing.T) {
	r := mustRun(t, sampleLog)
	tests := []struct {
		golden string
		write  func(*bytes.Buffer) error
	}{
		{"testdata/queries.txt", func(b *bytes.Buffer) error { return r.WriteText(b) }},
		{"testdata/queries.json", func(b *bytes.Buffer) error { return r.WriteJSON(b) }},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.golden), func(t *testing.T) {
			var got bytes.Buffer
			if err := tc.write(&got); err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(tc.golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(tc.golden)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("output differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", tc.golden, got.String(), want)
			}
		})
	}
}

func TestGzipReadsLikePlain(t *testing.T) {
	plain, err := os.ReadFile(sampleLog)
	if err != nil {
		t.Fatal(err)
	}
	gzPath := filepath.Join(t.TempDir(), "queries.log.1.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(plain)
	zw.Close()
	if err := os.WriteFile(gzPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	requireSampleReport(t, mustRun(t, gzPath), "gzip-compressed log")
}

func TestSeveralFilesAccumulate(t *testing.T) {
	once := mustRun(t, sampleLog)
	twice := mustRun(t, sampleLog, sampleLog)
	if twice.Entries != 2*once.Entries || twice.Malformed != 2*once.Malformed || twice.Refused != 2*once.Refused {
		t.Errorf("totals %d/%d/%d, want double %d/%d/%d", twice.Entries, twice.Malformed, twice.Refused,
			once.Entries, once.Malformed, once.Refused)
	}
	for i, g := range twice.Groups {
		og := once.Groups[i]
		if g.Allowed != 2*og.Allowed || g.Denied != 2*og.Denied || g.WouldDeny != 2*og.WouldDeny {
			t.Errorf("group %s counts not doubled", g.Name)
		}
		if !reflect.DeepEqual(g.Allow, og.Allow) {
			t.Errorf("group %s proposal changed with repeated input: %v vs %v", g.Name, g.Allow, og.Allow)
		}
		for j, n := range g.Names {
			on := og.Names[j]
			if n.QName != on.QName || n.Total() != 2*on.Total() || !n.FirstSeen.Equal(on.FirstSeen) || !n.LastSeen.Equal(on.LastSeen) {
				t.Errorf("name %+v vs single file %+v", n, on)
			}
		}
	}
}

func TestRunMissingFile(t *testing.T) {
	if _, err := Run([]string{filepath.Join(t.TempDir(), "absent.log")}, Options{}); err == nil {
		t.Error("missing file gave no error")
	}
}

func TestMalformedLines(t *testing.T) {
	good := `{"time":"2026-03-02T08:00:00Z","group":"g","qname":"a.example.","decision":"allow"}`
	tests := []struct {
		name          string
		input         string
		wantEntries   int
		wantMalformed int
	}{
		{"good line", good + "\n", 1, 0},
		{"no final newline", good, 1, 0},
		{"blank lines are ignored", "\n  \n" + good + "\n\n", 1, 0},
		{"not JSON", "hello\n" + good + "\n", 1, 1},
		{"truncated JSON", good[:40] + "\n" + good + "\n", 1, 1},
		{"unknown decision", `{"qname":"a.","decision":"maybe"}` + "\n", 0, 1},
		{"missing qname", `{"decision":"deny"}` + "\n", 0, 1},
		{"bad time", `{"time":"noon","qname":"a.","decision":"deny"}` + "\n", 0, 1},
		{"array", "[1,2]\n", 0, 1},
		{"over-long line", strings.Repeat("x", 3*maxLine) + "\n" + good + "\n", 1, 1},
		{"over-long last line", good + "\n" + strings.Repeat("x", 2*maxLine), 1, 1},
		{"refused counts as an entry", `{"qname":"a.","decision":"refused"}` + "\n", 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agg := newAggregator()
			if err := read(strings.NewReader(tc.input), agg); err != nil {
				t.Fatal(err)
			}
			if agg.r.Entries != tc.wantEntries || agg.r.Malformed != tc.wantMalformed {
				t.Errorf("entries %d malformed %d, want %d and %d", agg.r.Entries, agg.r.Malformed, tc.wantEntries, tc.wantMalformed)
			}
		})
	}
}

func TestNormalizeMergesSpellings(t *testing.T) {
	input := `{"group":"g","qname":"WWW.Example.COM.","decision":"allow"}
{"group":"g","qname":"www.example.com","decision":"would_deny"}
{"group":"g","qname":".","decision":"allow"}
`
	agg := newAggregator()
	if err := read(strings.NewReader(input), agg); err != nil {
		t.Fatal(err)
	}
	g := agg.report(DefaultThreshold, nil).Groups[0]
	if len(g.Names) != 2 {
		t.Fatalf("names %v, want www.example.com and the root", g.Names)
	}
	if n := g.Names[0]; n.QName != "www.example.com" || n.Allowed != 1 || n.WouldDeny != 1 {
		t.Errorf("merged name %+v", n)
	}
	if g.Names[1].QName != "." {
		t.Errorf("root became %q", g.Names[1].QName)
	}
}

func TestWriteTextEmpty(t *testing.T) {
	r, err := Run(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "no group queries found") {
		t.Errorf("empty report text:\n%s", b.String())
	}
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"groups": []`) || !strings.Contains(b.String(), `"files": []`) {
		t.Errorf("empty report JSON uses null instead of []:\n%s", b.String())
	}
}

func TestDashReadsStandardInput(t *testing.T) {
	f, err := os.Open(sampleLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = saved }()
	requireSampleReport(t, mustRun(t, "-"), "reading the log from standard input")
}
