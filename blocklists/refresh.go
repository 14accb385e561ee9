package blocklists

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// listBuilder collects one category's entries from all its sources.
type listBuilder struct {
	block, except tableBuilder
	src           int // index of the source being parsed
}

func (b *listBuilder) emit(e Entry) {
	flag := flagName
	if e.Wildcard {
		flag = flagWildcard
	}
	to := &b.block
	if e.Exception {
		to = &b.except
	}
	to.add(hashName(e.Domain), flag, makeRef(b.src, e.Line), bytes.Count(e.Domain, []byte{'.'})+1)
}

type builderMark struct{ block, except int }

func (b *listBuilder) mark() builderMark { return builderMark{b.block.len(), b.except.len()} }

func (b *listBuilder) rollback(m builderMark) {
	b.block.truncate(m.block)
	b.except.truncate(m.except)
}

// errEmpty marks a download that parsed to no entries.
var errEmpty = errors.New("list has no usable entries")

// sourceOutcome is what loading one source produced.
type sourceOutcome struct {
	res ParseResult
	err error // nil when the source loaded fresh
	// fallback is set when err != nil but the last good copy was used.
	fallback bool
}

// refreshCategory reloads all sources of c and swaps the result in,
// unless that would lose data: when a source failed without a copy to
// fall back on, or everything parsed to nothing, the current lists stay.
func (m *Manager) refreshCategory(ctx context.Context, c *category) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	old := c.cur.Load()

	b := &listBuilder{}
	results := make([]ParseResult, len(c.sources))
	var errs []error
	lost, allEmpty := false, true
	for i, src := range c.sources {
		b.src = i
		out := m.loadSource(ctx, c, src, b)
		m.logSource(c, src, out)
		results[i] = out.res
		results[i].Problems, results[i].Skipped = nil, nil
		if out.err != nil {
			errs = append(errs, out.err)
			if !out.fallback {
				lost = true
			}
			if !errors.Is(out.err, errEmpty) {
				allEmpty = false
			}
		}
	}
	err := errors.Join(errs...)
	result := resultOK
	if err != nil {
		result = resultError
		if allEmpty {
			result = resultEmpty
		}
	}

	haveOld := old != nil && old.block.count > 0
	switch {
	case haveOld && lost:
		m.log.Warn("list refresh failed; keeping the previous lists", "category", c.name, "err", err)
	case haveOld && b.block.len() == 0:
		result = resultEmpty
		if err == nil {
			err = errEmpty
		}
		m.log.Warn("list refresh found no entries; keeping the previous lists", "category", c.name)
	default:
		lm := &listMatcher{exact: c.exact, sources: c.sources, loaded: time.Now(), results: results}
		lm.block = b.block.build()
		lm.except = b.except.build()
		c.cur.Store(lm)
		invalid, unsupported := 0, 0
		for _, r := range results {
			invalid += r.Invalid
			unsupported += r.Unsupported
		}
		m.log.Info("category loaded", "category", c.name, "domains", lm.block.count,
			"exceptions", lm.except.count, "invalid_lines", invalid, "unsupported_rules", unsupported,
			"bytes", lm.block.bytes()+lm.except.bytes(), "duration", time.Since(start).Round(time.Millisecond))
	}
	c.statusMu.Lock()
	c.lastResult, c.lastErr = result, ""
	if err != nil {
		c.lastErr = err.Error()
	}
	c.statusMu.Unlock()
	if mt := m.opts.Metrics; mt != nil {
		mt.ListRefreshes.WithLabelValues(c.name, result).Inc()
		mt.ListDomains.WithLabelValues(c.name).Set(float64(c.cur.Load().block.count))
	}
	return err
}

func (m *Manager) logSource(c *category, src string, out sourceOutcome) {
	r := out.res
	if out.err != nil {
		m.log.Warn("list source failed", "category", c.name, "source", src, "fallback", out.fallback, "err", out.err)
	}
	m.log.Debug("list source parsed", "category", c.name, "source", src, "format", r.Format.String(),
		"lines", r.Lines, "entries", r.Entries, "exceptions", r.Exceptions,
		"invalid", r.Invalid, "unsupported", r.Unsupported)
	for _, p := range r.Problems[:min(len(r.Problems), 3)] {
		m.log.Debug("invalid list line", "category", c.name, "problem", p.String())
	}
}

func (m *Manager) loadSource(ctx context.Context, c *category, src string, b *listBuilder) sourceOutcome {
	if !isURL(src) {
		res, err := parseFile(src, src, c.format, b)
		return sourceOutcome{res: res, err: err}
	}
	return m.loadURL(ctx, c, src, b)
}

func parseFile(path, name string, format Format, b *listBuilder) (ParseResult, error) {
	f, err := openSource(path)
	if err != nil {
		return ParseResult{}, err
	}
	defer f.Close()
	return Parse(f, name, format, b.emit)
}

// loadURL downloads src, parses it and makes it the last good copy; if
// the download fails or has no entries, the last good copy is parsed
// instead.
func (m *Manager) loadURL(ctx context.Context, c *category, src string, b *listBuilder) sourceOutcome {
	var listPath, metaPath string
	var prev cacheMeta
	haveCopy := false
	dir := os.TempDir()
	if m.opts.StateDir != "" {
		listPath, metaPath = cachePaths(m.opts.StateDir, src)
		dir = filepath.Dir(listPath)
		if _, err := os.Stat(listPath); err == nil {
			haveCopy = true
			prev = readMeta(metaPath)
		}
	}
	tmp, meta, err := download(ctx, m.client, src, dir, prev, m.opts.MaxBodyBytes)
	switch {
	case errors.Is(err, errNotModified):
		res, err := parseFile(listPath, src, c.format, b)
		return sourceOutcome{res: res, err: err}
	case err == nil:
		mark := b.mark()
		res, perr := parseFile(tmp, src, c.format, b)
		if perr == nil && res.Entries > 0 {
			if listPath == "" {
				os.Remove(tmp)
			} else if kerr := keepCopy(tmp, listPath, metaPath, meta); kerr != nil {
				os.Remove(tmp)
				m.log.Warn("cannot keep downloaded list", "category", c.name, "source", src, "err", kerr)
			}
			return sourceOutcome{res: res}
		}
		os.Remove(tmp)
		b.rollback(mark)
		err = perr
		if err == nil {
			err = errEmpty
		}
	}
	err = fmt.Errorf("%s: %w", src, err)
	if !haveCopy {
		return sourceOutcome{err: err}
	}
	res, cerr := parseFile(listPath, src, c.format, b)
	if cerr != nil {
		return sourceOutcome{res: res, err: errors.Join(err, cerr)}
	}
	return sourceOutcome{res: res, err: err, fallback: true}
}
