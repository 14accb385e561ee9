package resolver

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestPollYieldRunsNetworkWaiters: with one P, a goroutine whose socket
// has become readable runs after one yield of a goroutine that never parks
// otherwise. Without the poll it would wait for sysmon (10 ms).
func TestPollYieldRunsNetworkWaiters(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	y, err := newPollYield()
	if err != nil {
		t.Fatal(err)
	}
	defer y.close()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sender, err := net.DialUDP("udp", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()

	for round := range 20 {
		var got atomic.Bool
		parked := make(chan struct{})
		go func() {
			close(parked)
			var b [16]byte
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := conn.ReadFromUDP(b[:]); err == nil {
				got.Store(true)
			}
		}()
		<-parked
		runtime.Gosched() // let the reader reach its read and park
		if _, err := sender.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		// Loopback queues the datagram during the write; nothing here parks,
		// so the runtime has not polled since.
		if got.Load() {
			t.Fatalf("round %d: the reader ran before any yield", round)
		}
		yields := 0
		for !got.Load() && yields < 1000 {
			// Busy, like the UDP reader under load: no parking but the yield.
			y.yield()
			yields++
		}
		if yields > 3 {
			t.Fatalf("round %d: the reader ran after %d yields, want at most 3", round, yields)
		}
	}
}
