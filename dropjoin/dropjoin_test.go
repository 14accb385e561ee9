package dropjoin

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	t0      = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	alice   = netip.MustParseAddr("10.1.0.5")
	bob     = netip.MustParseAddr("10.1.0.6")
	carol   = netip.MustParseAddr("10.2.0.7")
	dst     = netip.MustParseAddr("192.0.2.7")
	https   = Port{Proto: unix.IPPROTO_TCP, From: 443, To: 443}
	ssh     = Port{Proto: unix.IPPROTO_TCP, From: 20, To: 22}
	answerA = Answer{Time: t0, Expiry: t0.Add(90 * time.Second), Client: alice, Group: "lan", Name: "api.example.com", Addrs: []netip.Addr{dst}}
)

func with(a Answer, f func(*Answer)) Answer { f(&a); return a }

func TestExplain(t *testing.T) {
	tcp := func(src netip.Addr, group string, port uint16, at time.Duration) Drop {
		return Drop{Time: t0.Add(at), Src: src, Group: group, Dst: dst, Proto: unix.IPPROTO_TCP, Port: port}
	}
	tests := []struct {
		name        string
		answers     []Answer
		drop        Drop
		scopeClient bool
		want        Result
	}{
		{"never resolved", nil, tcp(alice, "lan", 443, time.Second), false,
			Result{Reason: NeverResolved}},
		{"resolved by another client, scope client", []Answer{answerA}, tcp(bob, "lan", 443, time.Second), true,
			Result{Reason: ResolvedByOtherClient, Client: alice, Name: "api.example.com", AnswerTime: t0, Expiry: answerA.Expiry, Names: []string{"api.example.com"}}},
		{"resolved by a client of another group", []Answer{answerA}, tcp(carol, "office", 443, time.Second), false,
			Result{Reason: ResolvedByOtherClient, Client: alice, Name: "api.example.com", AnswerTime: t0, Expiry: answerA.Expiry, Names: []string{"api.example.com"}}},
		{"same group, scope group, live: unexplained", []Answer{answerA}, tcp(bob, "lan", 443, time.Second), false,
			Result{Reason: Unexplained, Name: "api.example.com", AnswerTime: t0, Expiry: answerA.Expiry, Names: []string{"api.example.com"}}},
		{"expired", []Answer{answerA}, tcp(alice, "lan", 443, 90*time.Second), false,
			Result{Reason: Expired, Name: "api.example.com", AnswerTime: t0, Expiry: answerA.Expiry, Names: []string{"api.example.com"}}},
		{"other ports", []Answer{with(answerA, func(a *Answer) { a.Ports = []Port{https} })}, tcp(alice, "lan", 22, time.Second), false,
			Result{Reason: OtherPorts, Ports: []Port{https}, Name: "api.example.com", AnswerTime: t0, Expiry: answerA.Expiry, Names: []string{"api.example.com"}}},
		{"approved port but dropped: unexplained", []Answer{with(answerA, func(a *Answer) { a.Ports = []Port{https, ssh} })}, tcp(alice, "lan", 22, time.Second), false,
			Result{Reason: Unexplained, Name: "api.example.com", AnswerTime: t0, Expiry: answerA.Expiry, Names: []string{"api.example.com"}}},
		{"name denied", []Answer{with(answerA, func(a *Answer) { a.Denied, a.Rule, a.Expiry = true, "deny *.example.com", a.Time })}, tcp(alice, "lan", 443, time.Second), false,
			Result{Reason: NameDenied, Rule: "deny *.example.com", Name: "api.example.com", AnswerTime: t0, Expiry: t0, Names: []string{"api.example.com"}}},
		{"foreign resolver", []Answer{answerA}, tcp(alice, "lan", 853, time.Second), false,
			Result{Reason: ForeignResolver, Names: []string{"api.example.com"}}},
		{"unlisted source", []Answer{answerA}, tcp(netip.MustParseAddr("172.16.0.1"), "", 443, time.Second), false,
			Result{Reason: UnlistedSource, Names: []string{"api.example.com"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex(100, time.Hour)
			for _, a := range tc.answers {
				x.Add(a)
			}
			got := x.Explain(tc.drop, tc.scopeClient)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Explain =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

// TestIndexBounds: the index holds at most max address entries, evicting
// the oldest, and forgets answers older than maxAge.
func TestIndexBounds(t *testing.T) {
	const max = 3
	x := NewIndex(max, time.Minute)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := 0; i < 5; i++ {
		x.Add(Answer{Time: t0.Add(time.Duration(i) * time.Second), Expiry: t0.Add(time.Hour), Client: alice, Group: "lan", Name: "n", Addrs: []netip.Addr{addr(i)}})
	}
	if x.Len() != max {
		t.Fatalf("Len = %d, want %d", x.Len(), max)
	}
	for i, want := range []string{NeverResolved, NeverResolved, Unexplained, Unexplained, Unexplained} {
		d := Drop{Time: t0.Add(5 * time.Second), Src: alice, Group: "lan", Dst: addr(i), Proto: unix.IPPROTO_TCP, Port: 443}
		if got := x.Explain(d, false).Reason; got != want {
			t.Errorf("address %d: reason %s, want %s", i, got, want)
		}
	}
	// Past maxAge of the newest answer (added at 4s) everything is gone.
	d := Drop{Time: t0.Add(4*time.Second + time.Minute + time.Nanosecond), Src: alice, Group: "lan", Dst: addr(4), Proto: unix.IPPROTO_TCP, Port: 443}
	if got := x.Explain(d, false).Reason; got != NeverResolved {
		t.Errorf("after maxAge: reason %s, want %s", got, NeverResolved)
	}
	if x.Len() != 0 {
		t.Errorf("Len after maxAge = %d, want 0", x.Len())
	}
	// An address answered twice keeps its newer answer when the older one
	// is evicted.
	y := NewIndex(2, time.Hour)
	y.Add(Answer{Time: t0, Expiry: t0.Add(time.Second), Group: "lan", Client: alice, Name: "old", Addrs: []netip.Addr{dst}})
	y.Add(Answer{Time: t0.Add(time.Second), Expiry: t0.Add(time.Hour), Group: "lan", Client: alice, Name: "new", Addrs: []netip.Addr{dst}})
	y.Add(Answer{Time: t0.Add(2 * time.Second), Expiry: t0.Add(time.Hour), Group: "lan", Client: alice, Name: "other", Addrs: []netip.Addr{addr(9)}})
	r := y.Explain(Drop{Time: t0.Add(3 * time.Second), Src: alice, Group: "lan", Dst: dst, Proto: unix.IPPROTO_TCP, Port: 443}, false)
	if r.Reason != Unexplained || r.Name != "new" || !reflect.DeepEqual(r.Names, []string{"new"}) {
		t.Errorf("after evicting the older answer: %+v, want the newer one only", r)
	}
}

// TestExplainNameDenied: a drop to an address that names the source's
// policy denies pointed at (in any group's recent answers) is name_denied
// with the name and the rule; a denied query of the client itself for a
// name known to map to the address decides first. Own approvals still
// decide before both; a live one whose name or a target the policy now
// denies (a reload removed its elements) is name_denied too.
func TestExplainNameDenied(t *testing.T) {
	const rule = "deny *.tracker.example"
	tracker := "ads.tracker.example."
	// carol's group (office) may resolve the tracker; lan may not.
	officeAnswer := Answer{Time: t0, Expiry: t0.Add(time.Minute), Client: carol, Group: "office", Name: tracker, Addrs: []netip.Addr{dst}}
	cdnAnswer := Answer{Time: t0, Expiry: t0.Add(time.Minute), Client: carol, Group: "office", Name: "cdn.example.", Addrs: []netip.Addr{dst}}
	denies := func(client netip.Addr, name string) (string, bool) {
		if client != carol && strings.HasSuffix(name, ".tracker.example.") {
			return rule, true
		}
		return "allow cdn.example", false
	}
	drop := Drop{Time: t0.Add(10 * time.Second), Src: alice, Group: "lan", Dst: dst, Proto: unix.IPPROTO_TCP, Port: 443}
	tests := []struct {
		name     string
		answers  []Answer
		denials  []Denial
		policy   PolicyFunc
		want     Result
		wantName string
	}{
		{"another group's answer, name denied to the source", []Answer{officeAnswer}, nil, denies,
			Result{Reason: NameDenied, Name: tracker, Rule: rule, AnswerTime: t0, Expiry: officeAnswer.Expiry, Names: []string{tracker}}, ""},
		{"without the policy: resolved by another client", []Answer{officeAnswer}, nil, nil,
			Result{Reason: ResolvedByOtherClient, Client: carol, Name: tracker, AnswerTime: t0, Expiry: officeAnswer.Expiry, Names: []string{tracker}}, ""},
		{"an allowed name points there too: resolved by another client", []Answer{officeAnswer, cdnAnswer}, nil, denies,
			Result{Reason: ResolvedByOtherClient, Client: carol, Name: "cdn.example.", AnswerTime: t0, Expiry: cdnAnswer.Expiry, Names: []string{tracker, "cdn.example."}}, ""},
		{"the client's own denied query for a name mapping there", []Answer{officeAnswer, cdnAnswer},
			[]Denial{{Time: t0.Add(5 * time.Second), Client: alice, Name: "ADS.tracker.example.", Rule: rule}}, denies,
			Result{Reason: NameDenied, Name: "ADS.tracker.example.", Rule: rule, AnswerTime: t0.Add(5 * time.Second), Names: []string{tracker, "cdn.example."}}, ""},
		{"the client's denied query for a CNAME target of another group's answer", []Answer{with(cdnAnswer, func(a *Answer) { a.Targets = []string{"edge.tracker.example."} })},
			[]Denial{{Time: t0.Add(5 * time.Second), Client: alice, Name: "edge.tracker.example.", Rule: rule}}, nil,
			Result{Reason: NameDenied, Name: "edge.tracker.example.", Rule: rule, AnswerTime: t0.Add(5 * time.Second), Names: []string{"cdn.example.", "edge.tracker.example."}}, ""},
		{"the client's denied query, no policy at hand", []Answer{officeAnswer},
			[]Denial{{Time: t0.Add(5 * time.Second), Client: alice, Name: tracker, Rule: rule}}, nil,
			Result{Reason: NameDenied, Name: tracker, Rule: rule, AnswerTime: t0.Add(5 * time.Second), Names: []string{tracker}}, ""},
		{"another client's denied query does not count", []Answer{cdnAnswer},
			[]Denial{{Time: t0.Add(5 * time.Second), Client: bob, Name: "cdn.example.", Rule: rule}}, denies,
			Result{Reason: ResolvedByOtherClient, Client: carol, Name: "cdn.example.", AnswerTime: t0, Expiry: cdnAnswer.Expiry, Names: []string{"cdn.example."}}, ""},
		{"a denied query for a name not known to map there does not count", []Answer{cdnAnswer},
			[]Denial{{Time: t0.Add(5 * time.Second), Client: alice, Name: "other.tracker.example.", Rule: rule}}, denies,
			Result{Reason: ResolvedByOtherClient, Client: carol, Name: "cdn.example.", AnswerTime: t0, Expiry: cdnAnswer.Expiry, Names: []string{"cdn.example."}}, ""},
		{"a denied query after the drop does not count", []Answer{cdnAnswer},
			[]Denial{{Time: t0.Add(11 * time.Second), Client: alice, Name: "cdn.example.", Rule: rule}}, denies,
			Result{Reason: ResolvedByOtherClient, Client: carol, Name: "cdn.example.", AnswerTime: t0, Expiry: cdnAnswer.Expiry, Names: []string{"cdn.example."}}, ""},
		{"the source's own live approval, its name denied since (a reload)", []Answer{with(officeAnswer, func(a *Answer) { a.Client, a.Group = alice, "lan" })}, nil, denies,
			Result{Reason: NameDenied, Name: tracker, Rule: rule, AnswerTime: t0, Expiry: officeAnswer.Expiry, Names: []string{tracker}}, ""},
		{"the source's own live approval, a target denied since", []Answer{with(cdnAnswer, func(a *Answer) { a.Client, a.Group, a.Targets = alice, "lan", []string{"edge.tracker.example."} })}, nil, denies,
			Result{Reason: NameDenied, Name: "edge.tracker.example.", Rule: rule, AnswerTime: t0, Expiry: cdnAnswer.Expiry, Names: []string{"cdn.example.", "edge.tracker.example."}}, ""},
		{"the source's own live approval, still allowed: unexplained", []Answer{with(cdnAnswer, func(a *Answer) { a.Client, a.Group = alice, "lan" })}, nil, denies,
			Result{Reason: Unexplained, Name: "cdn.example.", AnswerTime: t0, Expiry: cdnAnswer.Expiry, Names: []string{"cdn.example."}}, ""},
		{"the source's own expired approval decides first", []Answer{officeAnswer, with(cdnAnswer, func(a *Answer) { a.Client, a.Group, a.Expiry = alice, "lan", t0.Add(time.Second) })},
			[]Denial{{Time: t0.Add(5 * time.Second), Client: alice, Name: tracker, Rule: rule}}, denies,
			Result{Reason: Expired, Name: "cdn.example.", AnswerTime: t0, Expiry: t0.Add(time.Second), Names: []string{tracker, "cdn.example."}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex(100, time.Hour)
			for _, a := range tc.answers {
				x.Add(a)
			}
			for _, d := range tc.denials {
				x.AddDenial(d)
			}
			got := x.ExplainWith(drop, false, tc.policy)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ExplainWith =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

// TestDenialsBounded: the denied queries kept are at most maxDenials and
// none older than the index's maxAge; the oldest go first.
func TestDenialsBounded(t *testing.T) {
	x := NewIndex(10, time.Minute)
	x.Add(Answer{Time: t0, Expiry: t0.Add(time.Hour), Client: carol, Group: "office", Name: "n0.", Addrs: []netip.Addr{dst}})
	for i := 0; i < maxDenials+1; i++ {
		x.AddDenial(Denial{Time: t0, Client: alice, Name: fmt.Sprintf("n%d.", i), Rule: "r"})
	}
	if n := x.Denials(); n != maxDenials {
		t.Fatalf("Denials = %d, want %d", n, maxDenials)
	}
	drop := Drop{Time: t0.Add(time.Second), Src: alice, Group: "lan", Dst: dst, Proto: unix.IPPROTO_TCP, Port: 443}
	if r := x.ExplainWith(drop, false, nil); r.Reason != ResolvedByOtherClient {
		t.Errorf("the oldest denial (n0.) was not evicted: %+v", r)
	}
	x.AddDenial(Denial{Time: t0.Add(2 * time.Second), Client: alice, Name: "n0.", Rule: "r"})
	drop.Time = t0.Add(3 * time.Second)
	if r := x.ExplainWith(drop, false, nil); r.Reason != NameDenied {
		t.Errorf("a fresh denial of n0.: %+v, want name_denied", r)
	}
	// An answer at 30s keeps the address known past the denial's age.
	x.Add(Answer{Time: t0.Add(30 * time.Second), Expiry: t0.Add(time.Hour), Client: carol, Group: "office", Name: "n0.", Addrs: []netip.Addr{dst}})
	drop.Time = t0.Add(2*time.Second + time.Minute + time.Nanosecond)
	if r := x.ExplainWith(drop, false, nil); r.Reason != ResolvedByOtherClient {
		t.Errorf("a denial older than maxAge still explains: %+v", r)
	}
}
