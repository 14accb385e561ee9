// Package enforce is the seam between the resolver and the packet filter:
// what an approved answer asks of the firewall (Allowance), the interface a
// backend implements (Enforcer), and the backend that enforces nothing
// (None). The nftables backend lives in package firewall; the resolver
// depends only on this package.
package enforce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd/policy"
)

// Allowance is one approved answer: the client's group may reach IPs
// (on Ports, or any port when Ports is empty) for TTL plus the grace period.
type Allowance struct {
	Group  string
	Client netip.Addr
	IPs    []netip.Addr
	Ports  []policy.PortRange
	TTL    time.Duration
	// Name is the query name the answer was approved for and Targets the
	// names it led to (CNAME and HTTPS/SVCB targets), in order. A backend
	// remembers them (and, with client scope, the client) so that a reload
	// can ask the new policy about its live elements; empty Name: nothing
	// to remember. The backend keeps its own copy.
	Name    string
	Targets []string
	// Generation is that of the policy the answer was decided under
	// (policy.Engine.Generation); zero: not known. A backend whose
	// policy a reload has replaced since (a larger generation) asks the
	// current policy about the allowance before adding anything, and
	// refuses it with ErrStale when that policy denies it.
	Generation uint64
	// FromFleet marks another fleet node's approval applied here, not an
	// answer of this node: a backend keeps the mark with the elements, so
	// that a restart does not publish them again as this node's own.
	FromFleet bool
	// Memo, when set, belongs to one answer (the same IPs and Targets
	// slices every time it is asked about, as a cached answer is): an
	// InEffectChecker may note there until when the answer's elements
	// stand without looking them up again. nil: nothing is noted.
	Memo *EffectMemo
}

// EffectMemo is where a backend notes, for one answer, what makes a later
// InEffect (or Allow) of it true at once. What it holds is the backend's;
// callers only give it. Safe for concurrent use.
type EffectMemo struct {
	note atomic.Pointer[any]
}

// MemoNoteBytes is the most memory a backend's note in an EffectMemo
// takes, for callers that account for the memory of what they cache.
const MemoNoteBytes = 192

// Load returns what was last stored, or nil.
func (m *EffectMemo) Load() any {
	if p := m.note.Load(); p != nil {
		return *p
	}
	return nil
}

// Store replaces what m holds.
func (m *EffectMemo) Store(v any) { m.note.Store(&v) }

// Enforcer installs allowances. Allow returns only once the allowance is in
// effect, so the answer may be sent afterwards.
type Enforcer interface {
	Allow(ctx context.Context, a Allowance) error
	Close() error
}

// InEffectChecker is an Enforcer that can tell, without waiting, that
// Allow(a) would return at once because every element a asks for is
// already live long enough. A caller that must not wait (the UDP reader
// answering cache hits) asks first and passes the query on otherwise.
// InEffect neither keeps nor modifies a.IPs.
type InEffectChecker interface {
	InEffect(a Allowance) bool
}

// ErrLimit is returned (wrapped) by Allow when an allowance would pass a
// backend's caps (addresses per answer, elements per set). Nothing of the
// allowance is added and the elements already live stay; the resolver
// fails the answer closed whatever fail_open says.
var ErrLimit = errors.New("firewall: limit reached")

// ErrStale is returned (wrapped) by Allow for an allowance decided under a
// policy a reload has replaced since, when the current policy denies it
// (a name, a target, an address or the client's group, or the ports).
// Nothing of the allowance is added; the resolver decides the query again
// under the current policy.
var ErrStale = errors.New("firewall: answer decided under a replaced policy")

// None is the "none" backend: it enforces nothing. Use it where egressd
// only filters DNS, or lacks the privilege to manage nftables.
type None struct{}

// NewNone returns the no-op backend and logs, once, that destinations are
// not enforced.
func NewNone(logger *slog.Logger) *None {
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn(`firewall backend "none": resolved destinations are not enforced; clients can reach any address they know`)
	return &None{}
}

// Allow does nothing.
func (*None) Allow(context.Context, Allowance) error { return nil }

// Close does nothing.
func (*None) Close() error { return nil }

// Recheck asks the current policy whether group may still reach dest for
// names from client, and on which ports (none: any).
type Recheck func(group string, client, dest netip.Addr, names []string) (ports []policy.PortRange, ok bool)

// CheckStale re-checks an allowance decided under a policy older than
// generation (the current one's): every address, for every name it was
// approved for (its name and targets), from its client, on ports covering
// its own. It returns an error wrapping ErrStale when check denies any of
// it (an allowance without a name cannot be asked about: denied too), and
// nil when check approves all of it or the allowance is not stale (its
// generation unknown, or not older).
func CheckStale(a Allowance, generation uint64, check Recheck) error {
	if a.Generation == 0 || a.Generation >= generation || check == nil {
		return nil
	}
	if a.Name == "" {
		return fmt.Errorf("%w: group %s: no name to ask the current policy about", ErrStale, a.Group)
	}
	names := append(append(make([]string, 0, 1+len(a.Targets)), a.Name), a.Targets...)
	client := a.Client.Unmap().WithZone("")
	for _, ip := range a.IPs {
		dest := ip.Unmap().WithZone("")
		ports, ok := check(a.Group, client, dest, names)
		if !ok {
			return fmt.Errorf("%w: group %s may no longer reach %s for %s", ErrStale, a.Group, dest, a.Name)
		}
		if !policy.PortsWithin(a.Ports, ports) {
			return fmt.Errorf("%w: group %s may no longer reach %s for %s on those ports", ErrStale, a.Group, dest, a.Name)
		}
	}
	return nil
}
