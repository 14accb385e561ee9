package blocklists

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTableMapped checks which tables are mapped outside the Go heap
// and that the counters follow.
func TestTableMapped(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		lines  bool
		mapped bool
	}{
		{"small stays on the heap", 1000, false, false},
		{"just below", offHeapMin/8*maxLoadPercent/100 - 16, false, false},
		{"just below with lines", offHeapMin/12*maxLoadPercent/100 - 16, true, false},
		{"just above with lines", offHeapMin/8*maxLoadPercent/100 - 16, true, true},
		{"large is mapped", 20000, false, true},
		{"large with lines", 20000, true, true},
	}
	// Mappings other tests left unreachable are unmapped by cleanups that
	// may run at any time: wait for them first, and keep this test's
	// tables reachable until it ends, so the counters move by this
	// test's tables alone.
	if !gcUntil(func() bool { return liveMappings.Load() == 0 }) {
		t.Fatalf("%d mappings still live before the test", liveMappings.Load())
	}
	var keep []table
	defer runtime.KeepAlive(&keep)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, beforeBytes := liveMappings.Load(), liveMappedBytes.Load()
			b := tableBuilder{lines: tt.lines}
			for i := range tt.n {
				b.add(mix(uint64(i)+1)&^flagMask, flagName, makeRef(0, i+1), 2)
			}
			tab := b.build()
			keep = append(keep, tab)
			if got := tab.mem != nil; got != tt.mapped {
				t.Fatalf("mapped = %v, want %v", got, tt.mapped)
			}
			wantBytes := 0
			if tt.mapped {
				wantBytes = tab.bytes()
			}
			if tab.mappedBytes() != wantBytes || liveMappedBytes.Load()-beforeBytes != int64(wantBytes) {
				t.Errorf("mappedBytes %d, counter grew by %d, want %d", tab.mappedBytes(), liveMappedBytes.Load()-beforeBytes, wantBytes)
			}
			if d := liveMappings.Load() - before; (d == 1) != tt.mapped {
				t.Errorf("live mappings grew by %d", d)
			}
			for i := range tt.n {
				want := makeRef(0, i+1)
				if !tt.lines {
					want = 0
				}
				if f, ref := tab.lookup(mix(uint64(i)+1) &^ flagMask); f != flagName || ref != want {
					t.Fatalf("entry %d: flags %d ref %#x, want %#x", i, f, ref, want)
				}
			}
		})
	}
}

// gcUntil runs collections until cond holds: cleanups run after the
// collection that finds their object unreachable.
func gcUntil(cond func() bool) bool {
	return wait.Until(10*time.Second, 10*time.Millisecond, func() bool {
		runtime.GC()
		return cond()
	})
}

// TestMappingReleasedAfterSwap refreshes a category whose table is
// mapped: the old table's mapping stays while a reader still holds the
// old lists, and is unmapped once nothing refers to them.
func TestMappingReleasedAfterSwap(t *testing.T) {
	const n = 20000
	list := func(gen int) string {
		var sb strings.Builder
		for i := range n {
			fmt.Fprintf(&sb, "d%d-g%d.example\n", i, gen)
		}
		return sb.String()
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "big.txt")
	testfile.Write(t, path, list(1))
	mt := metrics.New()
	m := newTestManager(t, []CategorySpec{{Name: "big", Sources: []string{path}}}, Options{Metrics: mt})
	ctx := context.Background()
	// Tables of earlier tests are unreachable: wait for their cleanups.
	if !gcUntil(func() bool { return liveMappings.Load() == 0 }) {
		t.Fatalf("%d mappings of earlier tests still live", liveMappings.Load())
	}
	base := int64(0)
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := liveMappings.Load() - base; got != 1 {
		t.Fatalf("live mappings after load: +%d, want +1", got)
	}
	st := m.Stats()["big"]
	if st.MappedBytes == 0 || st.MappedBytes != st.Bytes {
		t.Errorf("stats: mapped %d of %d bytes", st.MappedBytes, st.Bytes)
	}
	if got := testutil.ToFloat64(mt.ListMappedBytes.WithLabelValues("big")); got != float64(st.MappedBytes) {
		t.Errorf("egressd_list_mapped_bytes = %v, want %d", got, st.MappedBytes)
	}

	held := m.cats[0].cur.Load() // a reader in the middle of a lookup
	testfile.Write(t, path, list(2))
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Match("d7-g2.example") != 1 || m.Match("d7-g1.example") != 0 {
		t.Fatal("refresh did not swap the lists")
	}
	if got := liveMappings.Load() - base; got != 2 {
		t.Fatalf("live mappings after refresh with a reader: +%d, want +2", got)
	}
	runtime.GC()
	runtime.GC()
	var s suffixes
	s.split("d7-g1.example")
	if !held.contains(&s) || liveMappings.Load()-base != 2 {
		t.Fatalf("the held lists lost their table: contains=%v, mappings +%d", held.contains(&s), liveMappings.Load()-base)
	}
	runtime.KeepAlive(held)
	held = nil
	if !gcUntil(func() bool { return liveMappings.Load()-base == 1 }) {
		t.Fatalf("old mapping not released: +%d live", liveMappings.Load()-base)
	}
	if m.Match("d7-g2.example") != 1 || m.Match("d19999-g2.example") != 1 || m.Match("other.example") != 0 {
		t.Fatal("current lists wrong after the old mapping was released")
	}
}
