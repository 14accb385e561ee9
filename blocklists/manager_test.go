package blocklists

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/internal/testfile"
	"github.com/egressd/egressd/metrics"
)

// listServer serves whatever body and status are set, counting requests.
// While the status is 200 it honours If-None-Match against the current
// ETag and If-Modified-Since against the current Last-Modified.
type listServer struct {
	*httptest.Server
	mu           sync.Mutex
	status       int
	body         string
	etag         string
	lastModified string
	requests     int
	notModified  int
	lastRequest  http.Header // headers of the latest request
}

func newListServer(t *testing.T, body string) *listServer {
	ls := &listServer{status: http.StatusOK, body: body}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		defer ls.mu.Unlock()
		ls.requests++
		ls.lastRequest = r.Header.Clone()
		etagMatches := ls.etag != "" && r.Header.Get("If-None-Match") == ls.etag
		dateMatches := ls.lastModified != "" && r.Header.Get("If-Modified-Since") == ls.lastModified
		if ls.status == http.StatusOK && (etagMatches || (dateMatches && r.Header.Get("If-None-Match") == "")) {
			ls.notModified++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if ls.etag != "" {
			w.Header().Set("ETag", ls.etag)
		}
		if ls.lastModified != "" {
			w.Header().Set("Last-Modified", ls.lastModified)
		}
		w.WriteHeader(ls.status)
		fmt.Fprint(w, ls.body)
	}))
	t.Cleanup(ls.Close)
	return ls
}

// validators sets the ETag and Last-Modified the server announces.
func (ls *listServer) validators(etag, lastModified string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.etag, ls.lastModified = etag, lastModified
}

// counts returns the requests and 304 answers so far, and the headers of
// the latest request.
func (ls *listServer) counts() (requests, notModified int, last http.Header) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.requests, ls.notModified, ls.lastRequest
}

func (ls *listServer) serve(status int, body string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.status, ls.body = status, body
}

func newTestManager(t *testing.T, specs []CategorySpec, opts Options) *Manager {
	t.Helper()
	if opts.FetchTimeout == 0 {
		opts.FetchTimeout = 5 * time.Second
	}
	m, err := NewManager(specs, opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

func refreshes(mt *metrics.Metrics, cat, result string) float64 {
	return testutil.ToFloat64(mt.ListRefreshes.WithLabelValues(cat, result))
}

func TestRefreshKeepsLastGoodCopy(t *testing.T) {
	for _, withState := range []bool{true, false} {
		t.Run(fmt.Sprintf("state_dir=%v", withState), func(t *testing.T) {
			ls := newListServer(t, "one.example\ntwo.example\nthree.example\n")
			mt := metrics.New()
			opts := Options{Metrics: mt}
			if withState {
				opts.StateDir = t.TempDir()
			}
			m := newTestManager(t, []CategorySpec{{Name: "mal", Sources: []string{ls.URL + "/list.txt"}}}, opts)
			ctx := context.Background()
			if err := m.Load(ctx); err != nil {
				t.Fatalf("Load: %v", err)
			}
			bit := uint64(1) << m.Bits()["mal"]
			check := func(step string, wantOK, wantErr, wantEmpty float64) {
				t.Helper()
				if m.Match("www.two.example.") != bit || m.Match("four.example") != 0 {
					t.Errorf("%s: list changed: two=%b four=%b", step, m.Match("www.two.example."), m.Match("four.example"))
				}
				if got := testutil.ToFloat64(mt.ListDomains.WithLabelValues("mal")); got != 3 {
					t.Errorf("%s: egressd_list_domains = %v, want 3", step, got)
				}
				for result, want := range map[string]float64{"ok": wantOK, "error": wantErr, "empty": wantEmpty} {
					if got := refreshes(mt, "mal", result); got != want {
						t.Errorf("%s: refresh_total{result=%s} = %v, want %v", step, result, got, want)
					}
				}
			}
			check("initial", 1, 0, 0)

			ls.serve(http.StatusInternalServerError, "oops")
			if err := m.Refresh(ctx); err == nil {
				t.Error("Refresh after HTTP 500 reported no error")
			}
			check("after 500", 1, 1, 0)
			if st := m.Stats()["mal"]; st.LastResult != "error" || !strings.Contains(st.LastError, "500") {
				t.Errorf("stats after 500 = %+v", st)
			}

			ls.serve(http.StatusOK, "<html><body>Service moved</body></html>\n")
			if err := m.Refresh(ctx); err == nil {
				t.Error("Refresh of garbage reported no error")
			}
			check("after garbage", 1, 1, 1)

			ls.serve(http.StatusOK, "")
			_ = m.Refresh(ctx)
			check("after empty body", 1, 1, 2)

			ls.serve(http.StatusOK, "four.example\n")
			if err := m.Refresh(ctx); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if m.Match("two.example") != 0 || m.Match("four.example") != bit {
				t.Error("a good refresh did not replace the list")
			}
			if got := refreshes(mt, "mal", "ok"); got != 2 {
				t.Errorf("refresh_total{ok} = %v, want 2", got)
			}
		})
	}
}

func TestStateDirSurvivesRestart(t *testing.T) {
	ls := newListServer(t, "||cached.example^\n")
	state := t.TempDir()
	spec := []CategorySpec{{Name: "ads", Sources: []string{ls.URL + "/ads"}}}
	ctx := context.Background()

	first := newTestManager(t, spec, Options{StateDir: state})
	if err := first.Load(ctx); err != nil {
		t.Fatalf("first Load: %v", err)
	}
	ls.Close() // the network is gone for the next start

	second := newTestManager(t, spec, Options{StateDir: state})
	if err := second.Load(ctx); err != nil {
		t.Fatalf("Load with a cached copy failed: %v", err)
	}
	if second.Match("x.cached.example") != 1 {
		t.Error("the cached copy was not loaded")
	}
	if st := second.Stats()["ads"]; st.Domains != 1 || st.LastResult != "error" {
		t.Errorf("stats = %+v, want 1 domain from a failed (fallback) load", st)
	}

	fresh := newTestManager(t, spec, Options{StateDir: t.TempDir()})
	if err := fresh.Load(ctx); err == nil {
		t.Error("Load without network or copy succeeded")
	}
	if fresh.Match("cached.example") != 0 {
		t.Error("an empty category matched")
	}
}

func TestConditionalFetch(t *testing.T) {
	ls := newListServer(t, "etag.example\n")
	ls.etag = `"v1"`
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{ls.URL}}}, Options{StateDir: t.TempDir()})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if ls.notModified != 1 {
		t.Errorf("304 answers = %d, want 1", ls.notModified)
	}
	if m.Match("etag.example") != 1 {
		t.Error("list lost after a 304")
	}
}

func TestBodySizeCap(t *testing.T) {
	ls := newListServer(t, strings.Repeat("big.example\n", 100))
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{ls.URL}}}, Options{MaxBodyBytes: 500})
	err := m.Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load = %v, want a size cap error", err)
	}
}

func TestFileSourcesAndWhere(t *testing.T) {
	dir := t.TempDir()
	testfile.Write(t, filepath.Join(dir, "a.txt"), "# header\nexample.com\n*.wild.test\n")
	testfile.Write(t, filepath.Join(dir, "b.txt"), "[Adblock Plus 2.0]\n||ads.example.net^\n@@||good.example.com^\n")
	specs := []CategorySpec{
		{Name: "zeta", Sources: []string{"a.txt", "b.txt"}},
		{Name: "alpha", Sources: []string{filepath.Join(dir, "a.txt")}, Match: MatchExact},
	}
	m := newTestManager(t, specs, Options{BaseDir: dir, Lines: true})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	bits := m.Bits()
	if bits["alpha"] != 0 || bits["zeta"] != 1 {
		t.Fatalf("Bits = %v, want names in sorted order", bits)
	}
	tests := []struct {
		q    string
		want uint64
	}{
		{"example.com", 0b11},
		{"www.example.com", 0b10},
		{"good.example.com", 0}, // excepted in zeta, and alpha is exact
		{"x.wild.test", 0b11},
		{"wild.test", 0},
		{"cdn.ads.example.net", 0b10},
	}
	for _, tt := range tests {
		if got := m.Match(tt.q); got != tt.want {
			t.Errorf("Match(%q) = %b, want %b", tt.q, got, tt.want)
		}
	}
	hits := []struct {
		cat, q string
		want   Hit
	}{
		{"zeta", "WWW.Example.com.", Hit{Category: "zeta", Source: filepath.Join(dir, "a.txt"), Line: 2, Domain: "example.com", Match: MatchSubdomains}},
		{"zeta", "x.y.wild.test", Hit{Category: "zeta", Source: filepath.Join(dir, "a.txt"), Line: 3, Domain: "*.wild.test", Match: MatchSubdomains}},
		{"zeta", "cdn.ads.example.net", Hit{Category: "zeta", Source: filepath.Join(dir, "b.txt"), Line: 2, Domain: "ads.example.net", Match: MatchSubdomains}},
		{"alpha", "example.com", Hit{Category: "alpha", Source: filepath.Join(dir, "a.txt"), Line: 2, Domain: "example.com", Match: MatchExact}},
	}
	for _, h := range hits {
		got, ok := m.Where(h.cat, h.q)
		if !ok || got != h.want {
			t.Errorf("Where(%s, %s) = %+v, %v; want %+v", h.cat, h.q, got, ok, h.want)
		}
	}
	for _, miss := range [][2]string{{"zeta", "good.example.com"}, {"alpha", "www.example.com"}, {"nope", "example.com"}} {
		if h, ok := m.Where(miss[0], miss[1]); ok {
			t.Errorf("Where(%s, %s) = %+v, want no hit", miss[0], miss[1], h)
		}
	}
	if st := m.Stats()["zeta"]; st.Domains != 3 || st.Exceptions != 1 || st.Sources != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestEmptyFileRefreshKeepsList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l.txt")
	testfile.Write(t, path, "keep.example\n")
	mt := metrics.New()
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{path}}}, Options{Metrics: mt})
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	testfile.Write(t, path, "# emptied by mistake\n")
	_ = m.Refresh(ctx)
	if m.Match("keep.example") != 1 || refreshes(mt, "c", "empty") != 1 {
		t.Error("an empty file replaced the list")
	}
	os.Remove(path)
	if err := m.Refresh(ctx); err == nil || m.Match("keep.example") != 1 {
		t.Errorf("missing file: err = %v, list kept = %v", err, m.Match("keep.example") == 1)
	}
}

func TestNewManagerRejects(t *testing.T) {
	many := make([]CategorySpec, MaxCategories+1)
	for i := range many {
		many[i] = CategorySpec{Name: fmt.Sprintf("c%02d", i), Sources: []string{"x"}}
	}
	tests := map[string][]CategorySpec{
		"too many":     many,
		"duplicate":    {{Name: "a", Sources: []string{"x"}}, {Name: "a", Sources: []string{"y"}}},
		"no name":      {{Sources: []string{"x"}}},
		"no sources":   {{Name: "a"}},
		"bad match":    {{Name: "a", Sources: []string{"x"}, Match: "prefix"}},
		"bad format":   {{Name: "a", Sources: []string{"x"}, Format: "csv"}},
		"bad scheme":   {{Name: "a", Sources: []string{"ftp://host/list"}}},
		"bad url":      {{Name: "a", Sources: []string{"https://"}}},
		"empty source": {{Name: "a", Sources: []string{""}}},
	}
	for name, specs := range tests {
		if _, err := NewManager(specs, Options{}); err == nil {
			t.Errorf("%s: NewManager accepted %+v", name, specs)
		}
	}
	ok := many[:MaxCategories]
	if _, err := NewManager(ok, Options{}); err != nil {
		t.Errorf("NewManager with %d categories: %v", MaxCategories, err)
	}
}

func TestCheckSources(t *testing.T) {
	dir := t.TempDir()
	testfile.Write(t, filepath.Join(dir, "l.txt"), "ok.example\nbad name.example\n##cosmetic\n")
	specs := []CategorySpec{
		{Name: "c", Sources: []string{"l.txt", "missing.txt", "https://lists.invalid/x.txt"}},
	}
	problems, err := CheckSources(specs, dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], filepath.Join(dir, "l.txt")+":2: ") || !strings.HasPrefix(got[1], filepath.Join(dir, "missing.txt")+": ") {
		t.Errorf("problems = %q", got)
	}
	if _, err := CheckSources([]CategorySpec{{Name: "x"}}, dir); err == nil {
		t.Error("CheckSources accepted a category without sources")
	}
}

func TestMatchDuringSwaps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l.txt")
	version := func(v int) string {
		var b strings.Builder
		b.WriteString("always.example\n")
		for i := range 2000 {
			fmt.Fprintf(&b, "v%d-%d.example\n", v, i)
		}
		return b.String()
	}
	testfile.Write(t, path, version(0))
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{path}, Refresh: time.Millisecond}}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	m.Start(ctx)

	var misses atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if m.Match("www.always.example") != 1 {
					misses.Add(1)
				}
				_, _ = m.Where("c", "always.example")
				_ = m.Stats()
			}
		}()
	}
	for v := 1; v <= 20; v++ {
		testfile.Write(t, path+".tmp", version(v))
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
		if err := m.Refresh(ctx); err != nil {
			t.Errorf("Refresh: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if misses.Load() != 0 {
		t.Errorf("%d lookups missed a name present in every version", misses.Load())
	}
	if m.Match("v20-1999.example") != 1 || m.Match("v1-0.example") != 0 {
		t.Error("the last version is not the one loaded")
	}
}

func TestRPZAndHostsSources(t *testing.T) {
	dir := t.TempDir()
	testfile.Write(t, filepath.Join(dir, "zone.rpz"), "$TTL 60\n@ SOA ns. admin. 1 2 3 4 5\n@ NS ns.\n"+
		"bad.example CNAME .\n*.wild.example CNAME .\nok.bad.example CNAME rpz-passthru.\n")
	testfile.Write(t, filepath.Join(dir, "hosts"), "127.0.0.1 localhost\n0.0.0.0 ads.example # ad server\n")
	m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{"zone.rpz", "hosts"}}}, Options{BaseDir: dir, Lines: true})
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]uint64{
		"bad.example": 1, "x.bad.example": 1, "ok.bad.example": 0, "wild.example": 0,
		"a.wild.example": 1, "ads.example": 1, "localhost": 0,
	} {
		if got := m.Match(q); got != want {
			t.Errorf("Match(%q) = %d, want %d", q, got, want)
		}
	}
	h, ok := m.Where("c", "a.wild.example")
	if !ok || h.Line != 5 || h.Domain != "*.wild.example" || h.Source != filepath.Join(dir, "zone.rpz") {
		t.Errorf("Where = %+v, %v", h, ok)
	}
	h, ok = m.Where("c", "ads.example")
	if !ok || h.Line != 2 || h.Source != filepath.Join(dir, "hosts") {
		t.Errorf("Where = %+v, %v", h, ok)
	}
}

func TestSharedURLAcrossCategories(t *testing.T) {
	ls := newListServer(t, "shared.example\n")
	state := t.TempDir()
	stale := filepath.Join(state, "lists", "fetch-old.tmp")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	testfile.Write(t, stale, "half a download")
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	var specs []CategorySpec
	for i := range 4 {
		specs = append(specs, CategorySpec{Name: fmt.Sprintf("c%d", i), Sources: []string{ls.URL + "/same"}})
	}
	m := newTestManager(t, specs, Options{StateDir: state})
	ctx := context.Background()
	for range 3 {
		if err := m.Refresh(ctx); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	}
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := m.Match("shared.example"); got != 0b1111 {
		t.Errorf("Match = %b, want all four categories", got)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file still there: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(state, "lists", "*"))
	if len(left) != 2 {
		t.Errorf("state files = %v, want one list and its metadata", left)
	}
}

func TestBuiltinSources(t *testing.T) {
	m, err := NewManager([]CategorySpec{{Name: "doh", Sources: []string{"builtin:doh-resolvers.txt"}}}, Options{Lines: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.Match("dns.google.") == 0 {
		t.Error("builtin doh-resolvers list does not contain dns.google")
	}
	hit, ok := m.Where("doh", "dns.google.")
	if !ok || hit.Source != "builtin:doh-resolvers.txt" || hit.Line == 0 {
		t.Errorf("Where = %+v, %v; want builtin:doh-resolvers.txt with a line", hit, ok)
	}
	if _, err := NewManager([]CategorySpec{{Name: "x", Sources: []string{"builtin:nope.txt"}}}, Options{}); err == nil || !strings.Contains(err.Error(), `no built-in list "nope.txt"`) {
		t.Errorf("unknown builtin list: err = %v", err)
	}
}

// TestWhereWithoutLines: a Manager that does not keep lines (the
// daemon's) still says which entry decides, but not where it came from.
func TestWhereWithoutLines(t *testing.T) {
	dir := t.TempDir()
	testfile.Write(t, filepath.Join(dir, "a.txt"), "example.com\n*.wild.test\n")
	tests := []struct {
		lines bool
		q     string
		want  Hit
	}{
		{false, "www.example.com", Hit{Category: "c", Domain: "example.com", Match: MatchSubdomains}},
		{false, "x.wild.test", Hit{Category: "c", Domain: "*.wild.test", Match: MatchSubdomains}},
		{true, "x.wild.test", Hit{Category: "c", Source: filepath.Join(dir, "a.txt"), Line: 2, Domain: "*.wild.test", Match: MatchSubdomains}},
	}
	for _, tt := range tests {
		m := newTestManager(t, []CategorySpec{{Name: "c", Sources: []string{"a.txt"}}}, Options{BaseDir: dir, Lines: tt.lines})
		if err := m.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, ok := m.Where("c", tt.q); !ok || got != tt.want {
			t.Errorf("lines=%v: Where(%s) = %+v, %v; want %+v", tt.lines, tt.q, got, ok, tt.want)
		}
		if kept := m.byName["c"].cur.Load().block.refs != nil; kept != tt.lines {
			t.Errorf("lines=%v: table keeps refs: %v", tt.lines, kept)
		}
	}
}

// TestFreeMemoryAfterBuild: with FreeMemory, a category built (at load
// and on a refresh that changed it) returns the build's heap pages at
// once, which takes one forced collection; without it, or when a refresh
// finds the sources unchanged, none is forced. (One category: builds of
// several run in parallel, and concurrent forced collections may share
// a cycle.)
func TestFreeMemoryAfterBuild(t *testing.T) {
	forced := func() uint64 {
		s := []rtmetrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		rtmetrics.Read(s)
		return s[0].Value.Uint64()
	}
	tests := []struct {
		name    string
		free    bool
		change  bool // the source changes before the refresh
		load    uint64
		refresh uint64
	}{
		{"off", false, true, 0, 0},
		{"on", true, true, 1, 1},
		{"on, unchanged refresh", true, false, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			testfile.Write(t, filepath.Join(dir, "a.txt"), "a.example\n")
			specs := []CategorySpec{{Name: "a", Sources: []string{"a.txt"}}}
			m := newTestManager(t, specs, Options{BaseDir: dir, FreeMemory: tt.free})
			before := forced()
			if err := m.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := forced() - before; got != tt.load {
				t.Errorf("load forced %d collections, want %d", got, tt.load)
			}
			if tt.change {
				testfile.Write(t, filepath.Join(dir, "a.txt"), "a.example\nc.example\n")
			}
			before = forced()
			if err := m.refreshCategory(context.Background(), m.byName["a"]); err != nil {
				t.Fatal(err)
			}
			if got := forced() - before; got != tt.refresh {
				t.Errorf("refresh forced %d collections, want %d", got, tt.refresh)
			}
		})
	}
}
