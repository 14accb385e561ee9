package firewall

import (
	"context"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/google/nftables"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/wait"
	"github.com/egressd/egressd/policy"
)

// forget removes a's elements from the index only, as if it had never
// known them, while the kernel keeps them: what InEffect answers then
// comes from the memo or is false.
func (n *NFT) forget(t *testing.T, a Allowance) {
	t.Helper()
	gs := n.view.Load().groups[a.Group]
	elems, err := elementsFor(gs, a, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	x := n.index
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range elems {
		k, ok := x.keyOf(new([maxKey + endTail]byte), e.set, e.key, e.keyEnd)
		i := x.find(k)
		if !ok || i < 0 {
			t.Fatalf("index lacks %s element %x", e.set, e.key)
		}
		x.remove(uint32(x.table[i]) - 1)
	}
}

// TestEffectMemo: a check that found an answer's elements in place notes
// it in the answer's memo, and the next check of the same answer is
// answered from the note, without the index; but only for the same
// answer (its own IPs and names, same group, ports, no longer TTL), until
// an element comes due, and never across a table replace.
func TestEffectMemo(t *testing.T) {
	web := []policy.PortRange{{Proto: policy.ProtoTCP, From: 443, To: 443}}
	answer := func() Allowance {
		return Allowance{Group: "servers", Client: netip.MustParseAddr("10.1.0.5"), IPs: addrs("192.0.2.20"), TTL: time.Minute,
			Name: "www.example.com.", Targets: []string{"cdn.example.net."}, Ports: web, Memo: &enforce.EffectMemo{}}
	}
	type setup struct {
		n     *NFT
		clock interface{ Advance(time.Duration) }
		a     Allowance
	}
	start := func(t *testing.T, scope string) setup {
		clock := newFakeClock()
		spec := allowSpec()
		spec.Grace, spec.Scope = 30*time.Second, scope
		n := fakeNFT(t, newFakeKernel(clock.Now), spec, clock, nil)
		a := answer()
		mustAllow(t, n, a)
		if !n.InEffect(a) {
			t.Fatal("InEffect is false right after Allow")
		}
		if a.Memo.Load() == nil {
			t.Fatal("nothing noted for an answer in effect")
		}
		n.forget(t, a)
		return setup{n, clock, a}
	}
	for _, tc := range []struct {
		name   string
		scope  string
		change func(s setup) Allowance // the allowance asked about after the note
		want   bool
	}{
		{"the same answer: from the note", ScopeGroup, func(s setup) Allowance { return s.a }, true},
		{"the same answer from another client, group scope", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.Client = netip.MustParseAddr("10.1.0.6")
			return a
		}, true},
		{"without the memo: from the index", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.Memo = nil
			return a
		}, false},
		{"a longer TTL", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.TTL += time.Second
			return a
		}, false},
		{"a shorter TTL", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.TTL -= time.Second
			return a
		}, true},
		{"equal addresses in another slice", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.IPs = addrs("192.0.2.20")
			return a
		}, false},
		{"other targets", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.Targets = []string{"cdn.example.net."}
			return a
		}, false},
		{"another name", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.Name = "api.example.com."
			return a
		}, false},
		{"other ports", ScopeGroup, func(s setup) Allowance {
			a := s.a
			a.Ports = []policy.PortRange{{Proto: policy.ProtoTCP, From: 80, To: 80}}
			return a
		}, false},
		{"another client, client scope", ScopeClient, func(s setup) Allowance {
			a := s.a
			a.Client = netip.MustParseAddr("10.1.0.6")
			return a
		}, false},
		{"the same client, client scope", ScopeClient, func(s setup) Allowance { return s.a }, true},
		{"an element due for a refresh", ScopeGroup, func(s setup) Allowance {
			// 1m30s lived; need 1m, ahead 1m15s: due below 1m7.5s at
			// the latest.
			s.clock.Advance(23 * time.Second)
			return s.a
		}, false},
		{"after a reload", ScopeGroup, func(s setup) Allowance {
			if err := s.n.Reload(s.n.spec); err != nil {
				t.Fatal(err)
			}
			return s.a
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.scope)
			if got := s.n.InEffect(tc.change(s)); got != tc.want {
				t.Errorf("InEffect = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEffectMemoStillRefreshes: an answer served from its note still has
// its element refreshed ahead of expiry, once it comes due.
func TestEffectMemoStillRefreshes(t *testing.T) {
	clock := newFakeClock()
	k := newFakeKernel(clock.Now)
	spec := allowSpec()
	spec.Grace = 30 * time.Second
	n := fakeNFT(t, k, spec, clock, nil)
	a := Allowance{Group: "servers", IPs: addrs("192.0.2.21"), TTL: time.Minute, Name: "www.example.com.", Memo: &enforce.EffectMemo{}}
	mustAllow(t, n, a)
	if !n.InEffect(a) || a.Memo.Load() == nil {
		t.Fatal("not noted")
	}
	sent := len(k.recorded())
	clock.Advance(23 * time.Second) // 1m7s left: due, still more than the TTL
	if !n.InEffect(a) {
		t.Fatal("InEffect is false for an element that outlives the TTL")
	}
	if !wait.Until(restoreLimit, time.Millisecond, func() bool { return len(k.recorded()) > sent }) {
		t.Fatal("the due element was never refreshed")
	}
	if left := n.lifetimeLeft(t, d4, netip.MustParseAddr("192.0.2.21").AsSlice()); left != 90*time.Second {
		t.Errorf("refreshed element lives %v, want 1m30s", left)
	}
}

// TestEffectMemoDuringRepair deletes an answer's element behind egressd's
// back while the restore backoff postpones putting it back: its memo,
// noted before, must not make InEffect true while the kernel lacks it.
func TestEffectMemoDuringRepair(t *testing.T) {
	f := newDriftFixture(t, Options{VerifyEvery: -1})
	a := Allowance{Group: "servers", IPs: addrs("192.0.2.10", "192.0.2.11"), TTL: 30 * time.Second, Memo: &enforce.EffectMemo{}}
	deleteIt := func() {
		f.ns.exec(t, "nft", "delete", "element", "inet", "egressd", "g_servers_d4", "{ 192.0.2.10 }")
	}
	// Two restores in a row: the next one waits at least a second.
	for range 2 {
		deleteIt()
		f.waitRestored(t)
	}
	if !f.n.InEffect(a) || a.Memo.Load() == nil {
		t.Fatal("not noted")
	}
	before := f.n.watch.reported.Load()
	deleteIt()
	if !wait.Until(restoreLimit, time.Millisecond, func() bool { return f.n.watch.reported.Load() != before }) {
		t.Fatal("the deletion was never reported")
	}
	if f.n.InEffect(a) {
		if d4, _ := f.setElements(t, "g_servers_d4"); !hasElement(d4, f.d4) {
			t.Fatal("InEffect is true from the memo while the kernel lacks the element")
		}
	}
	mustAllow(t, f.n, a)
	if d4, _ := f.setElements(t, "g_servers_d4"); !hasElement(d4, f.d4) {
		t.Fatal("Allow returned while the deleted element was still missing")
	}
}

func hasElement(elems []nftables.SetElement, key []byte) bool {
	_, ok := findElement(elems, key, nil)
	return ok
}

// TestEffectNoteSize: a note and the interface box holding it fit the
// size callers account for.
func TestEffectNoteSize(t *testing.T) {
	if got := allocated(int(unsafe.Sizeof(effectNote{}))) + allocated(int(unsafe.Sizeof(any(nil)))); got > enforce.MemoNoteBytes {
		t.Errorf("a note takes %d bytes, enforce.MemoNoteBytes is %d", got, enforce.MemoNoteBytes)
	}
}

// allocated is the size class the Go allocator uses for n bytes, up to 256.
func allocated(n int) int {
	for _, c := range []int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256} {
		if n <= c {
			return c
		}
	}
	return n
}

// BenchmarkInEffect is the check every cache hit makes with nftables:
// 1,000 hot answers among 20,000 indexed elements, asked through the
// index alone and through each answer's memo.
func BenchmarkInEffect(b *testing.B) {
	spec := allowSpec()
	spec.Grace = 30 * time.Second
	n := benchNFTWith(b, spec)
	const indexed, hot = 20_000, 1_000
	ctx := context.Background()
	all := make([]Allowance, indexed)
	for i := range all {
		all[i] = Allowance{Group: "servers", IPs: []netip.Addr{seqAddr(i)}, TTL: 5 * time.Minute,
			Name: "www.example.com.", Targets: []string{"cdn.example.net."}}
		if err := n.Allow(ctx, all[i]); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		memo bool
	}{{"index", false}, {"memo", true}} {
		b.Run(bc.name, func(b *testing.B) {
			answers := make([]Allowance, hot)
			for i := range answers {
				answers[i] = all[i*(indexed/hot)]
				if bc.memo {
					answers[i].Memo = &enforce.EffectMemo{}
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !n.InEffect(answers[i%hot]) {
					b.Fatal("not in effect")
				}
				i++
			}
		})
	}
}
