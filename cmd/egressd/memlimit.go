package main

import (
	"bufio"
	"bytes"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupShare is the part of a cgroup memory limit that becomes the Go
// runtime's soft limit: the rest is left for what the runtime does not
// count (the binary's pages, kernel buffers) and for the overshoot of a
// soft limit, so the kernel's limit is not reached first.
const cgroupShare = 0.9

// memoryLimit is the soft memory limit for [server] memory_limit
// (configured) and where it came from; 0 means none is set here. A
// configured size wins; with 0 (automatic), a GOMEMLIMIT in the
// environment stands (the runtime applied it already, and it is reported
// as from "GOMEMLIMIT" with 0), else 90% of the cgroup limit cgroupMax
// returns, if any; -1 sets none.
func memoryLimit(configured int64, env string, cgroupMax func() int64) (int64, string) {
	switch {
	case configured > 0:
		return configured, "server.memory_limit"
	case configured < 0:
		return 0, ""
	case env != "":
		return 0, "GOMEMLIMIT"
	}
	if max := cgroupMax(); max > 0 {
		return int64(float64(max) * cgroupShare), "cgroup memory.max"
	}
	return 0, ""
}

// cgroupMemoryMax returns a function that reads the memory limit of the
// cgroup that procCgroup (the text of /proc/self/cgroup) names, under the
// cgroup file system mounted at root: cgroup v2's memory.max, the
// tightest of the cgroup and its parents, or cgroup v1's
// memory.limit_in_bytes. It returns 0 when there is none.
func cgroupMemoryMax(procCgroup []byte, root string) func() int64 {
	return func() int64 {
		var limit int64
		sc := bufio.NewScanner(bytes.NewReader(procCgroup))
		for sc.Scan() {
			id, rest, _ := strings.Cut(sc.Text(), ":")
			controllers, dir, ok := strings.Cut(rest, ":")
			if !ok {
				continue
			}
			switch {
			case id == "0" && controllers == "":
				for d := path.Clean("/" + dir); ; d = path.Dir(d) {
					limit = tighter(limit, readLimit(filepath.Join(root, d, "memory.max")))
					if d == "/" {
						break
					}
				}
			case hasController(controllers, "memory"):
				limit = tighter(limit, readLimit(filepath.Join(root, "memory", dir, "memory.limit_in_bytes")))
			}
		}
		return limit
	}
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads a cgroup limit file: a number of bytes, or 0 for "max",
// a missing file, or cgroup v1's "unlimited" (a page-rounded MaxInt64).
func readLimit(file string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= math.MaxInt64/2 {
		return 0
	}
	return n
}

// tighter is the smaller of two limits, 0 meaning none.
func tighter(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// applyMemoryLimit sets the runtime's soft memory limit for [server]
// memory_limit and logs it. With a limit, the collector runs before the
// heap passes it even if the live heap has not doubled (GOGC 100), at the
// cost of more frequent collections when the live heap nears it.
func applyMemoryLimit(configured int64, log *slog.Logger) {
	procCgroup, _ := os.ReadFile("/proc/self/cgroup")
	limit, from := memoryLimit(configured, os.Getenv("GOMEMLIMIT"), cgroupMemoryMax(procCgroup, "/sys/fs/cgroup"))
	switch {
	case limit > 0:
		debug.SetMemoryLimit(limit)
		log.Info("memory limit set", "bytes", limit, "from", from)
	case from != "":
		log.Info("memory limit set", "bytes", debug.SetMemoryLimit(-1), "from", from)
	}
}
