// Package benchcpu reports a benchmark's process CPU time per operation,
// split into user (Go) and system (kernel) time, from getrusage. On a
// machine shared with other work this is steadier than wall-clock time,
// and the split shows where a netlink or socket-heavy operation spends
// it: the kernel processes a netlink batch inside the sendmsg that sends
// it, so its work is system time of this process.
package benchcpu

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Start records the process's CPU time; the returned function, called
// after the benchmark loop, reports user-ns/op and sys-ns/op over
// b.N operations, and cswitch/op: the context switches of all the
// process's threads (voluntary, a thread that slept, and involuntary),
// which count the wake-ups an operation costs independently of how busy
// the machine is. The process's other goroutines (servers the benchmark
// runs in-process) count too: that is the cost of the operation.
func Start(b *testing.B) (stop func()) {
	b.Helper()
	u0, s0, c0 := usage(b)
	return func() {
		b.Helper()
		u1, s1, c1 := usage(b)
		if b.N == 0 {
			return
		}
		b.ReportMetric(float64((u1-u0).Nanoseconds())/float64(b.N), "user-ns/op")
		b.ReportMetric(float64((s1-s0).Nanoseconds())/float64(b.N), "sys-ns/op")
		b.ReportMetric(float64(c1-c0)/float64(b.N), "cswitch/op")
	}
}

func usage(b *testing.B) (user, sys time.Duration, switches int64) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}
