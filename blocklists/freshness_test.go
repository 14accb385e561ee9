package blocklists

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/metrics"
)

func lastSuccess(mt *metrics.Metrics, category, source string) float64 {
	return testutil.ToFloat64(mt.ListLastSuccess.WithLabelValues(category, source))
}

// within reports whether a gauge value lies between two instants, at the
// gauge's millisecond resolution.
func within(v float64, from, to time.Time) bool {
	return v >= unixSeconds(from.Truncate(time.Millisecond)) && v <= unixSeconds(to)
}

// pause lets the clock move on, so a timestamp that should not have been
// set again can be told from one that was.
func pause() { time.Sleep(3 * time.Millisecond) }

func TestLastSuccessGauge(t *testing.T) {
	ls := newListServer(t, "a.example\n")
	ls.validators(`"e1"`, "")
	url := ls.URL + "/a"
	state := t.TempDir()
	mt := metrics.New()
	spec := []CategorySpec{{Name: "c", Sources: []string{url}}}
	m := newTestManager(t, spec, Options{StateDir: state, Metrics: mt})
	ctx := context.Background()

	type step struct {
		name    string
		serve   func()
		advance bool // the gauge must move to the time of this refresh
	}
	steps := []step{
		{"fetched and parsed", func() {}, true},
		{"confirmed by a 304", func() {}, true},
		{"server error", func() { ls.serve(http.StatusInternalServerError, "down") }, false},
		{"error page", func() { ls.validators("", ""); ls.serve(http.StatusOK, "<html>maintenance</html>\n") }, false},
		{"identical body", func() { ls.serve(http.StatusOK, "a.example\n") }, true},
		{"changed body", func() { ls.serve(http.StatusOK, "b.example\n") }, true},
	}
	prev := 0.0
	for i, s := range steps {
		s.serve()
		pause()
		before := time.Now()
		if i == 0 {
			_ = m.Load(ctx)
		} else {
			_ = m.Refresh(ctx)
		}
		after := time.Now()
		got := lastSuccess(mt, "c", url)
		if s.advance && !within(got, before, after) {
			t.Errorf("%s: last success %v, want between %v and %v", s.name, got, unixSeconds(before), unixSeconds(after))
		}
		if !s.advance && got != prev {
			t.Errorf("%s: last success moved from %v to %v", s.name, prev, got)
		}
		prev = got
	}

	// A restart without the network loads the copy and reports when the
	// server last confirmed it, not the time of the restart.
	ls.Close()
	pause()
	restarted := metrics.New()
	m2 := newTestManager(t, spec, Options{StateDir: state, Metrics: restarted})
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lastSuccess(restarted, "c", url); got != prev {
		t.Errorf("after a restart without network: last success %v, want the kept %v", got, prev)
	}
}

// A source that loaded fine does not count as refreshed when its category
// kept its previous lists because another source was lost.
func TestLastSuccessNeedsListsInUse(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.txt")
	testfile.Write(t, good, "good.example\n")
	ls := newListServer(t, "remote.example\n")
	mt := metrics.New()
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{good, ls.URL}}}, Options{Metrics: mt})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	loaded := lastSuccess(mt, "c", good)
	ls.serve(http.StatusNotFound, "")
	testfile.Write(t, good, "good.example\nnew.example\n")
	pause()
	if err := m.Refresh(ctx); err == nil {
		t.Fatal("a lost source was not reported")
	}
	if m.Match("new.example") != 0 {
		t.Fatal("the lists were replaced although a source was lost")
	}
	if got := lastSuccess(mt, "c", good); got != loaded {
		t.Errorf("last success of the file moved from %v to %v while its lists were not used", loaded, got)
	}
	if got := refreshes(mt, "c", "error"); got != 1 {
		t.Errorf("refresh_total{error} = %v, want 1", got)
	}
}

func TestSourceLabel(t *testing.T) {
	tests := map[string]string{
		"/etc/egressd/malware.txt":                       "/etc/egressd/malware.txt",
		"builtin:doh-resolvers.txt":                      "builtin:doh-resolvers.txt",
		"https://lists.example/ads.txt":                  "https://lists.example/ads.txt",
		"https://user:secret@lists.example/ads.txt?v=1":  "https://user:xxxxx@lists.example/ads.txt?v=xxxxx",
		"http://user@lists.example:8080/a.txt":           "http://user@lists.example:8080/a.txt",
		"https://lists.example/path%20with%20spaces.txt": "https://lists.example/path%20with%20spaces.txt",
		// Query strings carry API tokens as often as passwords do.
		"https://lists.example/ads.txt?token=s3cret&v=1":        "https://lists.example/ads.txt?token=xxxxx&v=xxxxx",
		"https://lists.example/ads.txt?s3cret":                  "https://lists.example/ads.txt?xxxxx",
		"https://lists.example/ads.txt?key=a%3Db&&flag":         "https://lists.example/ads.txt?key=xxxxx&&xxxxx",
		"https://lists.example/ads.txt#s3cret":                  "https://lists.example/ads.txt",
		"https://u:p@lists.example/a.txt?access_token=s3cret#x": "https://u:xxxxx@lists.example/a.txt?access_token=xxxxx",
	}
	// A long URL makes a label of bounded length that still tells sources
	// apart.
	long := "https://lists.example/" + strings.Repeat("d/", 200)
	a, b := sourceLabel(long+"a.txt"), sourceLabel(long+"b.txt")
	if len(a) > maxSourceLabel || len(b) > maxSourceLabel || a == b || !strings.HasPrefix(a, "https://lists.example/d/") {
		t.Errorf("long sources labelled %q (%d bytes) and %q", a, len(a), b)
	}
	for src, want := range tests {
		if got := sourceLabel(src); got != want {
			t.Errorf("sourceLabel(%q) = %q, want %q", src, got, want)
		}
	}
}

// The Manager a reload brings in drops the series of sources only the old
// one had, and keeps the others.
func TestStartForgetsRemovedSources(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.txt", "b.txt"} {
		testfile.Write(t, filepath.Join(dir, f), f+".example\n")
	}
	mt := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := newTestManager(t, []CategorySpec{
		{Name: "kept", Sources: []string{"a.txt", "b.txt"}},
		{Name: "gone", Sources: []string{"a.txt"}},
	}, Options{BaseDir: dir, Metrics: mt})
	if err := old.Load(ctx); err != nil {
		t.Fatal(err)
	}
	old.Start(ctx)
	if n := testutil.CollectAndCount(mt.ListLastSuccess); n != 3 {
		t.Fatalf("%d last-success series, want 3", n)
	}
	next := newTestManager(t, []CategorySpec{{Name: "kept", Sources: []string{"a.txt"}}}, Options{BaseDir: dir, Metrics: mt})
	if err := next.Load(ctx); err != nil {
		t.Fatal(err)
	}
	next.Start(ctx)
	if n := testutil.CollectAndCount(mt.ListLastSuccess); n != 1 {
		t.Errorf("%d last-success series after the reload, want 1", n)
	}
	if lastSuccess(mt, "kept", filepath.Join(dir, "a.txt")) == 0 {
		t.Error("the series of a source still configured was dropped")
	}
}
