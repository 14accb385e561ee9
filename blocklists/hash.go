package blocklists

// FNV-1a, run from the last byte of a name to the first, so that one pass
// over a query name yields the hash of every label suffix ("com",
// "example.com", "www.example.com") on the way.
const (
	fnvOffset64 uint64 = 14695981039346656037
	fnvPrime64  uint64 = 1099511628211
)

// maxLabels bounds the labels of a name: 253 bytes hold at most 127.
const maxLabels = 128

// mix spreads FNV's weak high bits (murmur3's finalizer); table slots are
// chosen from the high bits and the low two bits carry entry flags.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// hashName hashes a normalized (lower-case, no trailing dot) name.
func hashName(name []byte) uint64 {
	h := fnvOffset64
	for i := len(name) - 1; i >= 0; i-- {
		h ^= uint64(name[i])
		h *= fnvPrime64
	}
	return mix(h)
}

// suffixes holds the hash of every label suffix of one query name:
// index 0 is the last label, index n-1 the whole name.
type suffixes struct {
	n     int
	hash  [maxLabels]uint64
	start [maxLabels]uint8 // byte offset of each suffix in the name
}

// split fills s from qname, folding ASCII case and ignoring one trailing
// dot, without allocating. Names that no list can contain (empty labels,
// over-long) leave n = 0.
func (s *suffixes) split(qname string) {
	s.n = 0
	if len(qname) > 0 && qname[len(qname)-1] == '.' {
		qname = qname[:len(qname)-1]
	}
	if len(qname) == 0 || len(qname) > maxNameLen {
		return
	}
	h := fnvOffset64
	labelEnd := len(qname)
	n := 0
	for i := len(qname) - 1; i >= 0; i-- {
		c := qname[i]
		if c == '.' {
			if i == labelEnd-1 {
				return // empty label
			}
			s.hash[n] = mix(h)
			s.start[n] = uint8(i + 1)
			n++
			labelEnd = i
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= fnvPrime64
	}
	if labelEnd == 0 {
		return // leading dot
	}
	s.hash[n] = mix(h)
	s.start[n] = 0
	s.n = n + 1
}
