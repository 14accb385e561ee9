package upstream

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"

	"github.com/miekg/dns"
)

// upstreamBuilder turns configured server addresses into clients. Each
// distinct address gets one client, shared by the default list and the
// zones, so they also share its connections.
type upstreamBuilder struct {
	mark  uint32
	roots *x509.CertPool
	boot  *bootstrap // nil without bootstrap servers
	log   *slog.Logger
	built map[string]server
}

func newUpstreamBuilder(o Options, log *slog.Logger) (*upstreamBuilder, error) {
	b := &upstreamBuilder{mark: o.Mark, roots: o.RootCAs, log: log, built: map[string]server{}}
	if len(o.Bootstrap) > 0 {
		boot, err := newBootstrap(o.Bootstrap, o.Mark, log)
		if err != nil {
			return nil, err
		}
		b.boot = boot
	}
	return b, nil
}

func (b *upstreamBuilder) list(addrs []string) ([]server, error) {
	ups := make([]server, 0, len(addrs))
	for _, a := range addrs {
		u, err := b.upstream(a)
		if err != nil {
			return nil, err
		}
		ups = append(ups, u)
	}
	return ups, nil
}

// upstream builds the client for one address (ParseAddr's grammar).
func (b *upstreamBuilder) upstream(addr string) (server, error) {
	if u, ok := b.built[addr]; ok {
		return u, nil
	}
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	var u server
	switch a.Proto {
	case Plain:
		u = newPlainUpstream(a.HostPort(), b.mark, b.log)
	case TLS:
		ep, err := newEndpoint(a.Host, a.Port, b.boot, b.mark, b.log)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", addr, err)
		}
		u = newTLSUpstream(addr, ep, a.ServerName, b.roots, b.log)
	case HTTPS:
		ep, err := newEndpoint(a.Host, a.Port, b.boot, b.mark, b.log)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", addr, err)
		}
		u = newHTTPSUpstream(a.URL, ep, b.roots)
	}
	b.built[addr] = u
	return u, nil
}

// idleCloser is a server that keeps connections open between queries.
type idleCloser interface {
	closeIdle()
}

// paddingBlock is the size queries over encrypted transports are padded
// to a multiple of (RFC 8467 section 4.1), so their length tells an
// observer less about the name asked.
const paddingBlock = 128

// packPadded packs q with an EDNS(0) padding option (RFC 7830) that makes
// the message a multiple of paddingBlock long. q is not modified; without
// an OPT record it is packed as it is.
func packPadded(q *dns.Msg) ([]byte, error) {
	i := slices.IndexFunc(q.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	if i < 0 {
		return q.Pack()
	}
	orig, ok := q.Extra[i].(*dns.OPT)
	if !ok {
		return q.Pack()
	}
	opt := *orig
	opt.Option = slices.DeleteFunc(slices.Clone(orig.Option), func(o dns.EDNS0) bool { return o.Option() == dns.EDNS0PADDING })
	pad := &dns.EDNS0_PADDING{}
	opt.Option = append(opt.Option, pad)
	p := *q
	p.Extra = slices.Clone(q.Extra)
	p.Extra[i] = &opt
	p.Compress = false
	pad.Padding = make([]byte, (paddingBlock-p.Len()%paddingBlock)%paddingBlock)
	return p.Pack()
}
