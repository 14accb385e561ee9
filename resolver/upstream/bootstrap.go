package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Bootstrap answers are kept at least bootstrapMinTTL, so a server with
// tiny TTLs does not cost a lookup per new connection; when a refresh
// fails the last addresses are used again for bootstrapStaleRetry.
const (
	bootstrapMinTTL     = 60 * time.Second
	bootstrapStaleRetry = 30 * time.Second
	maxCNAMEHops        = 8
	// dialTimeout bounds a connection attempt made without a deadline.
	dialTimeout = 5 * time.Second
)

var errNoAddresses = errors.New("no A or AAAA records")

// bootstrap resolves the host names of encrypted upstreams through plain
// DNS servers given by address, so egressd never depends on the system
// resolver (which may well be egressd itself).
type bootstrap struct {
	servers []*plainUpstream
	log     *slog.Logger
	now     func() time.Time
	flights singleflight.Group

	mu    sync.Mutex
	hosts map[string]bootstrapEntry
}

type bootstrapEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

func newBootstrap(servers []string, mark uint32, log *slog.Logger) (*bootstrap, error) {
	b := &bootstrap{log: log, now: time.Now, hosts: map[string]bootstrapEntry{}}
	for _, s := range servers {
		ap, err := netip.ParseAddrPort(s)
		if ip, ipErr := netip.ParseAddr(s); ipErr == nil {
			ap, err = netip.AddrPortFrom(ip, 53), nil
		}
		if err != nil {
			return nil, fmt.Errorf("bootstrap server %q: want IP[:PORT] of a plain DNS server", s)
		}
		b.servers = append(b.servers, newPlainUpstream(ap.String(), mark, log))
	}
	return b, nil
}

// lookup returns host's addresses, IPv4 first, from the cache or the
// bootstrap servers. Concurrent lookups of one host share one query.
func (b *bootstrap) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	host = normalizeName(host)
	now := b.now()
	b.mu.Lock()
	e, cached := b.hosts[host]
	b.mu.Unlock()
	if cached && now.Before(e.expires) {
		return e.addrs, nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, errNoDeadline
	}
	if cached {
		// Leave time to connect to the last addresses if the refresh fails.
		deadline = time.Now().Add(time.Until(deadline) / 2)
	}
	ch := b.flights.DoChan(host, func() (any, error) {
		// The lookup outlives a caller that gives up, for the others.
		lctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		defer cancel()
		addrs, ttl, err := b.resolve(lctx, host)
		b.mu.Lock()
		defer b.mu.Unlock()
		if err != nil {
			if cached {
				b.log.Warn("bootstrap lookup failed; using the last addresses", "host", host, "err", err)
				b.hosts[host] = bootstrapEntry{e.addrs, b.now().Add(bootstrapStaleRetry)}
				return e.addrs, nil
			}
			return nil, err
		}
		b.hosts[host] = bootstrapEntry{addrs, b.now().Add(max(ttl, bootstrapMinTTL))}
		return addrs, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", host, r.Err)
		}
		return r.Val.([]netip.Addr), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// resolve asks for A and AAAA at the same time, each family failing over
// through the servers on its own. One family is enough.
func (b *bootstrap) resolve(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	type result struct {
		addrs []netip.Addr
		ttl   time.Duration
		err   error
	}
	var v4, v6 result
	var wg sync.WaitGroup
	for _, f := range []struct {
		qtype uint16
		out   *result
	}{{dns.TypeA, &v4}, {dns.TypeAAAA, &v6}} {
		wg.Go(func() {
			f.out.addrs, f.out.ttl, f.out.err = b.resolveType(ctx, host, f.qtype)
		})
	}
	wg.Wait()
	addrs := append(v4.addrs, v6.addrs...)
	if len(addrs) == 0 {
		return nil, 0, errors.Join(v4.err, v6.err, errNoAddresses)
	}
	ttl := v4.ttl
	if len(v4.addrs) == 0 || (len(v6.addrs) > 0 && v6.ttl < ttl) {
		ttl = v6.ttl
	}
	return addrs, ttl, nil
}

// resolveType asks the bootstrap servers in order, each with an equal
// share of the time left, until one gives a usable answer.
func (b *bootstrap) resolveType(ctx context.Context, host string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	m := NewQuery(host, qtype, dns.ClassINET, false, false)
	var errs []error
	for i, srv := range b.servers {
		deadline, _ := ctx.Deadline()
		share := time.Until(deadline) / time.Duration(len(b.servers)-i)
		actx, cancel := context.WithTimeout(ctx, share)
		reply, err := srv.Exchange(actx, m)
		cancel()
		if err == nil && reply.Rcode != dns.RcodeSuccess && reply.Rcode != dns.RcodeNameError {
			err = fmt.Errorf("rcode %s", dns.RcodeToString[reply.Rcode])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", srv, err))
			continue
		}
		addrs, ttl := chainAddrs(reply, host, qtype)
		return addrs, ttl, nil
	}
	return nil, 0, errors.Join(errs...)
}

// chainAddrs follows the CNAME chain from name through the answer section
// and returns the addresses of type qtype at its end, with the smallest TTL
// met on the way.
func chainAddrs(reply *dns.Msg, name string, qtype uint16) ([]netip.Addr, time.Duration) {
	ttl := uint32(1<<32 - 1)
	for range maxCNAMEHops {
		next := ""
		for _, rr := range reply.Answer {
			if c, ok := rr.(*dns.CNAME); ok && EqualName(c.Hdr.Name, name) {
				next, ttl = c.Target, min(ttl, c.Hdr.Ttl)
				break
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	var addrs []netip.Addr
	for _, rr := range reply.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || !EqualName(h.Name, name) {
			continue
		}
		var ip net.IP
		switch r := rr.(type) {
		case *dns.A:
			ip = r.A
		case *dns.AAAA:
			ip = r.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
			ttl = min(ttl, h.Ttl)
		}
	}
	if len(addrs) == 0 {
		return nil, 0
	}
	return addrs, time.Duration(ttl) * time.Second
}

// endpoint is where an encrypted upstream is reached: an IP literal, or a
// host name resolved through the bootstrap servers.
type endpoint struct {
	host   string     // as configured, without brackets
	port   string     // decimal
	ip     netip.Addr // valid when host is an IP literal
	boot   *bootstrap // nil when host is an IP literal
	dialer net.Dialer
}

func newEndpoint(host, port string, boot *bootstrap, mark uint32, log *slog.Logger) (*endpoint, error) {
	e := &endpoint{host: host, port: port}
	if ip, err := netip.ParseAddr(host); err == nil {
		e.ip = ip
	} else {
		if _, ok := dns.IsDomainName(host); !ok || host == "" {
			return nil, fmt.Errorf("invalid host %q", host)
		}
		if boot == nil || len(boot.servers) == 0 {
			return nil, fmt.Errorf("host name %q needs bootstrap servers (plain DNS, IP[:PORT]) to be resolved; set them or use an IP address", host)
		}
		e.boot = boot
	}
	if mark != 0 {
		e.dialer.Control = markControl(mark, log)
	}
	return e, nil
}

// dial opens a TCP connection to the endpoint. With several addresses each
// gets an equal share of the time left, so one black-holed address does
// not use up the whole attempt.
func (e *endpoint) dial(ctx context.Context) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		// net/http dials for a request without its deadline.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dialTimeout)
		defer cancel()
	}
	addrs := []netip.Addr{e.ip}
	if e.boot != nil {
		var err error
		if addrs, err = e.boot.lookup(ctx, e.host); err != nil {
			return nil, err
		}
	}
	var errs []error
	for i, a := range addrs {
		dctx := ctx
		if deadline, ok := ctx.Deadline(); ok && len(addrs)-i > 1 {
			var cancel context.CancelFunc
			dctx, cancel = context.WithTimeout(ctx, time.Until(deadline)/time.Duration(len(addrs)-i))
			defer cancel()
		}
		c, err := e.dialer.DialContext(dctx, "tcp", net.JoinHostPort(a.String(), e.port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}
