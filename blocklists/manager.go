package blocklists

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/metrics"
)

// Options configures a Manager. Zero values are usable.
type Options struct {
	// BaseDir resolves relative source paths.
	BaseDir string
	// StateDir keeps the last good copy of every downloaded list so a
	// restart without network still has it. Empty disables the cache.
	StateDir string
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// HTTPClient fetches URL sources; nil means a client with FetchTimeout.
	HTTPClient *http.Client
	// FetchTimeout bounds one download (default 2m).
	FetchTimeout time.Duration
	// MaxBodyBytes caps one download (default 256 MiB).
	MaxBodyBytes int64
	// Lines keeps, for every entry, the source and line it came from, so
	// Where can name them (`egressd explain`). It costs 4 bytes a table
	// slot (12 instead of 8); without it Where leaves Source and Line
	// empty.
	Lines bool
	// FreeMemory returns the heap pages a category's build used to the
	// operating system as soon as the new lists are in use
	// (debug.FreeOSMemory, one forced collection), instead of leaving
	// them resident until the runtime's scavenger gets to them.
	FreeMemory bool
}

const (
	defaultFetchTimeout = 2 * time.Minute
	defaultMaxBodyBytes = 256 << 20
)

// Refresh results, as counted in egressd_list_refresh_total.
const (
	resultOK        = "ok"
	resultUnchanged = "unchanged" // every source was what the lists were built from; nothing rebuilt
	resultError     = "error"
	resultEmpty     = "empty"
)

// Manager owns the configured categories and answers Match for policy.
// Queries read the current lists through atomic pointers; a refresh builds
// the new lists aside and swaps them in.
type Manager struct {
	opts   Options
	log    *slog.Logger
	client *http.Client
	cats   []*category // sorted by name; the index is the category's bit
	byName map[string]*category
}

type category struct {
	resolvedSpec
	sourceLabels []string // sources as metrics show them
	cur          atomic.Pointer[listMatcher]
	mu           sync.Mutex // serializes refreshes of this category

	statusMu   sync.Mutex
	lastResult string
	lastErr    string
	checked    time.Time // end of the last refresh, whatever its result
	succeeded  time.Time // end of the last refresh with result ok or unchanged
	// sourceSuccess is, per source, when it was last fetched and parsed or
	// confirmed unchanged into the lists in use.
	sourceSuccess []time.Time
}

// NewManager validates specs; nothing is loaded until Load.
func NewManager(specs []CategorySpec, opts Options) (*Manager, error) {
	resolved, err := resolveSpecs(specs, opts.BaseDir)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = defaultFetchTimeout
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = defaultMaxBodyBytes
	}
	m := &Manager{opts: opts, log: opts.Logger, client: opts.HTTPClient, byName: map[string]*category{}}
	if m.client == nil {
		m.client = &http.Client{Timeout: opts.FetchTimeout}
	}
	for _, r := range resolved {
		c := &category{resolvedSpec: r, sourceSuccess: make([]time.Time, len(r.sources))}
		for _, src := range r.sources {
			c.sourceLabels = append(c.sourceLabels, sourceLabel(src))
			if isPlainHTTP(src) {
				m.log.Warn(plainHTTPWarning, "category", r.name, "source", sourceLabel(src))
			}
		}
		m.cats = append(m.cats, c)
		m.byName[r.name] = c
	}
	return m, nil
}

// Load reads every category once. A source that cannot be read falls back
// to its last good copy in the state directory; Load fails only for a
// category left with no entries because a source had neither.
func (m *Manager) Load(ctx context.Context) error {
	if m.opts.StateDir != "" {
		removeStaleTemps(m.opts.StateDir)
	}
	return m.refreshAll(ctx, func(c *category, err error) bool {
		return c.cur.Load().block.count == 0
	})
}

// Refresh reloads every category now (SIGHUP). Failures keep the previous
// lists and are logged, counted and returned.
func (m *Manager) Refresh(ctx context.Context) error {
	return m.refreshAll(ctx, func(*category, error) bool { return true })
}

// loadParallelism bounds how many categories load at once: downloads
// overlap, while parsing memory stays bounded.
const loadParallelism = 2

// refreshAll refreshes every category and joins the errors report keeps.
func (m *Manager) refreshAll(ctx context.Context, report func(*category, error) bool) error {
	return m.refreshSome(ctx, func(*category) bool { return true }, report)
}

// refreshSome refreshes the categories want picks.
func (m *Manager) refreshSome(ctx context.Context, want func(*category) bool, report func(*category, error) bool) error {
	errs := make([]error, len(m.cats))
	sem := make(chan struct{}, loadParallelism)
	var wg sync.WaitGroup
	for i, c := range m.cats {
		if !want(c) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := m.refreshCategory(ctx, c); err != nil && report(c, err) {
				errs[i] = fmt.Errorf("category %q: %w", c.name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Start refreshes each category with a Refresh interval in the
// background until ctx ends. Call it once, after Load, when this Manager
// becomes the one in use: it also drops the last-success series of
// sources only a replaced Manager had.
func (m *Manager) Start(ctx context.Context) {
	m.forgetOtherSources()
	for _, c := range m.cats {
		if c.refresh <= 0 {
			continue
		}
		go func() {
			t := time.NewTicker(c.refresh)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					_ = m.refreshCategory(ctx, c) // logged and counted inside
				}
			}
		}()
	}
}

// Bits maps each category name to its bit in Match results. Names are
// sorted, so the assignment is stable for a given set of categories.
func (m *Manager) Bits() map[string]int {
	out := make(map[string]int, len(m.cats))
	for i, c := range m.cats {
		out[c.name] = i
	}
	return out
}

// Match returns the set of categories containing qname (bit i for the
// category Bits maps to i). It never allocates or blocks.
func (m *Manager) Match(qname string) uint64 {
	if m == nil {
		return 0
	}
	var s suffixes
	s.split(qname)
	if s.n == 0 {
		return 0
	}
	var set uint64
	for i, c := range m.cats {
		if lm := c.cur.Load(); lm != nil && lm.contains(&s) {
			set |= 1 << i
		}
	}
	return set
}

// Hit says why a category contains a name.
type Hit struct {
	Category string
	Source   string // file path or URL; empty without Options.Lines
	Line     int    // 0 when unknown or without Options.Lines
	Domain   string // the list entry, "*.name" for wildcard entries
	Match    string // the category's match mode
}

// Where explains a match of qname in category, for `egressd explain`.
func (m *Manager) Where(category, qname string) (Hit, bool) {
	c, ok := m.byName[category]
	if !ok {
		return Hit{}, false
	}
	lm := c.cur.Load()
	if lm == nil {
		return Hit{}, false
	}
	var s suffixes
	s.split(qname)
	idx, wildcard, ref, ok := lm.find(&s)
	if !ok {
		return Hit{}, false
	}
	domain := asciiLower(strings.TrimSuffix(qname, ".")[s.start[idx]:])
	if wildcard {
		domain = "*." + domain
	}
	h := Hit{Category: category, Line: refLine(ref), Domain: domain, Match: MatchSubdomains}
	if lm.exact {
		h.Match = MatchExact
	}
	if i := refSource(ref); lm.block.refs != nil && i < len(lm.sources) {
		h.Source = lm.sources[i]
	}
	return h, true
}

// asciiLower folds only ASCII letters, as DNS does, so byte offsets stay
// valid for names that carry other bytes.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// CategoryStats describes one category's current lists.
type CategoryStats struct {
	Domains     int // distinct listed names
	Exceptions  int
	Sources     int
	Invalid     int       // invalid lines across sources
	Unsupported int       // rules egressd cannot apply
	Bytes       int       // memory held by the lookup tables
	MappedBytes int       // the part of Bytes mapped outside the Go heap (Linux)
	Loaded      time.Time // when the lists in use were built
	LastResult  string    // ok, unchanged, error or empty
	LastError   string
	Checked     time.Time // when the last refresh ended, whatever its result
	Succeeded   time.Time // when the last refresh with result ok or unchanged ended
}

// Stats reports every category.
func (m *Manager) Stats() map[string]CategoryStats {
	out := make(map[string]CategoryStats, len(m.cats))
	for _, c := range m.cats {
		st := CategoryStats{Sources: len(c.sources)}
		if lm := c.cur.Load(); lm != nil {
			st.Domains = lm.block.count
			st.Exceptions = lm.except.count
			st.Bytes = lm.block.bytes() + lm.except.bytes()
			st.MappedBytes = lm.block.mappedBytes() + lm.except.mappedBytes()
			st.Loaded = lm.loaded
			for _, r := range lm.results {
				st.Invalid += r.Invalid
				st.Unsupported += r.Unsupported
			}
		}
		c.statusMu.Lock()
		st.LastResult, st.LastError = c.lastResult, c.lastErr
		st.Checked, st.Succeeded = c.checked, c.succeeded
		c.statusMu.Unlock()
		out[c.name] = st
	}
	return out
}
