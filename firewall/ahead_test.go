package firewall

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRefreshAheadOffAnswerPath: an element that still lives at least the
// TTL handed out, but is due for a refresh (less than TTL + grace/4 left
// is due whatever the element's spread),
// is refreshed without the caller waiting: Allow (and InEffect, the
// resolver's first stage) return while the refresh batch is still held
// in the kernel, and the refresh lands afterwards. An element with less
// than the TTL left is never answered before its refresh is in the
// kernel.
func TestRefreshAheadOffAnswerPath(t *testing.T) {
	const ip = "192.0.2.10"
	refresh := []string{"add elem " + d4 + " " + ip + " 1m5s", "del elem " + d4 + " " + ip, "add elem " + d4 + " " + ip + " 1m5s"}
	a := Allowance{Group: "servers", IPs: addrs(ip), TTL: time.Minute}
	for _, tc := range []struct {
		name    string
		advance time.Duration // after the first Allow: 1m5s left before
		check   func(n *NFT) error
		waits   bool // the answer waits for the refresh
	}{
		{"Allow, outlives the TTL", 3750*time.Millisecond + time.Millisecond, func(n *NFT) error { return n.Allow(context.Background(), a) }, false},
		{"InEffect, outlives the TTL", 3750*time.Millisecond + time.Millisecond, func(n *NFT) error {
			if !n.InEffect(a) {
				t.Error("InEffect is false for an element that outlives the TTL")
			}
			return nil
		}, false},
		{"Allow, short of the TTL", 5*time.Second + time.Millisecond, func(n *NFT) error { return n.Allow(context.Background(), a) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			k := newFakeKernel(clock.Now)
			n := fakeNFT(t, k, allowSpec(), clock, nil)
			mustAllow(t, n, a)
			from := len(k.recorded())
			clock.Advance(tc.advance)
			entered, releaseFlush := holdNextFlush(k)
			var once sync.Once
			release := func() { once.Do(releaseFlush) }
			defer release() // a failed test must not leave the owner held
			done := make(chan error, 1)
			go func() { done <- tc.check(n) }()
			// A deadlock guard, not a timing margin: nothing here waits
			// for time to pass when the code is right.
			const stuck = 10 * time.Second
			select {
			case <-entered: // the refresh batch is being sent, and held there
			case <-time.After(stuck):
				t.Fatal("no refresh was sent")
			}
			select {
			case err := <-done:
				if tc.waits {
					t.Fatalf("answered (err %v) before the refresh of an element short of the TTL was in the kernel", err)
				}
				if err != nil {
					t.Fatal(err)
				}
			default:
				if !tc.waits {
					// The caller may still be on its way back; it must
					// return without the batch being released.
					select {
					case err := <-done:
						if err != nil {
							t.Fatal(err)
						}
					case <-time.After(stuck):
						t.Fatal("the answer waited for the refresh of an element that outlives its TTL")
					}
				}
			}
			release()
			if tc.waits {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			n.flushCount() // the owner has finished the refresh
			got := batchesSince(k, from)
			if len(got) != 1 || !slices.Equal(got[0].elementOps(d4), refresh) {
				t.Fatalf("batches %+v, want one with %q", got, refresh)
			}
			if live := k.live("egressd", d4); !slices.Equal(live, []string{ip + " 1m5s"}) {
				t.Errorf("kernel holds %q, want %q", live, ip+" 1m5s")
			}
			// Fresh again: answered from the index, nothing sent.
			mustAllow(t, n, a)
			if n := len(batchesSince(k, from)); n != 1 {
				t.Errorf("%d batches after the refresh, want 1", n)
			}
		})
	}
}
