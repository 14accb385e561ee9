//go:build !linux

package blocklists

import "sync/atomic"

// Other systems keep tables on the Go heap; the counters stay zero.
var liveMappings, liveMappedBytes atomic.Int64

type tableMem struct{}

func allocTable(n int, lines bool) ([]uint64, []uint32, *tableMem) {
	return heapTable(n, lines)
}
