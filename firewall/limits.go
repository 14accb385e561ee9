package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/enforce"
)

// Defaults for Spec.MaxAddressesPerAnswer and Spec.MaxElementsPerSet.
const (
	// DefaultMaxAddressesPerAnswer is far above what address pools behind
	// one name return (a 1232-byte EDNS answer holds about 70 A records)
	// and far below what a hostile zone can pack into a TCP answer
	// (thousands).
	DefaultMaxAddressesPerAnswer = 64
	// DefaultMaxElementsPerSet bounds the kernel memory of one set to a
	// few MiB and keeps a reload, which re-adds every element in one
	// batch, well within the netlink socket buffer.
	DefaultMaxElementsPerSet = 65536
	// DefaultMaxElementsPerClient is an eighth of a default set: one
	// client cannot fill its group's sets for the others, and a host
	// reaching more than 8,192 destinations within their lifetimes (the
	// TTL plus the grace) is rare.
	DefaultMaxElementsPerClient = 8192
)

// ErrLimit is returned (wrapped) by Allow when an allowance would pass a
// cap: more addresses than Spec.MaxAddressesPerAnswer, a set that would
// hold more than Spec.MaxElementsPerSet elements, or a client whose
// answers would have added more than Spec.MaxElementsPerClient live ones.
// Nothing of the allowance is added and the elements already live stay.
var ErrLimit = enforce.ErrLimit

// Reasons for egressd_firewall_rejected_total.
const (
	rejectAddresses   = "addresses_per_answer"
	rejectSetFull     = "set_full"
	rejectClientShare = "client_share"
)

// limitLogEvery is the least time between two log lines for one reason.
const limitLogEvery = 10 * time.Second

func (s *Spec) maxAddresses() int {
	if s.MaxAddressesPerAnswer > 0 {
		return s.MaxAddressesPerAnswer
	}
	return DefaultMaxAddressesPerAnswer
}

func (s *Spec) maxElements() int {
	if s.MaxElementsPerSet > 0 {
		return s.MaxElementsPerSet
	}
	return DefaultMaxElementsPerSet
}

func (s *Spec) maxPerClient() int {
	if s.MaxElementsPerClient > 0 {
		return s.MaxElementsPerClient
	}
	return min(DefaultMaxElementsPerClient, s.maxElements())
}

// rejections counts and logs allowances refused by a cap. Logging is
// limited to one line per reason per limitLogEvery, which carries the
// count of refusals it stood for; a client asking for huge answers in a
// loop cannot flood the log.
type rejections struct {
	counter *prometheus.CounterVec
	log     *slog.Logger
	now     func() time.Time

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newRejections(reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*rejections, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_firewall_rejected_total",
		Help: "Allowances refused (answered SERVFAIL) because a firewall cap was reached, by reason.",
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			existing, ok := c, false
			if errors.As(err, &dup) {
				existing, ok = dup.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, err
			}
			c = existing
		}
	}
	for _, r := range []string{rejectAddresses, rejectSetFull, rejectClientShare} {
		c.WithLabelValues(r) // export zeros so rate() works from the start
	}
	return &rejections{counter: c, log: log, now: now, last: map[string]time.Time{}, suppressed: map[string]int{}}, nil
}

// reject counts one refusal and logs it unless a line for the same reason
// was logged less than limitLogEvery ago. It returns the error for Allow.
func (r *rejections) reject(reason string, err error, attrs ...any) error {
	r.counter.WithLabelValues(reason).Inc()
	now := r.now()
	r.mu.Lock()
	last, seen := r.last[reason]
	if seen && now.Sub(last) < limitLogEvery {
		r.suppressed[reason]++
		r.mu.Unlock()
		return err
	}
	suppressed := r.suppressed[reason]
	r.last[reason], r.suppressed[reason] = now, 0
	r.mu.Unlock()
	attrs = append(attrs, "reason", reason, "err", err, "suppressed_since_last", suppressed)
	r.log.Warn("firewall: answer refused (SERVFAIL), a cap is reached", attrs...)
	return err
}

// checkAddresses refuses an allowance with more addresses than the cap.
func (n *NFT) checkAddresses(a Allowance) error {
	limit := n.limits().maxAddr
	if len(a.IPs) <= limit {
		return nil
	}
	return n.rejected.reject(rejectAddresses,
		fmt.Errorf("%w: answer has %d addresses, max_addresses_per_answer is %d", ErrLimit, len(a.IPs), limit),
		"group", a.Group)
}

// limitView is the caps of the installed spec, for any goroutine.
type limitView struct {
	maxAddr, maxElems int
}

func (n *NFT) limits() limitView {
	if v := n.view.Load(); v != nil {
		return v.limits
	}
	return limitView{maxAddr: DefaultMaxAddressesPerAnswer, maxElems: DefaultMaxElementsPerSet}
}

// MaxSetGCInterval bounds Spec.SetGCInterval: expired elements stay in
// kernel memory up to this long after their timeout.
const MaxSetGCInterval = time.Hour
