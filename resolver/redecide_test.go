package resolver

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/metrics"
	"github.com/egressd/egressd/policy"
)

// reloadingEnforcer stands for the firewall across a reload: an Allow
// decided under a generation older than gen is refused with
// enforce.ErrStale when denies says the policy in force denies it, as
// firewall.NFT does after ReloadRecheck. It records what it installed.
type reloadingEnforcer struct {
	mu        sync.Mutex
	gen       uint64
	denies    func(enforce.Allowance) bool
	onStale   func() // runs after each refusal
	installed []enforce.Allowance
	refused   int
}

func (e *reloadingEnforcer) Allow(_ context.Context, a enforce.Allowance) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a.Generation != 0 && a.Generation < e.gen && e.denies(a) {
		e.refused++
		if e.onStale != nil {
			e.onStale()
		}
		return fmt.Errorf("%w: %s", enforce.ErrStale, a.Name)
	}
	e.installed = append(e.installed, a)
	return nil
}

func (e *reloadingEnforcer) Close() error { return nil }

func (e *reloadingEnforcer) reload(gen uint64, denies func(enforce.Allowance) bool, onStale func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gen, e.denies, e.onStale = gen, denies, onStale
}

// TestReloadBetweenDecideAndPush: a reload lands while the upstream is
// still answering a query decided under the old policy. The firewall
// refuses the old decision's push as stale when the new policy denies it;
// the query is then decided again under the new policy: its denial is
// the answer and nothing is installed, or, with a policy that changed
// once more meanwhile, SERVFAIL. A new policy that still allows the name
// gets the answer, pushed once (the firewall's re-check approved it).
func TestReloadBetweenDecideAndPush(t *testing.T) {
	allow := policy.Decision{Verdict: policy.Allow, Group: testGroup, Rule: "a.example"}
	deny := policy.Decision{Verdict: policy.Deny, Group: testGroup, Rule: "a.example", Source: "group[servers].deny", Mode: policy.ModeEnforce, Action: policy.ActionNXDomain}
	tests := []struct {
		name      string
		after     policy.Decision // the new policy's decision for a.example.
		denies    bool            // the new policy as the firewall asks it
		again     bool            // another reload while deciding anew
		rcode     int
		answered  bool
		installed int
		refused   int
		decision  string
		// egressd_stale_answers_total by result
		redecided, servfail int
	}{
		{name: "new policy denies", after: deny, denies: true, rcode: dns.RcodeNameError, refused: 1, decision: decisionDeny, redecided: 1},
		{name: "new policy still allows", after: allow, rcode: dns.RcodeSuccess, answered: true, installed: 1, decision: decisionAllow},
		{name: "policy changes again", after: allow, denies: true, again: true, rcode: dns.RcodeServerFailure, refused: 2, decision: decisionAllow, redecided: 1, servfail: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked, release := make(chan struct{}), make(chan struct{})
			answer := staticAnswer(t, dns.RcodeSuccess, []string{"a.example. 60 IN A 192.0.2.1"}, nil)
			up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
				close(asked)
				<-release
				answer(w, r, udp)
			})
			enf := &reloadingEnforcer{gen: 1}
			m := metrics.New()
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Enforcer: enf, Timeout: 30 * time.Second, Metrics: m})
			env.policy.gen = 1
			env.policy.names = map[string]policy.Decision{"a.example.": allow}

			got := make(chan *dns.Msg, 1)
			go func() {
				w := fakeWriter(udpClient("127.0.0.1"))
				env.srv.ServeDNS(w, question("a.example.", dns.TypeA))
				resp := new(dns.Msg)
				if err := resp.Unpack(w.Out); err != nil {
					t.Errorf("response does not parse: %v", err)
				}
				got <- resp
			}()
			<-asked // decided under generation 1; the upstream holds the answer
			// The reload: the firewall first (its re-check is done), then
			// the resolver's policy, as egressd applies a config.
			var again func()
			if tt.again {
				again = func() { enf.gen = 3 } // runs with enf.mu held
			}
			enf.reload(2, func(enforce.Allowance) bool { return tt.denies }, again)
			env.srv.SetPolicy(&fakePolicy{gen: 2, names: map[string]policy.Decision{"a.example.": tt.after}})
			close(release)
			resp := <-got

			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if answered := len(resp.Answer) > 0; answered != tt.answered {
				t.Errorf("answer %v, want answered %t", resp.Answer, tt.answered)
			}
			enf.mu.Lock()
			installed, refused := enf.installed, enf.refused
			enf.mu.Unlock()
			if len(installed) != tt.installed || refused != tt.refused {
				t.Errorf("installed %+v and refused %d, want %d installed and %d refused", installed, refused, tt.installed, tt.refused)
			}
			if e := env.log.last(t); e.Decision != tt.decision {
				t.Errorf("logged decision %q, want %q", e.Decision, tt.decision)
			}
			for result, want := range map[string]int{"redecided": tt.redecided, "servfail": tt.servfail} {
				if got := int(testutil.ToFloat64(m.StaleAnswers.WithLabelValues(result))); got != want {
					t.Errorf("egressd_stale_answers_total{result=%q} = %d, want %d", result, got, want)
				}
			}
		})
	}
}
