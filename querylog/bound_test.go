package querylog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/fakeclock"
)

// fileSize is the size of path, -1 when it does not exist.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// A file log never grows past MaxSize: with MaxFiles it is renamed to
// .1, .2, ... (the oldest beyond MaxFiles removed), without them lines
// past the cap are dropped and counted. Sizes are checked while writing
// (Reopen flushes) and at the end.
func TestWriterSizeBound(t *testing.T) {
	const (
		maxSize = 8 << 10
		entries = 3000 // about 1 MB of lines: 120 times the cap
	)
	tests := []struct {
		name     string
		maxFiles int
	}{
		{"drop past the cap", 0},
		{"rotate, keep one", 1},
		{"rotate, keep three", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "q.log")
			w, err := Open(path, Options{MaxSize: maxSize, MaxFiles: tc.maxFiles})
			if err != nil {
				t.Fatal(err)
			}
			files := []string{path}
			for i := 1; i <= tc.maxFiles; i++ {
				files = append(files, fmt.Sprintf("%s.%d", path, i))
			}
			checkSizes := func(when string) {
				t.Helper()
				for _, f := range files {
					if n := fileSize(t, f); n > maxSize {
						t.Fatalf("%s: %s is %d bytes, over the %d cap", when, f, n, maxSize)
					}
				}
				if n := fileSize(t, fmt.Sprintf("%s.%d", path, tc.maxFiles+1)); n >= 0 {
					t.Fatalf("%s: %s.%d kept, beyond max files %d", when, path, tc.maxFiles+1, tc.maxFiles)
				}
			}
			for i := range entries {
				w.Write(entryNamed(fmt.Sprintf("n%d.example.", i), DecisionDeny))
				if i%500 == 499 {
					if err := w.Reopen(); err != nil { // flushes what was queued before it
						t.Fatal(err)
					}
					checkSizes(fmt.Sprintf("after %d entries", i+1))
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkSizes("after Close")
			if got := w.Written() + w.DroppedOverSize() + w.Dropped(); got != entries {
				t.Errorf("written %d + over size %d + queue %d = %d, want %d",
					w.Written(), w.DroppedOverSize(), w.Dropped(), got, entries)
			}
			current := readLines(t, path)
			if len(current) == 0 {
				t.Fatal("current file empty")
			}
			last := current[len(current)-1].QName
			if tc.maxFiles == 0 {
				if w.DroppedOverSize() == 0 {
					t.Error("nothing counted as dropped over size")
				}
				if last == fmt.Sprintf("n%d.example.", entries-1) {
					t.Error("the last entry was written although the file was full")
				}
				return
			}
			if w.DroppedOverSize() != 0 {
				t.Errorf("%d lines dropped over size although rotating", w.DroppedOverSize())
			}
			if want := fmt.Sprintf("n%d.example.", entries-1); last != want {
				t.Errorf("last line %q, want %q", last, want)
			}
			// The rotated files hold the lines just before, oldest in the
			// highest number.
			next := current[0].QName
			for _, f := range files[1:] {
				lines := readLines(t, f)
				if len(lines) == 0 {
					t.Fatalf("%s empty", f)
				}
				var n int
				fmt.Sscanf(next, "n%d.example.", &n)
				if got, want := lines[len(lines)-1].QName, fmt.Sprintf("n%d.example.", n-1); got != want {
					t.Errorf("%s ends with %q, want %q", f, got, want)
				}
				next = lines[0].QName
			}
		})
	}
}

// SIGHUP after logrotate renamed the file: the fresh file starts the size
// count from its own size, and a full file found on reopen stays capped.
func TestWriterSizeCountRestartsOnReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.log")
	const maxSize = 4 << 10
	w, err := Open(path, Options{MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		w.Write(entryNamed("before.", DecisionDeny))
	}
	if err := w.Reopen(); err != nil { // not renamed: still full
		t.Fatal(err)
	}
	over := w.DroppedOverSize()
	if over == 0 {
		t.Fatal("100 lines fit in 4 KiB")
	}
	w.Write(entryNamed("still-full.", DecisionDeny))
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Write(entryNamed("after.", DecisionDeny))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.DroppedOverSize(); got != over+1 {
		t.Errorf("%d dropped over size, want %d (the line written to the full file)", got, over+1)
	}
	assertAll(t, readLines(t, path), 3, "after.")
	if n := fileSize(t, path+".old"); n > maxSize {
		t.Errorf("renamed file %d bytes, over %d", n, maxSize)
	}
}

// Denied (and refused, would_deny) lines from one client are written at
// most DeniedPerClientRate a second after a burst of as many; the next
// line written for that client carries how many were left out. Other
// clients and allowed queries are not affected.
func TestWriterDeniedPerClientRate(t *testing.T) {
	const rate = 5
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "q.log")
	f, _, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(f, f, path, Options{DeniedPerClientRate: rate, now: clock.Now})
	entry := func(client, qname, decision string) *Entry {
		e := entryNamed(qname, decision)
		e.Client = client
		e.Time = time.Time{}
		return e
	}
	const flood = 1000
	for i := range flood {
		w.Write(entry("10.0.0.66", fmt.Sprintf("flood%d.", i), []string{DecisionDeny, DecisionRefused, DecisionWouldDeny}[i%3]))
		if i%250 == 0 { // within its own burst
			w.Write(entry("10.0.0.7", "polite.", DecisionDeny))
		}
		if i%100 == 0 {
			w.Write(entry("10.0.0.66", "allowed.", DecisionAllow))
		}
	}
	clock.Advance(time.Second / rate) // one token back
	w.Write(entry("10.0.0.66", "later.", DecisionDeny))
	w.Write(entry("10.0.0.66", "later2.", DecisionDeny)) // no token left
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	var flooder, polite, allowed []Entry
	for _, e := range readLines(t, path) {
		switch {
		case e.QName == "allowed.":
			allowed = append(allowed, e)
		case e.Client == "10.0.0.66":
			flooder = append(flooder, e)
		case e.Client == "10.0.0.7":
			polite = append(polite, e)
		}
	}
	if len(flooder) != rate+1 {
		t.Fatalf("flooding client has %d denied lines, want the burst of %d and one after a refill", len(flooder), rate)
	}
	for i, e := range flooder[:rate] {
		if e.Suppressed != 0 {
			t.Errorf("burst line %d carries suppressed=%d, want 0", i, e.Suppressed)
		}
	}
	if got, want := flooder[rate], (Entry{QName: "later.", Suppressed: flood - rate}); got.QName != want.QName || got.Suppressed != want.Suppressed {
		t.Errorf("line after the refill: %s suppressed=%d, want %s suppressed=%d", got.QName, got.Suppressed, want.QName, want.Suppressed)
	}
	if len(polite) != flood/250 {
		t.Errorf("other client has %d lines, want all %d", len(polite), flood/250)
	}
	if len(allowed) != flood/100 {
		t.Errorf("flooding client's allowed lines: %d, want all %d", len(allowed), flood/100)
	}
	if got, want := w.Suppressed(), uint64(flood-rate+1); got != want {
		t.Errorf("Suppressed() = %d, want %d", got, want)
	}
}
