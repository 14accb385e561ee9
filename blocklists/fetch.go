package blocklists

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// isURL reports whether a source is fetched over HTTP rather than read
// from disk.
func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// isPlainHTTP reports a source fetched without TLS.
func isPlainHTTP(s string) bool { return strings.HasPrefix(s, "http://") }

// plainHTTPWarning is what check and start-up say about a plain http://
// source: the list decides what clients may reach, so whoever can change
// it in transit (any router, proxy or Wi-Fi on the way) changes the policy.
const plainHTTPWarning = "plain http:// source: anyone on the network path can rewrite this list, and with it the policy; use https://"

// cacheMeta is kept beside a downloaded list so the next fetch can be
// conditional (also after a restart), the file can be traced back to its
// URL, and a restart knows how fresh the copy is.
type cacheMeta struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Fetched      time.Time `json:"fetched"`
	// SHA256 is the digest of the list file, so a 304 answer can be
	// compared with what the current lists were built from.
	SHA256 string `json:"sha256,omitempty"`
	// Checked is when the server last confirmed the copy: a download, a
	// 304 or a byte-identical body.
	Checked time.Time `json:"checked,omitzero"`
}

// hasValidators reports whether a conditional request can be made.
func (m cacheMeta) hasValidators() bool { return m.ETag != "" || m.LastModified != "" }

// confirmed is when the copy was last known to be current.
func (m cacheMeta) confirmed() time.Time {
	if m.Checked.After(m.Fetched) {
		return m.Checked
	}
	return m.Fetched
}

// cachePaths returns where the last good copy of url lives in stateDir.
func cachePaths(stateDir, url string) (list, meta string) {
	sum := sha256.Sum256([]byte(url))
	base := filepath.Join(stateDir, "lists", hex.EncodeToString(sum[:12]))
	return base + ".list", base + ".json"
}

func readMeta(path string) cacheMeta {
	var m cacheMeta
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &m) // a broken sidecar only costs a full download
	}
	return m
}

// errNotModified says the cached copy is current.
var errNotModified = errors.New("not modified")

// download fetches url into a new temporary file in dir. Conditional
// headers come from prev when the cached copy exists. The caller removes
// the file. A 304 answer returns errNotModified.
func download(ctx context.Context, client *http.Client, url, dir string, prev cacheMeta, maxBytes int64) (path string, meta cacheMeta, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", meta, err
	}
	req.Header.Set("User-Agent", "egressd")
	if prev.ETag != "" {
		req.Header.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		req.Header.Set("If-Modified-Since", prev.LastModified)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", meta, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && prev.hasValidators() {
		return "", prev, errNotModified
	}
	if resp.StatusCode != http.StatusOK {
		return "", meta, fmt.Errorf("HTTP status %s", resp.Status)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", meta, err
	}
	f, err := os.CreateTemp(dir, "fetch-*.tmp")
	if err != nil {
		return "", meta, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, maxBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxBytes {
		err = fmt.Errorf("body larger than %d bytes", maxBytes)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", meta, err
	}
	now := time.Now().UTC()
	meta = cacheMeta{
		URL:          url,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		Fetched:      now,
		SHA256:       digestFromHash(h).String(),
		Checked:      now,
	}
	return f.Name(), meta, nil
}

// keepCopy moves a freshly parsed download into place as the last good
// copy of its URL.
func keepCopy(tmp, listPath, metaPath string, meta cacheMeta) error {
	if err := os.Rename(tmp, listPath); err != nil {
		return err
	}
	return writeMeta(metaPath, meta)
}

// writeMeta replaces the sidecar of a cached list.
func writeMeta(metaPath string, meta cacheMeta) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	// A temporary name of its own: categories sharing a URL may save it
	// at the same time.
	f, err := os.CreateTemp(filepath.Dir(metaPath), "meta-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), metaPath)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// removeStaleTemps deletes downloads a crash left half-written; anything
// older than an hour cannot belong to a fetch still running.
func removeStaleTemps(stateDir string) {
	tmps, _ := filepath.Glob(filepath.Join(stateDir, "lists", "*.tmp"))
	for _, t := range tmps {
		if fi, err := os.Stat(t); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(t)
		}
	}
}
