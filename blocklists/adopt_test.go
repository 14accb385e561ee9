package blocklists

import (
	"context"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/listserver"
	"github.com/egressd/egressd/internal/testfile"
)

// A Manager built for a reload takes over the lists of categories whose
// sources did not change without asking their server, so a stalled list
// server cannot hold a reload back; new categories are loaded.
func TestLoadFromAdoptsUnchangedCategories(t *testing.T) {
	srv := listserver.Start(t, "ads.example\n")
	file := t.TempDir() + "/extra.txt"
	testfile.Write(t, file, "extra.example\n")

	specs := []CategorySpec{{Name: "ads", Sources: []string{srv.URL + "/ads.txt"}}}
	first := newTestManager(t, specs, Options{})
	if err := first.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stall() // every later request hangs until the test ends

	tests := []struct {
		name  string
		specs []CategorySpec
		match map[string]string // name -> category it must be in
	}{
		{"same sources, new refresh", []CategorySpec{{Name: "ads", Sources: []string{srv.URL + "/ads.txt"}, Refresh: 3600e9}},
			map[string]string{"ads.example": "ads"}},
		{"category added from a file", []CategorySpec{{Name: "ads", Sources: []string{srv.URL + "/ads.txt"}}, {Name: "extra", Sources: []string{file}}},
			map[string]string{"ads.example": "ads", "extra.example": "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := newTestManager(t, tt.specs, Options{})
			if err := next.LoadFrom(context.Background(), first); err != nil {
				t.Fatalf("LoadFrom: %v", err)
			}
			bits := next.Bits()
			for name, cat := range tt.match {
				if next.Match(name)&(1<<bits[cat]) == 0 {
					t.Errorf("%s not in category %s after LoadFrom", name, cat)
				}
			}
			if n := srv.Stalled(); n != 0 {
				t.Errorf("LoadFrom asked the list server %d times; adopted lists need no fetch", n)
			}
		})
	}

	// A category whose sources changed is loaded again: with the server
	// stalled that is the one case that waits, and a cancelled context
	// ends it.
	changed := newTestManager(t, []CategorySpec{{Name: "ads", Sources: []string{srv.URL + "/other.txt"}}}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- changed.LoadFrom(ctx, first) }()
	select {
	case <-srv.Arrived():
	case err := <-done:
		t.Fatalf("LoadFrom of changed sources returned %v without fetching", err)
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "ads") {
		t.Fatalf("LoadFrom of a changed, unreachable source: %v, want an error naming the category", err)
	}
}
