package dropjoin

import (
	"net/netip"
	"reflect"
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
