package upstream

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/internal/dnstest"
)

// DoT and DoH upstreams given by host name are reached through the address
// a bootstrap server gives, looked up once for several queries.
func TestBootstrapResolvesUpstreamHost(t *testing.T) {
	pki := dnstest.NewPKI(t)
	answer := dnstest.StaticAnswer(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
	dot, doh := dnstest.StartDoT(t, pki, answer), dnstest.StartDoH(t, pki, answer, nil)
	for _, addr := range []string{dot.URL(dnstest.ServerName, ""), doh.URL(dnstest.ServerName, "/dns-query")} {
		t.Run(addr, func(t *testing.T) {
			boot := dnstest.Start(t, dnstest.BootstrapAnswers(t, nil))
			u := newTestUpstreams(t, Options{RootCAs: pki.Roots, Bootstrap: []string{boot.Addr}}, addr)[0]
			for i := range 3 {
				resp, err := exchangeWithin(u, 2*time.Second, "a.example.", dns.TypeA)
				if err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if got := dnstest.AnswerData(resp); !slices.Equal(got, []string{"192.0.2.1"}) {
					t.Fatalf("query %d: answers %v", i, got)
				}
			}
			if n := boot.Queries.Load(); n != 2 {
				t.Errorf("bootstrap server asked %d times, want 2 (A and AAAA once)", n)
			}
		})
	}
}

func TestBootstrapCacheAndStaleFallback(t *testing.T) {
	var mute atomic.Bool
	srv := dnstest.Start(t, dnstest.BootstrapAnswers(t, &mute))
	b, err := newBootstrap([]string{srv.Addr}, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start, elapsed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), atomic.Int64{}
	b.now = func() time.Time { return start.Add(time.Duration(elapsed.Load())) }
	want := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	steps := []struct {
		advance time.Duration
		mute    bool
		asked   int32 // bootstrap queries so far
	}{
		{0, false, 2},
		{bootstrapMinTTL - time.Second, false, 2}, // TTL 5 s, kept for the minimum
		{2 * time.Second, false, 4},
		{bootstrapMinTTL + time.Second, true, 6},     // server gone: last addresses again
		{bootstrapStaleRetry - time.Second, true, 6}, // without asking each time
		{2 * time.Second, false, 8},                  // retried, and fresh again
	}
	for i, st := range steps {
		elapsed.Add(int64(st.advance))
		mute.Store(st.mute)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		got, err := b.lookup(ctx, "DNS.test.")
		cancel()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("step %d: addresses %v, want %v", i, got, want)
		}
		if n := srv.Queries.Load(); n != st.asked {
			t.Errorf("step %d: bootstrap server asked %d times, want %d", i, n, st.asked)
		}
	}
}

func TestBootstrapFailures(t *testing.T) {
	quiet := func(t *testing.T) string { return dnstest.Start(t, dnstest.Silent).Addr }
	good := func(t *testing.T) string { return dnstest.Start(t, dnstest.BootstrapAnswers(t, nil)).Addr }
	servfail := func(t *testing.T) string {
		return dnstest.Start(t, dnstest.StaticAnswer(t, dns.RcodeServerFailure, nil, nil)).Addr
	}
	tests := []struct {
		name    string
		servers []func(t *testing.T) string
		host    string
		want    string // first address, "" for an error
	}{
		{"first silent, second answers", []func(*testing.T) string{quiet, good}, dnstest.ServerName, "127.0.0.1"},
		{"first servfail, second answers", []func(*testing.T) string{servfail, good}, dnstest.ServerName, "127.0.0.1"},
		{"no such name", []func(*testing.T) string{good}, "missing.test", ""},
		{"all silent", []func(*testing.T) string{quiet, quiet}, dnstest.ServerName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			for _, s := range tt.servers {
				addrs = append(addrs, s(t))
			}
			b, err := newBootstrap(addrs, 0, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			got, err := b.lookup(ctx, tt.host)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || len(got) == 0 || got[0].String() != tt.want {
				t.Fatalf("got %v (%v), want %s", got, err, tt.want)
			}
		})
	}
}

func TestUpstreamAddresses(t *testing.T) {
	boot := []string{"127.0.0.1:53"}
	tests := []struct {
		addr      string
		bootstrap []string
		want      string // "tls dial=HOST:PORT name=NAME", "https URL", "plain ADDR", or "error: TEXT"
	}{
		{"127.0.0.1:53", nil, "plain 127.0.0.1:53"},
		{"tls://127.0.0.1", nil, "tls dial=127.0.0.1:853 name=127.0.0.1"},
		{"tls://9.9.9.9:853#dns.quad9.net", nil, "tls dial=9.9.9.9:853 name=dns.quad9.net"},
		{"tls://[::1]:8853#dns.test", nil, "tls dial=::1:8853 name=dns.test"},
		{"tls://[::1]", nil, "tls dial=::1:853 name=::1"},
		{"tls://dns.example:853", boot, "tls dial=dns.example:853 name=dns.example"},
		{"https://127.0.0.1", nil, "https https://127.0.0.1/dns-query"},
		{"https://[::1]:8443/resolve", nil, "https https://[::1]:8443/resolve"},
		{"https://dns.example/dns-query", boot, "https https://dns.example/dns-query"},
		{"tls://dns.example:853", nil, "error: bootstrap"},
		{"https://dns.example/dns-query", nil, "error: bootstrap"},
		{"tls://", nil, "error: no host"},
		{"tls://127.0.0.1:0", nil, "error: invalid port"},
		{"tls://127.0.0.1:dot", nil, "error: invalid port"},
		{"tls://a:b:c", nil, "error: invalid host"},
		{"https://user@127.0.0.1/dns-query", nil, "error: want https://"},
		{"https:///dns-query", nil, "error: want https://"},
		{"quic://127.0.0.1:853", nil, "error: not supported"},
		{"127.0.0.1", nil, "plain 127.0.0.1:53"},
		{"dns.example:53", nil, "error: want IP[:PORT]"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			b, err := newUpstreamBuilder(Options{Bootstrap: tt.bootstrap}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			u, err := b.upstream(tt.addr)
			var got string
			switch u := u.(type) {
			case nil:
				got = "error: " + err.Error()
			case *plainUpstream:
				got = "plain " + u.addr
			case *tlsUpstream:
				got = "tls dial=" + u.ep.host + ":" + u.ep.port + " name=" + u.conf.ServerName
			case *httpsUpstream:
				got = "https " + u.url
			}
			if want, isErr := strings.CutPrefix(tt.want, "error: "); isErr {
				if err == nil || !strings.Contains(got, want) {
					t.Errorf("got %q, want an error mentioning %q", got, want)
				}
			} else if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// A plain server is named with its port, as in the metrics.
			if err == nil && u.String() != tt.addr && !strings.HasPrefix(tt.addr, "https://") && "plain "+u.String() != tt.want {
				t.Errorf("String() = %q, want the configured %q", u.String(), tt.addr)
			}
		})
	}
}

func TestBootstrapServerAddresses(t *testing.T) {
	b, err := newBootstrap([]string{"127.0.0.1", "127.0.0.2:5353", "::1", "[::1]:5353"}, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range b.servers {
		got = append(got, s.String())
	}
	if want := []string{"127.0.0.1:53", "127.0.0.2:5353", "[::1]:53", "[::1]:5353"}; !slices.Equal(got, want) {
		t.Errorf("servers %v, want %v", got, want)
	}
}

func TestNewRejectsBadUpstreamOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		errText string
	}{
		{"no servers", Options{}, "no upstream servers"},
		{"host name without bootstrap", Options{Servers: []string{"tls://dns.example"}}, "bootstrap"},
		{"bootstrap by name", Options{Servers: []string{"tls://dns.example"}, Bootstrap: []string{"dns.google:53"}}, "bootstrap server"},
		{"bootstrap over TLS", Options{Servers: []string{"tls://dns.example"}, Bootstrap: []string{"tls://9.9.9.9"}}, "bootstrap server"},
		{"zone without servers", Options{Servers: []string{"127.0.0.1:53"}, Zones: []Zone{{Name: "corp.internal"}}}, "no upstream"},
		{"zone twice", Options{Servers: []string{"127.0.0.1:53"}, Zones: []Zone{
			{Name: "corp.internal", Upstreams: []string{"127.0.0.2:53"}},
			{Name: "Corp.Internal.", Upstreams: []string{"127.0.0.3:53"}},
		}}, "twice"},
		{"root zone", Options{Servers: []string{"127.0.0.1:53"}, Zones: []Zone{{Name: ".", Upstreams: []string{"127.0.0.2:53"}}}}, "root"},
		{"bad zone server", Options{Servers: []string{"127.0.0.1:53"}, Zones: []Zone{{Name: "corp.internal", Upstreams: []string{"tls://corp-dns"}}}}, "bootstrap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tt.errText)
			}
		})
	}
}
