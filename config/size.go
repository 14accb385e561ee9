package config

import (
	"math"
	"strconv"
	"strings"
)

// Bounds of the query log keys.
const (
	minLogSize  = 64 << 10
	maxLogFiles = 1000
)

// sizeUnits are the suffixes a size may carry: decimal and binary
// multiples, case-insensitive.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// parseByteSize reads "100MB", "64MiB", "1.5 GB" or a plain number of
// bytes.
func parseByteSize(s string) (int64, bool) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) >= math.MaxInt64 {
		return 0, false
	}
	return int64(f * float64(mult)), true
}

// byteSize validates a size key: 0 (off) or at least min bytes.
func (v *validator) byteSize(key, s string, min int64) int64 {
	n, ok := parseByteSize(s)
	if !ok {
		v.err(key, "%s: invalid size %q (use e.g. \"100MB\", \"64MiB\", or \"0\" for no limit)", key, s)
		return 0
	}
	if n != 0 && n < min {
		v.err(key, "%s: %q is less than %dKiB", key, s, min>>10)
	}
	return n
}
