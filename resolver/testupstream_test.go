package resolver

import (
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// testUpstream is a fake upstream DNS server (dnstest.Server) under the
// names the resolver's tests use.
type testUpstream struct {
	*dnstest.Server
	addr    string
	queries *atomic.Int32 // queries received, both transports
}

// upstreamHandler answers one query; udp tells the transport.
type upstreamHandler = dnstest.Handler

func startUpstream(t testing.TB, h upstreamHandler) *testUpstream {
	t.Helper()
	s := dnstest.Start(t, h)
	return &testUpstream{Server: s, addr: s.Addr, queries: &s.Queries}
}

func (u *testUpstream) lastQuery() *dns.Msg { return u.LastQuery() }

var (
	// staticAnswer answers every query with rcode and the given records.
	staticAnswer = dnstest.StaticAnswer
	// silent never answers, so the client times out.
	silent  = dnstest.Silent
	mustRRs = dnstest.MustRRs
)
