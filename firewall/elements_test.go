package firewall

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/egressd/egressd/policy"
)

func TestElementsFor(t *testing.T) {
	group := groupSets{d4: "d4", d6: "d6", p4: "p4", p6: "p6"}
	scoped := group
	scoped.scoped = true
	client := netip.MustParseAddr("10.0.0.9")
	v4 := netip.MustParseAddr("192.0.2.1").AsSlice()
	v6 := netip.MustParseAddr("2001:db8::1").AsSlice()
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	type want struct {
		set         string
		key, keyEnd []byte
	}
	cases := []struct {
		name string
		gs   groupSets
		a    Allowance
		want []want
	}{
		{"any port, both families", group,
			Allowance{IPs: addrs("192.0.2.1", "2001:db8::1")},
			[]want{{"d4", v4, nil}, {"d6", v6, nil}}},
		{"mapped address counts as IPv4", group,
			Allowance{IPs: addrs("::ffff:192.0.2.1")},
			[]want{{"d4", v4, nil}}},
		{"port range, default protocol tcp", group,
			Allowance{IPs: addrs("192.0.2.1"), Ports: []policy.PortRange{{From: 8000, To: 8080}}},
			[]want{{"p4", cat(v4, []byte{6, 0, 0, 0, 0x1f, 0x40, 0, 0}), cat(v4, []byte{6, 0, 0, 0, 0x1f, 0x90, 0, 0})}}},
		{"client scope prefixes the client", scoped,
			Allowance{Client: client, IPs: addrs("192.0.2.1", "2001:db8::1")},
			[]want{{"d4", cat(client.AsSlice(), v4), nil}}},
		{"client scope with udp port", scoped,
			Allowance{Client: client, IPs: addrs("192.0.2.1"), Ports: []policy.PortRange{{Proto: policy.ProtoUDP, From: 53, To: 53}}},
			[]want{{"p4", cat(client.AsSlice(), v4, []byte{17, 0, 0, 0, 0, 53, 0, 0}), cat(client.AsSlice(), v4, []byte{17, 0, 0, 0, 0, 53, 0, 0})}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := elementsFor(tc.gs, tc.a, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d elements, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.set != w.set || !bytes.Equal(g.key, w.key) || !bytes.Equal(g.keyEnd, w.keyEnd) || g.timeout != time.Minute {
					t.Errorf("element %d = {%s %x %x %v}, want {%s %x %x 1m}", i, g.set, g.key, g.keyEnd, g.timeout, w.set, w.key, w.keyEnd)
				}
			}
		})
	}
}

func TestElementsForRejects(t *testing.T) {
	group := groupSets{d4: "d4", d6: "d6", p4: "p4", p6: "p6"}
	scoped := group
	scoped.scoped = true
	cases := []struct {
		name string
		gs   groupSets
		a    Allowance
	}{
		{"reversed range", group, Allowance{IPs: addrs("192.0.2.1"), Ports: []policy.PortRange{{Proto: 6, From: 2, To: 1}}}},
		{"unknown protocol", group, Allowance{IPs: addrs("192.0.2.1"), Ports: []policy.PortRange{{Proto: 1, From: 1, To: 1}}}},
		{"client scope without client", scoped, Allowance{IPs: addrs("192.0.2.1")}},
	}
	for _, tc := range cases {
		if _, err := elementsFor(tc.gs, tc.a, time.Minute); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestExpiryIndex(t *testing.T) {
	x := newExpiryIndex()
	now := time.Unix(1000, 0)
	a := element{set: "s", key: []byte{1}}
	b := element{set: "s", key: []byte{2}}
	x.put(a, now.Add(10*time.Second))
	x.put(a, now.Add(5*time.Second)) // never shortens
	x.put(b, now.Add(time.Second))
	if got := x.get(&a).left(now); got != 10*time.Second {
		t.Errorf("deadline of a = %v, want now+10s", got)
	}
	if x.perSet["s"] != 2 {
		t.Errorf("perSet = %d, want 2", x.perSet["s"])
	}
	x.sweep(now.Add(4*time.Second), 2*time.Second)
	if x.get(&b) != nil || x.get(&a) == nil || x.perSet["s"] != 1 {
		t.Errorf("after sweep: a=%v b=%v count=%d, want only a", x.get(&a), x.get(&b), x.perSet["s"])
	}
}
