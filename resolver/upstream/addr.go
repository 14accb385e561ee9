package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Proto is how queries reach a server.
type Proto int

const (
	Plain Proto = iota // DNS over UDP, TCP when truncated
	TLS                // DNS over TLS, RFC 7858
	HTTPS              // DNS over HTTPS, RFC 8484
)

// Addr is one parsed upstream address.
type Addr struct {
	Proto Proto
	// Host is an IP literal for Plain; a name or an IP literal otherwise.
	Host string
	Port string
	// ServerName is the name a TLS server's certificate is checked
	// against (TLS: #NAME or the host; HTTPS: the host).
	ServerName string
	// URL is the whole DNS-over-HTTPS URL, with /dns-query as the path
	// when none was given.
	URL string
}

// String is the address in its canonical form: default ports filled in.
func (a Addr) String() string {
	hp := net.JoinHostPort(a.Host, a.Port)
	switch a.Proto {
	case TLS:
		if a.ServerName != a.Host {
			return "tls://" + hp + "#" + a.ServerName
		}
		return "tls://" + hp
	case HTTPS:
		return a.URL
	}
	return hp
}

// HostPort is where the server listens.
func (a Addr) HostPort() string { return net.JoinHostPort(a.Host, a.Port) }

// Syntax is the accepted forms, for error messages.
const Syntax = "IP[:PORT], tls://HOST[:PORT][#NAME] or https://HOST[:PORT]/PATH"

// ParseAddr parses IP[:PORT] (plain DNS, port 53), tls://HOST[:PORT][#NAME]
// (port 853) and https://HOST[:PORT]/PATH (port 443).
func ParseAddr(s string) (Addr, error) {
	scheme, rest, found := strings.Cut(s, "://")
	if !found {
		return parsePlain(s)
	}
	switch scheme {
	case "tls":
		hostport, name, _ := strings.Cut(rest, "#")
		host, port, err := splitHostPort(hostport, "853")
		if err != nil {
			return Addr{}, fmt.Errorf("upstream %q: %w", s, err)
		}
		if name == "" {
			name = host
		}
		return Addr{Proto: TLS, Host: host, Port: port, ServerName: name}, nil
	case "https":
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
			return Addr{}, fmt.Errorf("upstream %q: want https://HOST[:PORT]/PATH", s)
		}
		port := u.Port()
		if port == "" {
			port = "443"
		}
		host, port, err := splitHostPort(net.JoinHostPort(u.Hostname(), port), "443")
		if err != nil {
			return Addr{}, fmt.Errorf("upstream %q: %w", s, err)
		}
		if u.Path == "" {
			u.Path = "/dns-query"
		}
		return Addr{Proto: HTTPS, Host: host, Port: port, ServerName: host, URL: u.String()}, nil
	}
	return Addr{}, fmt.Errorf("upstream %q: scheme %q not supported (want %s)", s, scheme, Syntax)
}

// parsePlain takes an IP literal with or without a port.
func parsePlain(s string) (Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return Addr{Proto: Plain, Host: ap.Addr().String(), Port: strconv.Itoa(int(ap.Port()))}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Addr{Proto: Plain, Host: a.String(), Port: "53"}, nil
	}
	return Addr{}, fmt.Errorf("upstream %q: want %s", s, Syntax)
}

// splitHostPort splits HOST[:PORT], where an IPv6 HOST with a port is in
// brackets, and checks both.
func splitHostPort(hostport, defaultPort string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), defaultPort
	}
	if host == "" {
		return "", "", errors.New("no host")
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", "", fmt.Errorf("invalid host %q", host)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("invalid port %q", port)
	}
	return host, port, nil
}
