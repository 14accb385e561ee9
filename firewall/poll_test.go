package firewall

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/egressd/egressd/internal/wait"
)

// pollMode says which readings of a tablePoller count.
type pollMode int

const (
	// everyReading counts every reading, so a check that must never fail
	// is held to that for each one.
	everyReading pollMode = iota
	// withinOneGeneration counts a reading only when the ruleset
	// generation did not change while it was taken: a dump that overlaps
	// a commit may be torn (the kernel flags such dumps, the library does
	// not report it). Skipped readings are counted in torn.
	withinOneGeneration
)

// pollLimit bounds how long a tablePoller runs if nobody stops it.
const pollLimit = 20 * time.Second

// tablePoller reads the table in a namespace over a netlink socket of its
// own, again and again, while a test changes the table from another one.
type tablePoller struct {
	polls    atomic.Int64 // readings that counted
	failures atomic.Int64 // counted readings in which the check failed
	torn     atomic.Int64 // readings skipped under withinOneGeneration
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// pollTable starts reading with check until stopPolling, the end of the
// test or pollLimit. Not being able to open its sockets counts as a
// failure.
func pollTable(t *testing.T, ns *testNS, mode pollMode, check func(*nftables.Conn) bool) *tablePoller {
	t.Helper()
	p := &tablePoller{stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(p.stopPolling)
	go func() {
		defer close(p.done)
		c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
		if err != nil {
			p.failures.Add(1)
			return
		}
		var gen *genReader
		if mode == withinOneGeneration {
			if gen, err = newGenReader(ns.fd); err != nil {
				p.failures.Add(1)
				return
			}
			defer gen.Close()
		}
		deadline := time.Now().Add(pollLimit)
		for time.Now().Before(deadline) {
			select {
			case <-p.stop:
				return
			default:
			}
			if gen == nil {
				if !check(c) {
					p.failures.Add(1)
				}
				p.polls.Add(1)
				continue
			}
			before, err1 := gen.id()
			ok := check(c)
			after, err2 := gen.id()
			switch {
			case err1 != nil || err2 != nil:
				p.failures.Add(1)
			case before != after:
				p.torn.Add(1)
				continue
			case !ok:
				p.failures.Add(1)
			}
			p.polls.Add(1)
		}
	}()
	return p
}

// waitPolls lets the poller finish k more counted readings, waiting two
// seconds at most.
func (p *tablePoller) waitPolls(k int64) {
	target := p.polls.Load() + k
	wait.Until(2*time.Second, time.Millisecond, func() bool { return p.polls.Load() >= target })
}

// stopPolling ends the poller and waits until it has.
func (p *tablePoller) stopPolling() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}
