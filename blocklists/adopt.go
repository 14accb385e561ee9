package blocklists

import (
	"context"
	"slices"
)

// LoadFrom makes m ready without the network where it can: every category
// whose sources, match and format are those of a category of prev (the
// Manager in use) takes over prev's lists as they are, so a reload that
// changes rules or refresh intervals applies at once; only categories that
// are new or read other sources are loaded, as Load does. Call Refresh
// afterwards, in the background, to bring the adopted lists up to date.
func (m *Manager) LoadFrom(ctx context.Context, prev *Manager) error {
	if m.opts.StateDir != "" {
		removeStaleTemps(m.opts.StateDir)
	}
	adopted := map[*category]bool{}
	if prev != nil {
		for _, c := range m.cats {
			p, ok := prev.byName[c.name]
			if !ok || !sameLists(c.resolvedSpec, p.resolvedSpec) {
				continue
			}
			lm := p.cur.Load()
			if lm == nil {
				continue
			}
			c.cur.Store(lm)
			p.statusMu.Lock()
			c.lastResult, c.lastErr, c.checked, c.succeeded = p.lastResult, p.lastErr, p.checked, p.succeeded
			copy(c.sourceSuccess, p.sourceSuccess)
			p.statusMu.Unlock()
			adopted[c] = true
		}
	}
	return m.refreshSome(ctx, func(c *category) bool { return !adopted[c] }, func(c *category, err error) bool {
		return c.cur.Load().block.count == 0
	})
}

// sameLists reports whether two specs build the same lists.
func sameLists(a, b resolvedSpec) bool {
	return a.exact == b.exact && a.format == b.format && slices.Equal(a.sources, b.sources)
}
