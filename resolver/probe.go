package resolver

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// probeInterval spaces the readiness probes while no upstream answers.
const probeInterval = 2 * time.Second

// probeUpstreams asks the upstreams for the root NS set until one answers,
// so Ready turns true without waiting for a client query (a readiness gate
// in front of egressd would otherwise never let the first query through).
func (s *Server) probeUpstreams(ctx context.Context) {
	probe := upstreamQuery(&query{qname: ".", qtype: dns.TypeNS, qclass: dns.ClassINET})
	defer probe.Release()
	for !s.ready.Load() {
		if _, _, err := s.forwarder.Exchange(ctx, &probe.Msg); err != nil {
			s.log.Debug("upstream readiness probe failed", "err", err)
		}
		if s.ready.Load() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(probeInterval):
		}
	}
}
