package blocklists

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/metrics"
)

// current is the matcher category name is answering from now.
func current(m *Manager, name string) *listMatcher {
	return m.byName[name].cur.Load()
}

// TestRefreshSkipsUnchangedLists refreshes once after Load and checks
// whether the matcher was rebuilt: a refresh that finds every source
// unchanged must keep the very same matcher (so nothing was parsed into a
// new one) and count result="unchanged".
func TestRefreshSkipsUnchangedLists(t *testing.T) {
	const first = "one.example\ntwo.example\n"
	tests := []struct {
		name string
		// validators the server announces from the start
		etag, lastModified string
		// change happens between Load and Refresh
		change        func(ls *listServer, file string)
		noStateDir    bool
		wantUnchanged bool
		want304       bool
	}{
		{name: "304 for ETag", etag: `"v1"`, change: func(*listServer, string) {}, wantUnchanged: true, want304: true},
		{name: "304 for Last-Modified", lastModified: "Mon, 02 Nov 2026 10:00:00 GMT", change: func(*listServer, string) {}, wantUnchanged: true, want304: true},
		{name: "identical body without validators", change: func(*listServer, string) {}, wantUnchanged: true},
		{name: "identical body without a state directory", etag: `"v1"`, noStateDir: true, change: func(*listServer, string) {}, wantUnchanged: true},
		{name: "identical body under a new ETag", etag: `"v1"`, change: func(ls *listServer, _ string) {
			ls.validators(`"v2"`, "")
		}, wantUnchanged: true},
		{name: "changed body", change: func(ls *listServer, _ string) {
			ls.serve(http.StatusOK, first+"three.example\n")
		}},
		{name: "changed body under a new ETag", etag: `"v1"`, change: func(ls *listServer, _ string) {
			ls.validators(`"v2"`, "")
			ls.serve(http.StatusOK, first+"three.example\n")
		}},
		{name: "changed file beside an unchanged URL", change: func(_ *listServer, file string) {
			testfile.Write(t, file, "file.example\nthree.example\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls := newListServer(t, first)
			ls.validators(tt.etag, tt.lastModified)
			file := filepath.Join(t.TempDir(), "local.txt")
			testfile.Write(t, file, "file.example\n")
			mt := metrics.New()
			opts := Options{StateDir: t.TempDir(), Metrics: mt}
			if tt.noStateDir {
				opts.StateDir = ""
			}
			m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{ls.URL + "/list", file}}}, opts)
			ctx := context.Background()
			if err := m.Load(ctx); err != nil {
				t.Fatal(err)
			}
			before := current(m, "c")
			loaded := m.Stats()["c"].Loaded

			tt.change(ls, file)
			if err := m.Refresh(ctx); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			after := current(m, "c")
			_, notModified, _ := ls.counts()
			if got := notModified == 1; got != tt.want304 {
				t.Errorf("304 answers = %d, want 304: %v", notModified, tt.want304)
			}
			st := m.Stats()["c"]
			if tt.wantUnchanged {
				if after != before || !st.Loaded.Equal(loaded) {
					t.Error("the matcher was rebuilt for unchanged sources")
				}
				if refreshes(mt, "c", "unchanged") != 1 || refreshes(mt, "c", "ok") != 1 || st.LastResult != "unchanged" {
					t.Errorf("refresh_total ok=%v unchanged=%v, last result %q; want 1, 1, unchanged",
						refreshes(mt, "c", "ok"), refreshes(mt, "c", "unchanged"), st.LastResult)
				}
			} else {
				if after == before {
					t.Error("a changed source did not rebuild the matcher")
				}
				if m.Match("three.example") != 1 {
					t.Error("the change is not in the lists")
				}
				if refreshes(mt, "c", "unchanged") != 0 || refreshes(mt, "c", "ok") != 2 || st.LastResult != "ok" {
					t.Errorf("refresh_total ok=%v unchanged=%v, last result %q; want 2, 0, ok",
						refreshes(mt, "c", "ok"), refreshes(mt, "c", "unchanged"), st.LastResult)
				}
			}
			if m.Match("two.example") != 1 || m.Match("file.example") != 1 {
				t.Error("lists lost entries in a refresh")
			}
			if !st.Checked.After(loaded) || !st.Succeeded.Equal(st.Checked) {
				t.Errorf("checked %v, succeeded %v; want both after the load at %v", st.Checked, st.Succeeded, loaded)
			}
		})
	}
}

// A source that changes back and forth must never be taken for unchanged
// against a copy that is not the one in use.
func TestUnchangedComparesWithListsInUse(t *testing.T) {
	ls := newListServer(t, "a.example\n")
	mt := metrics.New()
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{ls.URL}}}, Options{StateDir: t.TempDir(), Metrics: mt})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		body       string
		wantResult string
	}{
		{"b.example\n", "ok"},
		{"b.example\n", "unchanged"},
		{"a.example\n", "ok"},
		{"<html>oops</html>\n", "empty"}, // falls back to the copy of a.example
		{"a.example\n", "unchanged"},     // the lists were rebuilt from exactly these bytes
		{"b.example\n", "ok"},
	}
	for i, s := range steps {
		ls.serve(http.StatusOK, s.body)
		_ = m.Refresh(ctx)
		if got := m.Stats()["c"].LastResult; got != s.wantResult {
			t.Errorf("step %d (%q): result %q, want %q", i, s.body, got, s.wantResult)
		}
		if m.Match("a.example") == m.Match("b.example") {
			t.Errorf("step %d: a=%d b=%d; exactly one list must be in use", i, m.Match("a.example"), m.Match("b.example"))
		}
	}
	if m.Match("b.example") != 1 {
		t.Error("the last list is not in use")
	}
}

// Validators and the digest are kept with the state-directory copy, so a
// restarted Manager asks conditionally and a 304 keeps its lists.
func TestValidatorsSurviveRestart(t *testing.T) {
	const lastModified = "Tue, 03 Nov 2026 08:00:00 GMT"
	ls := newListServer(t, "kept.example\n")
	ls.validators(`"r1"`, lastModified)
	state := t.TempDir()
	spec := []CategorySpec{{Name: "c", Sources: []string{ls.URL + "/l.txt"}}}
	ctx := context.Background()

	first := newTestManager(t, spec, Options{StateDir: state})
	if err := first.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, h := ls.counts(); h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" {
		t.Errorf("first download was conditional: %v", h)
	}
	_, metaPath := cachePaths(state, ls.URL+"/l.txt")
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta cacheMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.ETag != `"r1"` || meta.LastModified != lastModified || !parseDigest(meta.SHA256).known() || meta.Checked.IsZero() {
		t.Fatalf("kept metadata = %s", raw)
	}

	mt := metrics.New()
	second := newTestManager(t, spec, Options{StateDir: state, Metrics: mt})
	if err := second.Load(ctx); err != nil {
		t.Fatal(err)
	}
	_, notModified, h := ls.counts()
	if h.Get("If-None-Match") != `"r1"` || h.Get("If-Modified-Since") != lastModified {
		t.Errorf("restarted Load sent If-None-Match %q, If-Modified-Since %q", h.Get("If-None-Match"), h.Get("If-Modified-Since"))
	}
	if notModified != 1 || second.Match("kept.example") != 1 || refreshes(mt, "c", "ok") != 1 {
		t.Errorf("Load after restart: 304s=%d, match=%d, ok=%v; want the copy loaded on a 304",
			notModified, second.Match("kept.example"), refreshes(mt, "c", "ok"))
	}
	loaded := current(second, "c")
	if err := second.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := ls.counts(); n != 2 || current(second, "c") != loaded || refreshes(mt, "c", "unchanged") != 1 {
		t.Errorf("refresh after restart: 304s=%d, rebuilt=%v, unchanged=%v", n, current(second, "c") != loaded, refreshes(mt, "c", "unchanged"))
	}
}

// An identical body under new validators is not rebuilt, but its
// validators replace the old ones so the next request can get a 304.
func TestIdenticalBodyKeepsNewValidators(t *testing.T) {
	ls := newListServer(t, "same.example\n")
	ls.validators(`"old"`, "")
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{ls.URL}}}, Options{StateDir: t.TempDir()})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	ls.validators(`"new"`, "")
	for range 2 {
		if err := m.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, notModified, h := ls.counts()
	if h.Get("If-None-Match") != `"new"` || notModified != 1 {
		t.Errorf("last request sent If-None-Match %q with %d 304 answers; want \"new\" and 1", h.Get("If-None-Match"), notModified)
	}
	if st := m.Stats()["c"]; st.LastResult != "unchanged" {
		t.Errorf("last result %q, want unchanged", st.LastResult)
	}
}
