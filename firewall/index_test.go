package firewall

import (
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/wait"
)

// TestIndexStructure drives the compact index through the steps its
// users take and checks what each leaves: deadlines, origins (bounded by
// maxOrigins, inherited ones replaced), the per-set counts, what a reload
// re-check sees, and that names no origin refers to any more are freed.
func TestIndexStructure(t *testing.T) {
	now := time.Unix(1000, 0)
	v4 := element{set: "d4", key: []byte{192, 0, 2, 1}}
	v4b := element{set: "d4", key: []byte{192, 0, 2, 2}}
	// A scoped IPv6 port-range element: client, destination, proto, port.
	start := append(append(make([]byte, 0, maxKey), netip.MustParseAddr("2001:db8::1").AsSlice()...), netip.MustParseAddr("2001:db8::2").AsSlice()...)
	ranged := element{set: "p6", key: appendPortKey(slices.Clone(start), 6, 443), keyEnd: appendPortKey(slices.Clone(start), 6, 450)}
	client := netip.MustParseAddr("2001:db8::1")
	names := func(i int) []string { return []string{string(rune('a'+i)) + ".example.", "cdn.example."} }

	type step struct {
		name string
		do   func(x *expiryIndex)
		// checks after the step
		origins map[*element][]string // element -> query names remembered, in order
		counts  map[string]int
		chains  int // interned name chains live
		size    int
	}
	steps := []step{
		{name: "add", do: func(x *expiryIndex) {
			x.put(v4, now.Add(time.Minute))
			x.put(v4b, now.Add(2*time.Second))
			x.put(ranged, now.Add(time.Minute))
		}, origins: map[*element][]string{&v4: nil, &ranged: nil}, counts: map[string]int{"d4": 2, "p6": 1}, size: 3},
		{name: "inherited then learned", do: func(x *expiryIndex) {
			x.note(v4, origin{names: []string{"a.example."}, inherited: true})
			x.note(v4, origin{names: names(0)}) // replaces the inherited one
			x.note(v4b, origin{names: names(0)})
			x.note(ranged, origin{names: names(1), client: client})
		}, origins: map[*element][]string{&v4: {"a.example."}, &v4b: {"a.example."}, &ranged: {"b.example."}}, counts: map[string]int{"d4": 2, "p6": 1}, chains: 2, size: 3},
		{name: "past maxOrigins", do: func(x *expiryIndex) {
			for i := 1; i <= maxOrigins+1; i++ {
				x.put(v4, now.Add(time.Minute+time.Duration(i)*time.Second))
				x.note(v4, origin{names: names(i)})
			}
		}, // The ones ending first (a, then b) are replaced in place.
			origins: map[*element][]string{&v4: {"i.example.", "j.example.", "c.example.", "d.example.", "e.example.", "f.example.", "g.example.", "h.example."}},
			counts:  map[string]int{"d4": 2, "p6": 1}, chains: 10, size: 3},
		{name: "expire", do: func(x *expiryIndex) {
			x.sweep(now.Add(2*time.Second+expiryMargin+time.Millisecond), expiryMargin)
		}, origins: map[*element][]string{&v4b: nil}, counts: map[string]int{"d4": 1, "p6": 1}, chains: 9, size: 2},
		{name: "recheck drops the range", do: func(x *expiryIndex) {
			got, dropped := x.carryOver(now, map[string]bool{"d4": true, "p6": true}, func(v entryView) bool { return v.set != "p6" })
			if dropped != 1 || len(got["d4"]) != 1 || len(got["p6"]) != 0 {
				t.Errorf("carryOver = %v, dropped %d; want d4 only, 1 dropped", got, dropped)
			}
		}, counts: map[string]int{"d4": 1}, chains: 8, size: 1},
		{name: "remove all", do: func(x *expiryIndex) {
			x.sweep(now.Add(time.Hour), 0)
		}, origins: map[*element][]string{&v4: nil}, counts: map[string]int{}, chains: 0, size: 0},
		{name: "slots and names reused", do: func(x *expiryIndex) {
			x.put(v4, now.Add(time.Minute))
			x.note(v4, origin{names: names(0)})
		}, origins: map[*element][]string{&v4: {"a.example."}}, counts: map[string]int{"d4": 1}, chains: 1, size: 1},
	}
	x := newExpiryIndex()
	for _, st := range steps {
		st.do(x)
		for e, want := range st.origins {
			var got []string
			for _, o := range x.originsOf(*e) {
				got = append(got, o.names[0])
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: origins of %x = %q, want %q", st.name, e.key, got, want)
			}
		}
		if st.counts != nil {
			for set, want := range st.counts {
				if got := x.count(set); got != want {
					t.Errorf("%s: count(%s) = %d, want %d", st.name, set, got, want)
				}
			}
			if len(x.perSet) != len(st.counts) {
				t.Errorf("%s: perSet = %v, want %v", st.name, x.perSet, st.counts)
			}
		}
		if got := x.nchains; got != st.chains {
			t.Errorf("%s: %d name chains interned, want %d", st.name, got, st.chains)
		}
		if got := x.size(); got != st.size {
			t.Errorf("%s: %d elements, want %d", st.name, got, st.size)
		}
	}
	if got := len(x.slots); got != 1 {
		t.Errorf("%d slot chunks after reuse, want 1", got)
	}
}

// TestIndexRecheckSeesElement: what a reload's re-check gets for each
// kind of key is the element as added, with every remembered answer's
// names, client and lifetime, and the element it carries keeps its key.
func TestIndexRecheckSeesElement(t *testing.T) {
	now := time.Unix(1000, 0)
	client := netip.MustParseAddr("192.0.2.9")
	start := []byte{192, 0, 2, 9, 198, 51, 100, 1}
	tests := []struct {
		name string
		e    element
		o    origin
	}{
		{"address", element{set: "d4", key: []byte{192, 0, 2, 1}}, origin{names: []string{"a.example.", "b.example."}}},
		{"scoped range", element{set: "p4", key: appendPortKey(slices.Clone(start), 17, 53), keyEnd: appendPortKey(slices.Clone(start), 17, 60)}, origin{names: []string{"c.example."}, client: client}},
		{"inherited", element{set: "d6", key: netip.MustParseAddr("2001:db8::1").AsSlice()}, origin{names: []string{"d.example."}, inherited: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newExpiryIndex()
			x.put(tt.e, now.Add(time.Minute))
			x.note(tt.e, tt.o)
			var seen []entryView
			got, _ := x.carryOver(now, map[string]bool{tt.e.set: true}, func(v entryView) bool {
				seen = append(seen, v)
				return true
			})
			if len(seen) != 1 {
				t.Fatalf("re-check saw %d elements, want 1", len(seen))
			}
			v := seen[0]
			want := tt.o
			want.until = now.Add(time.Minute)
			if v.set != tt.e.set || string(v.key) != string(tt.e.key) || string(v.keyEnd) != string(tt.e.keyEnd) ||
				len(v.origins) != 1 || !slices.Equal(v.origins[0].names, want.names) || v.origins[0].client != want.client ||
				!v.origins[0].until.Equal(want.until) || v.origins[0].inherited != want.inherited {
				t.Errorf("re-check saw %+v, want element %+v with origin %+v", v, tt.e, want)
			}
			if els := got[tt.e.set]; len(els) != 1 || string(els[0].Key) != string(tt.e.key) || string(els[0].KeyEnd) != string(tt.e.keyEnd) || els[0].Comment != elementComment(tt.o.names[0], tt.o.names[1:], tt.o.fromFleet, netip.Addr{}) {
				t.Errorf("carried %+v, want the element with comment of %s", els, tt.o.names[0])
			}
		})
	}
}

// TestIndexTableChurn fills the index's hash tables past several
// growths, forgets elements in an order that leaves holes all over the
// probe sequences (the open-addressing tables move entries back instead
// of leaving tombstones, across the wrap-around too), and checks that
// every element left is found with its deadline and names, none of the
// forgotten ones is, and the names slab does not keep what nothing names.
func TestIndexTableChurn(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name string
		n    int
		keep func(i int) bool // elements that stay after the sweep
	}{
		{"one", 1, func(int) bool { return false }},
		{"below the first growth", 47, func(i int) bool { return i%3 == 0 }},
		{"at the first growth", 48, func(i int) bool { return i%2 == 0 }},
		{"past it", 49, func(i int) bool { return i%5 != 0 }},
		{"many, every other", 5000, func(i int) bool { return i%2 == 1 }},
		{"many, a few left", 5000, func(i int) bool { return i%97 == 0 }},
	}
	elem := func(i int) element {
		if i%4 == 3 { // some scoped IPv6 port ranges among IPv4 addresses
			dest := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			start := append(netip.MustParseAddr("2001:db8::1").AsSlice(), dest.AsSlice()...)
			return element{set: "p6", key: appendPortKey(slices.Clone(start), 6, 443), keyEnd: appendPortKey(slices.Clone(start), 6, uint16(450+i%7))}
		}
		return element{set: "d4", key: []byte{192, 0, byte(i >> 8), byte(i)}}
	}
	names := func(i int) []string {
		return []string{"h" + strconv.Itoa(i) + ".example.", "cdn" + strconv.Itoa(i%3) + ".example."}
	}
	// The scoped elements' origins name one of five clients.
	client := func(i int) netip.Addr {
		if i%4 != 3 {
			return netip.Addr{}
		}
		return netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + i%5)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newExpiryIndex()
			for i := range tt.n {
				life := time.Second
				if tt.keep(i) {
					life = time.Hour
				}
				x.put(elem(i), now.Add(life))
				x.note(elem(i), origin{names: names(i), client: client(i)})
			}
			if x.size() != tt.n {
				t.Fatalf("%d elements after adding %d", x.size(), tt.n)
			}
			x.sweep(now.Add(time.Minute), 0)
			kept := 0
			clients := map[netip.Addr]bool{}
			for i := range tt.n {
				el := elem(i)
				e := x.get(&el)
				if !tt.keep(i) {
					if e != nil {
						t.Fatalf("element %d found after it was forgotten", i)
					}
					continue
				}
				kept++
				if e == nil || e.left(now) != time.Hour {
					t.Fatalf("element %d: %v, want a deadline an hour from now", i, e)
				}
				if o := x.originsOf(elem(i)); len(o) != 1 || !slices.Equal(o[0].names, names(i)) || o[0].client != client(i) {
					t.Fatalf("element %d: origins %+v, want %q from %v", i, o, names(i), client(i))
				}
				x.mu.RLock()
				mine := x.remembers(e, names(i)[0], names(i)[1:], client(i), time.Minute, now)
				other := x.remembers(e, names(i)[0], names(i)[1:], netip.MustParseAddr("10.0.0.99"), time.Minute, now)
				x.mu.RUnlock()
				if !mine || other {
					t.Fatalf("element %d: remembers its answer %v, from another client %v; want true, false", i, mine, other)
				}
				if c := client(i); c.IsValid() {
					clients[c] = true
				}
			}
			if len(x.clientIDs) != len(clients) {
				t.Errorf("%d clients interned, want %d", len(x.clientIDs), len(clients))
			}
			if x.size() != kept || x.nchains != kept {
				t.Errorf("%d elements and %d name chains, want %d each", x.size(), x.nchains, kept)
			}
			if live := len(x.names) - x.garbage; x.garbage > max(4096, live) {
				t.Errorf("names slab: %d bytes of garbage next to %d live", x.garbage, live)
			}
			// Slots, key runs and chains are reused: adding the forgotten
			// ones back needs no new slot chunk.
			chunks := len(x.slots)
			for i := range tt.n {
				if !tt.keep(i) {
					x.put(elem(i), now.Add(time.Hour))
					x.note(elem(i), origin{names: names(i), client: client(i)})
				}
			}
			for i := range tt.n {
				if el := elem(i); x.get(&el) == nil {
					t.Fatalf("element %d missing after adding back", i)
				}
			}
			if len(x.slots) != chunks || x.size() != tt.n {
				t.Errorf("%d slot chunks (was %d), %d elements, want %d", len(x.slots), chunks, x.size(), tt.n)
			}
		})
	}
}

// TestIndexMemoryUnmapped: the index's chunks, tables and slabs are
// mappings outside the Go heap; growing a table or compacting the names
// unmaps the old one at once, and everything left is unmapped once the
// index is unreachable.
func TestIndexMemoryUnmapped(t *testing.T) {
	now := time.Unix(1000, 0)
	gcUntil := func(cond func() bool) bool {
		return wait.Until(10*time.Second, 10*time.Millisecond, func() bool {
			runtime.GC()
			return cond()
		})
	}
	tests := []struct {
		name  string
		n     int
		maps  int64 // live mappings while it is filled, at most
		bytes int64 // mapped bytes, at least
	}{
		// 1 slot chunk, 1 record chunk, table, chain table, keys, chains, names.
		{"small", 10, 7, 32 * slotChunk},
		// Growth unmaps what it replaces: still one mapping of each kind
		// but the chunks.
		{"grown", 5000, 5 + 2*(5000/slotChunk+1), 5000 * (32 + 24)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The index is reachable only inside fill.
			fill := func() *indexMem {
				x := newExpiryIndex()
				for i := range tt.n {
					e := element{set: "d4", key: []byte{192, 0, byte(i >> 8), byte(i)}}
					x.put(e, now.Add(time.Minute))
					x.note(e, origin{names: []string{"h" + strconv.Itoa(i) + ".example."}})
				}
				if got := x.size(); got != tt.n {
					t.Fatalf("%d elements, want %d", got, tt.n)
				}
				return x.mem
			}
			m := fill()
			if maps, b := m.maps.Load(), m.size.Load(); maps > tt.maps || b < tt.bytes {
				t.Errorf("%d mappings, %d bytes; want at most %d, at least %d bytes", maps, b, tt.maps, tt.bytes)
			}
			if !gcUntil(func() bool { return m.maps.Load() == 0 && m.size.Load() == 0 }) {
				t.Errorf("%d mappings (%d bytes) left after the index went", m.maps.Load(), m.size.Load())
			}
		})
	}
}

// TestCommentPrefersOwnAnswers: an element is added back (reload) with the
// name of the newest of this node's own answers, and marked as a fleet
// approval only when no own answer asked for it; an own answer for the
// same names clears a record's mark.
func TestCommentPrefersOwnAnswers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	own := func(name string, s int) origin {
		return origin{names: []string{name}, until: t0.Add(time.Duration(s) * time.Second)}
	}
	peer := func(name string, s int) origin {
		o := own(name, s)
		o.fromFleet = true
		return o
	}
	tests := []struct {
		name    string
		origins []origin
		want    string
	}{
		{"none", nil, ""},
		{"own", []origin{own("a.test.", 1)}, "a.test."},
		{"fleet", []origin{peer("b.test.", 1)}, "b.test. " + fleetMark},
		{"newest fleet", []origin{peer("b.test.", 1), peer("c.test.", 2)}, "c.test. " + fleetMark},
		{"own before a newer fleet approval", []origin{own("a.test.", 1), peer("b.test.", 5)}, "a.test."},
		{"newest own", []origin{own("a.test.", 1), peer("b.test.", 5), own("d.test.", 3)}, "d.test."},
		{"owner", []origin{own("a.test.", 1)}, "a.test. " + ownerMark + "10.1.0.5"},
		{"owner of a fleet approval", []origin{peer("b.test.", 1)}, "b.test. " + fleetMark + " " + ownerMark + "2001:db8:1:2::"},
	}
	owners := map[string]netip.Addr{"owner": netip.MustParseAddr("10.1.0.5"), "owner of a fleet approval": netip.MustParseAddr("2001:db8:1:2::7")}
	for _, tc := range tests {
		if got := comment(tc.origins, owners[tc.name]); got != tc.want {
			t.Errorf("%s: comment = %q, want %q", tc.name, got, tc.want)
		}
	}

	x := newExpiryIndex()
	e := element{set: "g_d4", key: []byte{192, 0, 2, 1}}
	x.put(e, t0.Add(time.Minute))
	x.note(e, peer("b.test.", 0))
	if o := x.originsOf(e); len(o) != 1 || !o[0].fromFleet {
		t.Fatalf("after a fleet approval: origins %+v, want one marked", o)
	}
	x.note(e, own("b.test.", 0))
	if o := x.originsOf(e); len(o) != 1 || o[0].fromFleet {
		t.Errorf("after an own answer for the same name: origins %+v, want one, not marked", o)
	}
}
