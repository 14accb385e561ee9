package blocklists

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
)

// contentDigest is the SHA-256 of a source's bytes as read (still
// compressed, if it is). A refresh compares it with the digest of what the
// current lists were built from, to skip rebuilding lists that did not
// change. The zero value means unknown and never matches.
type contentDigest [sha256.Size]byte

func (d contentDigest) known() bool { return d != contentDigest{} }

func (d contentDigest) String() string {
	if !d.known() {
		return ""
	}
	return hex.EncodeToString(d[:])
}

func digestFromHash(h hash.Hash) contentDigest {
	var d contentDigest
	h.Sum(d[:0])
	return d
}

// parseDigest reads a digest kept in a sidecar; anything malformed is
// unknown, which only costs a rebuild.
func parseDigest(s string) contentDigest {
	var d contentDigest
	if b, err := hex.DecodeString(s); err == nil && len(b) == len(d) {
		copy(d[:], b)
	}
	return d
}

// digestSource hashes a file or built-in source without parsing it.
func digestSource(path string) (contentDigest, error) {
	f, err := openSource(path)
	if err != nil {
		return contentDigest{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return contentDigest{}, err
	}
	return digestFromHash(h), nil
}
