package resolver

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A graceful stop answers the queries already being handled before it
// returns.
func TestShutdownDrainsQueriesInFlight(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			release := make(chan struct{})
			answer := staticAnswer(t, dns.RcodeSuccess, []string{"slow.example. 60 IN A 192.0.2.7"}, nil)
			up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg, udp bool) {
				<-release
				answer(w, r, udp)
			})
			env := newEnv(t, Options{Upstreams: []string{up.addr}, Timeout: 3 * time.Second})
			addr := env.start(t)

			replies := make(chan *dns.Msg, 1)
			go func() {
				c := &dns.Client{Net: network, Timeout: 3 * time.Second}
				resp, _, err := c.Exchange(question("slow.example.", dns.TypeA), addr)
				if err != nil {
					t.Errorf("query in flight: %v", err)
				}
				replies <- resp
			}()
			waitFor(t, func() bool { return up.queries.Load() == 1 })

			stopped := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				stopped <- env.srv.Shutdown(ctx)
			}()
			select {
			case err := <-stopped:
				t.Fatalf("Shutdown returned with a query in flight: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			close(release)
			if resp := <-replies; resp == nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Fatalf("answer lost on shutdown: %v", resp)
			}
			if err := <-stopped; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}
