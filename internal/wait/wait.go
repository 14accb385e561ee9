// Package wait polls for a condition that another goroutine or process
// brings about, bounded in time: a daemon answering, a log line written,
// a table restored.
package wait

import "time"

// Until checks cond every interval until it holds (true) or limit has
// passed (false). cond runs at least once, and once more after the limit,
// so a condition met just before the deadline is not missed.
func Until(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}
