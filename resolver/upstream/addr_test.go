package upstream

import (
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical form; "" when in is invalid
		err  string
	}{
		{in: "9.9.9.9", want: "9.9.9.9:53"},
		{in: "127.0.0.1:5300", want: "127.0.0.1:5300"},
		{in: "2001:db8::1", want: "[2001:db8::1]:53"},
		{in: "[2001:db8::1]:5353", want: "[2001:db8::1]:5353"},
		{in: "tls://9.9.9.9#dns.quad9.net", want: "tls://9.9.9.9:853#dns.quad9.net"},
		{in: "tls://dns.example", want: "tls://dns.example:853"},
		{in: "tls://[2001:db8::1]:8853", want: "tls://[2001:db8::1]:8853"},
		{in: "https://dns.example/dns-query", want: "https://dns.example/dns-query"},
		{in: "https://dns.example", want: "https://dns.example/dns-query"},
		{in: "https://dns.example:8443/q", want: "https://dns.example:8443/q"},
		{in: "dns.example", err: "want IP[:PORT]"},
		{in: "dns.example:53", err: "want IP[:PORT]"},
		{in: "1.2.3.4:0", err: "want IP[:PORT]"},
		{in: "tls://", err: "no host"},
		{in: "tls://1.2.3.4:99999", err: "invalid port"},
		{in: "tls://[zz::1]:853", err: "invalid host"},
		{in: "https://user:pw@dns.example/q", err: "want https://"},
		{in: "https://dns.example#frag", err: "want https://"},
		{in: "quic://dns.example", err: `scheme "quic" not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAddr(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseAddr(%q) = %v, %v; want error containing %q", tt.in, a, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.in, err)
			}
			if a.String() != tt.want {
				t.Errorf("ParseAddr(%q) = %s, want %s", tt.in, a, tt.want)
			}
		})
	}
}
