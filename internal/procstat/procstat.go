// Package procstat reads what benchmarks and the soak test print about the
// machine they ran on: the load average, from /proc.
package procstat

import (
	"os"
	"strings"
)

// LoadAverage is the 1, 5 and 15 minute load average ("0.52 0.58 0.59"),
// or "?" when /proc/loadavg cannot be read: figures from a busy machine
// are read with it.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return parseLoadAverage(string(b))
}

func parseLoadAverage(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
