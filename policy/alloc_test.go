package policy

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/egressd/egressd/internal/raceflag"
)

func TestDecideDoesNotAllocate(t *testing.T) {
	if testing.CoverMode() != "" || raceflag.Enabled {
		t.Skip("instrumented builds allocate")
	}
	e := compileTestEngine(t)
	srv := netip.MustParseAddr("10.1.2.3")
	srv6 := netip.MustParseAddr("2001:db8:1::5")
	tests := []struct {
		client netip.Addr
		qname  string
		max    float64
	}{
		{srv, "example.com.", 0},
		{srv, "a.b.c.d.example.com.", 0},
		{srv, "files.example.com.", 0},
		{srv, "api.x.com.", 0},
		{srv, "malware.test.", 0},
		{srv, "nothing.matches.here.", 0},
		{srv6, "www.example.com.", 0},
		{netip.MustParseAddr("192.0.2.1"), "example.com.", 0},
		{srv, "WWW.EXAMPLE.COM.", 0},
		{srv, "www.example.com", 0},
		// A name that is not normalized and reaches the category matcher
		// needs one string for the matcher.
		{srv, "Nothing.Matches.Here.", 1},
	}
	for _, tc := range tests {
		n := testing.AllocsPerRun(200, func() { _ = e.Decide(tc.client, tc.qname, 1) })
		if n > tc.max {
			t.Errorf("Decide(%s, %q) allocates %v times; want at most %v", tc.client, tc.qname, n, tc.max)
		}
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = e.DeniesTarget("servers", "x.evil.example.com.") }); n != 0 {
		t.Errorf("DeniesTarget allocates %v times", n)
	}
}

func TestDecideConcurrently(t *testing.T) {
	e := compileTestEngine(t)
	clients := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.1.5.7"), netip.MustParseAddr("10.2.0.1")}
	names := []string{"www.example.com.", "Malware.Test", "api.x.com.", "unknown.net."}
	want := make(map[[2]int]Decision)
	for ci, c := range clients {
		for ni, n := range names {
			want[[2]int{ci, ni}] = e.Decide(c, n, 1)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				ci, ni := (w+i)%len(clients), i%len(names)
				d := e.Decide(clients[ci], names[ni], 1)
				if w := want[[2]int{ci, ni}]; d.Rule != w.Rule || d.Verdict != w.Verdict || d.Group != w.Group {
					select {
					case errs <- clients[ci].String() + " " + names[ni] + ": " + d.Rule + " != " + w.Rule:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}
