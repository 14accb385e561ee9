package querylog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/testfile"
)

// readLines decodes every line of path, failing on any invalid line.
func readLines(t *testing.T, path string) []Entry {
	t.Helper()
	var out []Entry
	for _, line := range testfile.Lines(t, path) {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%s: invalid line %q: %v", path, line, err)
		}
		out = append(out, e)
	}
	return out
}

func entryNamed(qname, decision string) *Entry {
	e := sampleEntry()
	e.QName, e.Decision = qname, decision
	return &e
}

func TestWriterFileAppendsAndCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queries.log")
	if err := os.WriteFile(path, []byte(`{"qname":"old.","decision":"deny"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		w.Log(entryNamed(fmt.Sprintf("n%d.example.", i), DecisionAllow))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 101 || lines[0].QName != "old." {
		t.Fatalf("got %d lines, first %q; want the old line kept and 100 new", len(lines), lines[0].QName)
	}
	for i, e := range lines[1:] {
		if want := fmt.Sprintf("n%d.example.", i); e.QName != want {
			t.Fatalf("line %d qname %q, want %q (order lost)", i+1, e.QName, want)
		}
	}
	if w.Written() != 100 || w.Dropped() != 0 {
		t.Errorf("written %d dropped %d, want 100 and 0", w.Written(), w.Dropped())
	}

	fresh := filepath.Join(t.TempDir(), "new.log")
	w2, err := Open(fresh, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w2.Close()
	st, err := os.Stat(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("created with mode %v, want at most 0640", perm)
	}
}

func TestWriterOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing-dir", "q.log"), Options{}); err == nil {
		t.Error("open in a missing directory succeeded")
	}
}

func TestWriterDiscard(t *testing.T) {
	for _, dest := range []string{"", "none"} {
		w, err := Open(dest, Options{})
		if err != nil {
			t.Fatal(err)
		}
		w.Log(entryNamed("a.", DecisionDeny))
		if err := w.Reopen(); err != nil {
			t.Error(err)
		}
		if err := w.Close(); err != nil {
			t.Error(err)
		}
		if w.Written() != 0 {
			t.Errorf("%q wrote %d lines", dest, w.Written())
		}
	}
	var nilWriter *Writer
	nilWriter.Log(entryNamed("a.", DecisionDeny)) // must not panic
	if nilWriter.Written()+nilWriter.Dropped()+nilWriter.SampledOut()+nilWriter.WriteErrors() != 0 {
		t.Error("nil Writer counts something")
	}
	if err := nilWriter.Close(); err != nil {
		t.Error(err)
	}
}

func TestWriterSampling(t *testing.T) {
	tests := []struct {
		sample      int
		wantAllowed int
	}{
		{0, 10}, {1, 10}, {3, 4}, {10, 1}, {100, 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.sample), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.log")
			w, err := Open(path, Options{SampleAllowed: tc.sample})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				w.Log(entryNamed(fmt.Sprintf("a%d.", i), DecisionAllow))
				if i < 3 {
					w.Log(entryNamed("d.", DecisionDeny))
					w.Log(entryNamed("w.", DecisionWouldDeny))
					w.Log(entryNamed("r.", DecisionRefused))
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			counts := map[string]int{}
			for _, e := range readLines(t, path) {
				counts[e.Decision]++
			}
			want := map[string]int{DecisionAllow: tc.wantAllowed, DecisionDeny: 3, DecisionWouldDeny: 3, DecisionRefused: 3}
			for d, n := range want {
				if counts[d] != n {
					t.Errorf("%s: %d lines, want %d", d, counts[d], n)
				}
			}
			if got := w.SampledOut(); got != uint64(10-tc.wantAllowed) {
				t.Errorf("SampledOut = %d, want %d", got, 10-tc.wantAllowed)
			}
		})
	}
}

func TestWriterReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.log")
	rotated := filepath.Join(dir, "q.log.1")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		w.Log(entryNamed("before.", DecisionAllow))
	}
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Log(entryNamed("after.", DecisionDeny))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	assertAll(t, readLines(t, rotated), 5, "before.")
	assertAll(t, readLines(t, path), 3, "after.")

	if err := w.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

func assertAll(t *testing.T, lines []Entry, n int, qname string) {
	t.Helper()
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	for _, e := range lines {
		if e.QName != qname {
			t.Fatalf("qname %q, want %q", e.QName, qname)
		}
	}
}

func TestWriterReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "q.log")
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(filepath.Dir(path), moved); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil {
		t.Fatal("Reopen into a missing directory succeeded")
	}
	w.Log(entryNamed("still.", DecisionDeny))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	assertAll(t, readLines(t, filepath.Join(moved, "q.log")), 1, "still.")
}

// blockingWriter stalls every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += len(p)
	return len(p), nil
}

func TestWriterDropsInsteadOfBlocking(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	w := newWriter(out, nil, "", Options{Buffer: 4})
	const total = 1000
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := range total {
			w.Log(entryNamed(fmt.Sprintf("n%d.", i), DecisionDeny))
		}
	}()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("Log blocked behind a stalled output")
	}
	close(out.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Dropped() == 0 {
		t.Error("nothing dropped although the output was stalled with a queue of 4")
	}
	if got := w.Written() + w.Dropped(); got != total {
		t.Errorf("written %d + dropped %d = %d, want %d", w.Written(), w.Dropped(), got, total)
	}
	w.Log(entryNamed("late.", DecisionDeny))
	if w.Written()+w.Dropped() != total+1 {
		t.Error("Log after Close was neither written nor counted as dropped")
	}
}

func TestWriterConcurrentLogReopenClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.log")
	w, err := Open(path, Options{Buffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, perG = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				w.Log(entryNamed(fmt.Sprintf("g%d-%d.", g, i), DecisionWouldDeny))
			}
		}()
	}
	var rotations []string
	for i := range 5 {
		rotated := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, rotated); err != nil {
			t.Fatal(err)
		}
		rotations = append(rotations, rotated)
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := len(readLines(t, path))
	for _, r := range rotations {
		lines += len(readLines(t, r))
	}
	if uint64(lines) != w.Written() {
		t.Errorf("%d lines on disk, Written = %d", lines, w.Written())
	}
	if w.Written()+w.Dropped() != goroutines*perG {
		t.Errorf("written %d + dropped %d != %d", w.Written(), w.Dropped(), goroutines*perG)
	}
}

func BenchmarkWriterLog(b *testing.B) {
	w := newWriter(io.Discard, nil, "", Options{Buffer: 1 << 16})
	e := sampleEntry()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Log(&e)
		}
	})
	b.StopTimer()
	w.Close()
	b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
}

func BenchmarkWriterFile(b *testing.B) {
	w, err := Open(filepath.Join(b.TempDir(), "q.log"), Options{Buffer: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	e := sampleEntry()
	b.ReportAllocs()
	for b.Loop() {
		w.Log(&e)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
}

// TestWriterKeep: Keep applies the sampling of allowed entries and the
// discarding destinations, so callers can skip building entries.
func TestWriterKeep(t *testing.T) {
	var out bytes.Buffer
	w := newWriter(&out, nil, "", Options{SampleAllowed: 3})
	defer w.Close()
	var got []bool
	for _, d := range []string{DecisionAllow, DecisionAllow, DecisionDeny, DecisionAllow, DecisionAllow, DecisionWouldDeny} {
		got = append(got, w.Keep(d))
	}
	want := []bool{true, false, true, false, true, true}
	if !slices.Equal(got, want) {
		t.Errorf("Keep = %v, want %v", got, want)
	}
	if n := w.SampledOut(); n != 2 {
		t.Errorf("SampledOut = %d, want 2", n)
	}
	discard, err := Open("none", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var nilWriter *Writer
	if discard.Keep(DecisionDeny) || nilWriter.Keep(DecisionDeny) {
		t.Error("a discarding or nil Writer keeps entries")
	}
}
