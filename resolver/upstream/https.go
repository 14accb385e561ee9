package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/miekg/dns"
)

const (
	dnsMessageType    = "application/dns-message"
	maxIdleHTTPSConns = 4
	// maxHTTPSConns bounds the connections per upstream, counting those
	// being dialed. Without it a burst of queries before the first
	// connection is up dials one connection each (net/http only shares an
	// HTTP/2 connection once it exists); with it the burst waits for the
	// first few and multiplexes on them. An HTTP/2 connection whose stream
	// limit is reached no longer counts, so a busy upstream still gets
	// more; an HTTP/1.1-only server gets at most this many queries at once.
	maxHTTPSConns    = 4
	httpsIdleTimeout = 60 * time.Second
	httpsPingAfter   = 15 * time.Second
	httpsPingTimeout = 5 * time.Second
)

var (
	errHTTPSMismatch = errors.New("DNS-over-HTTPS reply does not answer the query")
	errHTTPSTooLarge = errors.New("DNS-over-HTTPS reply larger than a DNS message")
)

// httpsUpstream speaks DNS over HTTPS (RFC 8484): one POST per query over
// a reused HTTP/2 (or HTTP/1.1) connection. One transport serves all
// queries to the upstream, so concurrent queries are streams on the same
// HTTP/2 connection.
type httpsUpstream struct {
	url       string
	transport *http.Transport
	client    *http.Client
}

func newHTTPSUpstream(url string, ep *endpoint, roots *x509.CertPool) *httpsUpstream {
	t := &http.Transport{
		// Never through a proxy from the environment: egressd's own
		// traffic goes straight to the server it was configured with.
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return ep.dial(ctx)
		},
		TLSClientConfig: &tls.Config{
			RootCAs:            roots,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(maxIdleHTTPSConns),
		},
		TLSHandshakeTimeout: dialTimeout,
		ForceAttemptHTTP2:   true,
		// Ping an HTTP/2 connection that went quiet, so a path that died
		// silently is noticed and dropped instead of failing every query
		// on it until TCP gives up.
		HTTP2:                  &http.HTTP2Config{SendPingTimeout: httpsPingAfter, PingTimeout: httpsPingTimeout},
		MaxIdleConns:           maxIdleHTTPSConns,
		MaxIdleConnsPerHost:    maxIdleHTTPSConns,
		MaxConnsPerHost:        maxHTTPSConns,
		IdleConnTimeout:        httpsIdleTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
	}
	return &httpsUpstream{
		url:       url,
		transport: t,
		client: &http.Client{
			Transport: t,
			// A redirect would send queries somewhere nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (u *httpsUpstream) String() string { return u.url }

// Exchange POSTs query, padded and with ID 0 (RFC 8484 section 4.1: it
// keeps the message cacheable), and gives the reply the query's ID back. The reply
// must come with status 200, type application/dns-message, fit in a DNS
// message and answer the question.
func (u *httpsUpstream) Exchange(ctx context.Context, query *dns.Msg) (*dns.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errNoDeadline
	}
	q := *query
	q.Id = 0
	packed, err := packPadded(&q)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(packed))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", dnsMessageType)
	req.Header.Set("Accept", dnsMessageType)
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, contextError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != dnsMessageType {
		return nil, fmt.Errorf("reply content type %q, want %s", resp.Header.Get("Content-Type"), dnsMessageType)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return nil, contextError(ctx, err)
	}
	if len(body) > dns.MaxMsgSize {
		return nil, errHTTPSTooLarge
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(body); err != nil {
		return nil, fmt.Errorf("DNS-over-HTTPS reply: %w", err)
	}
	if !answers(reply, &q) {
		return nil, errHTTPSMismatch
	}
	reply.Id = query.Id
	return reply, nil
}

// closeIdle closes the connections not carrying a request.
func (u *httpsUpstream) closeIdle() { u.transport.CloseIdleConnections() }
