package blocklists

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
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
	// digest is of the bytes parsed: the new download, the file, or the
	// last good copy.
	digest contentDigest
	err    error // nil when the source loaded fresh
	// fallback is set when err != nil but the last good copy was used;
	// confirmed is then when that copy was last known to be current.
	fallback  bool
	confirmed time.Time
}

// refreshCategory fetches all sources of c. When every one is byte for
// byte what the current lists were built from, they stay as they are;
// otherwise all sources are parsed and the result swapped in, unless that
// would lose data: when a source failed without a copy to fall back on,
// or everything parsed to nothing, the current lists stay.
func (m *Manager) refreshCategory(ctx context.Context, c *category) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	old := c.cur.Load()

	fetched := make([]fetchedSource, len(c.sources))
	for i, src := range c.sources {
		fetched[i] = m.fetchSource(ctx, src, old != nil)
	}
	defer func() {
		for i := range fetched {
			fetched[i].discard()
		}
	}()
	if old != nil && unchangedSince(old, fetched) {
		m.keepUnchanged(c, fetched)
		m.log.Debug("category unchanged; lists kept", "category", c.name,
			"duration", time.Since(start).Round(time.Millisecond))
		success := make([]time.Time, len(c.sources))
		for i, f := range fetched {
			success[i] = f.at
		}
		m.finishRefresh(c, resultUnchanged, nil, success)
		return nil
	}

	b := &listBuilder{block: tableBuilder{lines: m.opts.Lines}, except: tableBuilder{lines: m.opts.Lines}}
	results := make([]ParseResult, len(c.sources))
	digests := make([]contentDigest, len(c.sources))
	success := make([]time.Time, len(c.sources))
	var errs []error
	lost, allEmpty := false, true
	for i, src := range c.sources {
		b.src = i
		out := m.loadSource(c, &fetched[i], b)
		m.logSource(c, src, out)
		results[i] = out.res
		results[i].Problems, results[i].Skipped = nil, nil
		digests[i] = out.digest
		switch {
		case out.err == nil:
			success[i] = fetched[i].at
		case out.fallback:
			success[i] = out.confirmed
		}
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
		success = nil
	case haveOld && b.block.len() == 0:
		result = resultEmpty
		if err == nil {
			err = errEmpty
		}
		m.log.Warn("list refresh found no entries; keeping the previous lists", "category", c.name)
		success = nil
	default:
		lm := &listMatcher{exact: c.exact, sources: c.sources, loaded: time.Now(), results: results, digests: digests}
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
		if m.opts.FreeMemory {
			// The parsed entries and the read buffers are garbage now.
			debug.FreeOSMemory()
		}
	}
	m.finishRefresh(c, result, err, success)
	return err
}

// unchangedSince reports whether every fetched source has exactly the
// bytes old was built from.
func unchangedSince(old *listMatcher, fetched []fetchedSource) bool {
	if len(old.digests) != len(fetched) {
		return false
	}
	for i, f := range fetched {
		if f.err != nil || !f.digest.known() || f.digest != old.digests[i] {
			return false
		}
	}
	return true
}

// keepUnchanged records that the server confirmed each cached copy, so
// the validators of an identical body are used next time and a restart
// knows how fresh the copies are.
func (m *Manager) keepUnchanged(c *category, fetched []fetchedSource) {
	for i := range fetched {
		f := &fetched[i]
		switch {
		case f.tmp != "":
			m.keepDownload(c, f)
		case f.notModified:
			m.confirmCopy(c, f)
		}
	}
}

func (m *Manager) logSource(c *category, src string, out sourceOutcome) {
	r := out.res
	if out.err != nil {
		m.log.Warn("list source failed", "category", c.name, "source", sourceLabel(src), "fallback", out.fallback, "err", out.err)
	}
	m.log.Debug("list source parsed", "category", c.name, "source", sourceLabel(src), "format", r.Format.String(),
		"lines", r.Lines, "entries", r.Entries, "exceptions", r.Exceptions,
		"invalid", r.Invalid, "unsupported", r.Unsupported)
	for _, p := range r.Problems[:min(len(r.Problems), 3)] {
		m.log.Debug("invalid list line", "category", c.name, "problem", p.String())
	}
}

func (m *Manager) loadSource(c *category, f *fetchedSource, b *listBuilder) sourceOutcome {
	if !isURL(f.src) {
		res, d, err := parseFile(f.src, f.src, c.format, b)
		return sourceOutcome{res: res, digest: d, err: err}
	}
	return m.loadURL(c, f, b)
}

// parseFile parses one source into b and returns the digest of the bytes
// it read.
func parseFile(path, name string, format Format, b *listBuilder) (ParseResult, contentDigest, error) {
	f, err := openSource(path)
	if err != nil {
		return ParseResult{}, contentDigest{}, err
	}
	defer f.Close()
	h := sha256.New()
	res, err := Parse(io.TeeReader(f, h), name, format, b.emit)
	if err == nil {
		// The parser may stop short of the end, after a gzip trailer.
		_, err = io.Copy(h, f)
	}
	if err != nil {
		return res, contentDigest{}, err
	}
	return res, digestFromHash(h), nil
}

// loadURL parses what fetchSource got for a URL and makes a good download
// the last good copy; if the download failed or has no entries, the last
// good copy is parsed instead.
func (m *Manager) loadURL(c *category, f *fetchedSource, b *listBuilder) sourceOutcome {
	var err error
	switch {
	case f.notModified:
		res, d, err := parseFile(f.listPath, f.src, c.format, b)
		if err == nil {
			m.confirmCopy(c, f)
		}
		return sourceOutcome{res: res, digest: d, err: err}
	case f.err != nil:
		err = f.err
	default:
		mark := b.mark()
		res, d, perr := parseFile(f.tmp, f.src, c.format, b)
		if perr == nil && res.Entries > 0 {
			m.keepDownload(c, f)
			return sourceOutcome{res: res, digest: d}
		}
		f.discard()
		b.rollback(mark)
		err = perr
		if err == nil {
			err = errEmpty
		}
		err = fmt.Errorf("%s: %w", f.src, err)
	}
	if !f.haveCopy {
		return sourceOutcome{err: err}
	}
	res, d, cerr := parseFile(f.listPath, f.src, c.format, b)
	if cerr != nil {
		return sourceOutcome{res: res, err: errors.Join(err, cerr)}
	}
	return sourceOutcome{res: res, digest: d, err: err, fallback: true, confirmed: f.prev.confirmed()}
}
