package blocklists

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// fetchedSource is one source after the first step of a refresh: what
// there is to parse, and the digest that tells whether it changed.
type fetchedSource struct {
	src string
	// tmp is a new download not yet parsed or kept; "" otherwise.
	tmp  string
	meta cacheMeta // of tmp
	// notModified means the server answered 304 for the last good copy.
	notModified bool
	// digest is of the bytes the source has now (file, download or copy
	// confirmed by a 304); zero when unknown.
	digest contentDigest
	// err is a failed download; the copy may still be parsed.
	err error
	// at is when the source was read or the server answered; it becomes
	// the source's last success if what it got is used.
	at time.Time

	// The last good copy in the state directory; listPath is "" without
	// one configured.
	listPath, metaPath string
	haveCopy           bool
	prev               cacheMeta
}

// fetchSource downloads a URL source with the validators of its last
// good copy, or hashes a file source when there are lists to compare it
// with (compare).
func (m *Manager) fetchSource(ctx context.Context, src string, compare bool) fetchedSource {
	f := fetchedSource{src: src}
	if !isURL(src) {
		if compare {
			// A file that cannot be read has no digest; parsing it reports why.
			f.digest, _ = digestSource(src)
		}
		f.at = time.Now()
		return f
	}
	dir := os.TempDir()
	if m.opts.StateDir != "" {
		f.listPath, f.metaPath = cachePaths(m.opts.StateDir, src)
		dir = filepath.Dir(f.listPath)
		if _, err := os.Stat(f.listPath); err == nil {
			f.haveCopy = true
			f.prev = readMeta(f.metaPath)
		}
	}
	tmp, meta, err := download(ctx, m.client, src, dir, f.prev, m.opts.MaxBodyBytes)
	f.at = time.Now()
	switch {
	case errors.Is(err, errNotModified):
		f.notModified = true
		f.digest = parseDigest(f.prev.SHA256)
		if !f.digest.known() {
			// A copy kept before digests were recorded.
			f.digest, _ = digestSource(f.listPath)
		}
	case err != nil:
		f.err = fmt.Errorf("%s: %w", src, err)
	default:
		f.tmp, f.meta, f.digest = tmp, meta, parseDigest(meta.SHA256)
		// The copy's metadata and the last-success gauge tell one time.
		f.meta.Checked = f.at
	}
	return f
}

// discard removes a download that was not kept.
func (f *fetchedSource) discard() {
	if f.tmp != "" {
		os.Remove(f.tmp)
		f.tmp = ""
	}
}

// keepDownload makes the download the last good copy, with its validators.
func (m *Manager) keepDownload(c *category, f *fetchedSource) {
	if f.tmp == "" {
		return
	}
	if f.listPath == "" {
		f.discard()
		return
	}
	if err := keepCopy(f.tmp, f.listPath, f.metaPath, f.meta); err != nil {
		m.log.Warn("cannot keep downloaded list", "category", c.name, "source", sourceLabel(f.src), "err", err)
		f.discard()
		return
	}
	f.tmp = ""
}

// confirmCopy records that a 304 confirmed the last good copy.
func (m *Manager) confirmCopy(c *category, f *fetchedSource) {
	meta := f.prev
	meta.Checked = f.at
	if meta.SHA256 == "" {
		meta.SHA256 = f.digest.String()
	}
	if err := writeMeta(f.metaPath, meta); err != nil {
		m.log.Warn("cannot update cached list metadata", "category", c.name, "source", sourceLabel(f.src), "err", err)
	}
}
