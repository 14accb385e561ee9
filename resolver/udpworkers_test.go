package resolver

import (
	"context"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPWorkersAnswerBurstsAndEnd sends bursts of concurrent queries over
// UDP: every one must be answered with its own ID, and after Shutdown no
// worker goroutine may be left.
func TestUDPWorkersAnswerBurstsAndEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	up := startUpstream(t, staticAnswer(t, dns.RcodeSuccess, []string{"burst.example. 300 IN A 192.0.2.9"}, nil))
	env := newEnv(t, Options{Upstreams: []string{up.addr}, CacheSize: 100})
	addr := env.start(t)
	for _, clients := range []int{1, 16, 256} {
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
				m := question("burst.example.", dns.TypeA)
				m.Id = uint16(i + 1)
				resp, _, err := c.Exchange(m, addr)
				if err == nil && (resp.Id != m.Id || len(resp.Answer) != 1) {
					err = net.UnknownNetworkError("wrong answer " + resp.String())
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%d concurrent clients: %v", clients, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The upstream test server is still running; allow for its goroutines.
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+8 })
}
