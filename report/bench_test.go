package report

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/querylog"
)

// writeSyntheticLog writes n entries spread over a few groups and a few
// hundred names, in the writer's own format.
func writeSyntheticLog(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "queries.log")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	decisions := []string{querylog.DecisionAllow, querylog.DecisionAllow, querylog.DecisionWouldDeny, querylog.DecisionDeny}
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var buf []byte
	for i := range n {
		e := querylog.Entry{
			Time:     start.Add(time.Duration(i) * time.Millisecond),
			Client:   "10.0.0.1",
			Group:    fmt.Sprintf("group%d", i%4),
			QName:    fmt.Sprintf("host%d.domain%d.example.", i%37, i%11),
			QType:    "A",
			Decision: decisions[i%len(decisions)],
			RCode:    "NOERROR",
			Answers:  []string{"192.0.2.1"},
			TTL:      60,
		}
		buf = querylog.AppendJSON(buf[:0], &e)
		bw.Write(buf)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return path
}

func BenchmarkRun(b *testing.B) {
	const lines = 100_000
	path := writeSyntheticLog(b, lines)
	b.ResetTimer()
	for b.Loop() {
		r, err := Run([]string{path}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if r.Entries != lines {
			b.Fatalf("entries %d, want %d", r.Entries, lines)
		}
	}
	b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func TestWriterOutputIsReadable(t *testing.T) {
	r, err := Run([]string{writeSyntheticLog(t, 1000)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Entries != 1000 || r.Malformed != 0 || len(r.Groups) != 4 {
		t.Errorf("entries %d malformed %d groups %d; want 1000, 0, 4", r.Entries, r.Malformed, len(r.Groups))
	}
}

func FuzzRead(f *testing.F) {
	sample, err := os.ReadFile(sampleLog)
	if err != nil {
		f.Fatal(err)
	}
	for line := range strings.SplitSeq(string(sample), "\n") {
		f.Add(line)
	}
	f.Add("\x1f\x8b\x08")
	f.Fuzz(func(t *testing.T, input string) {
		agg := newAggregator()
		_ = read(strings.NewReader(input), agg) // errors are fine; panics are not
		lines := strings.Count(plainText(input), "\n") + 1
		if agg.r.Entries+agg.r.Malformed > lines {
			t.Errorf("%d entries + %d malformed from %d lines", agg.r.Entries, agg.r.Malformed, lines)
		}
		r := agg.report(DefaultThreshold, nil)
		var sb strings.Builder
		if err := r.WriteText(&sb); err != nil {
			t.Fatal(err)
		}
	})
}

// plainText is what read reads from input: input, or as much of it as
// decompresses when it starts as gzip does.
func plainText(input string) string {
	if !strings.HasPrefix(input, "\x1f\x8b") {
		return input
	}
	zr, err := gzip.NewReader(strings.NewReader(input))
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(zr)
	return string(b)
}
