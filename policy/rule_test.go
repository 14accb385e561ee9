package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		text string
		want Rule
	}{
		{"example.com", Rule{Text: "example.com", Name: "example.com."}},
		{"  Example.COM.  ", Rule{Text: "Example.COM.", Name: "example.com."}},
		{"*.example.com", Rule{Text: "*.example.com", Name: "example.com.", Wildcard: true}},
		{"*.com", Rule{Text: "*.com", Name: "com.", Wildcard: true}},
		{"api.x.com:443", Rule{Text: "api.x.com:443", Name: "api.x.com.", Ports: []PortRange{tcp(443, 443)}}},
		{"db.x.net:5432/tcp", Rule{Text: "db.x.net:5432/tcp", Name: "db.x.net.", Ports: []PortRange{tcp(5432, 5432)}}},
		{"ns.x.net:53/UDP", Rule{Text: "ns.x.net:53/UDP", Name: "ns.x.net.", Ports: []PortRange{udp(53, 53)}}},
		{"*.x.net:8000-8100/udp", Rule{Text: "*.x.net:8000-8100/udp", Name: "x.net.", Wildcard: true, Ports: []PortRange{udp(8000, 8100)}}},
		{"a.x.net:1-65535", Rule{Text: "a.x.net:1-65535", Name: "a.x.net.", Ports: []PortRange{tcp(1, 65535)}}},
		{"bücher.de", Rule{Text: "bücher.de", Name: "xn--bcher-kva.de."}},
		{"*.BÜCHER.de.", Rule{Text: "*.BÜCHER.de.", Name: "xn--bcher-kva.de.", Wildcard: true}},
		{"例え。テスト", Rule{Text: "例え。テスト", Name: "xn--r8jz45g.xn--zckzah."}},
		{"xn--bcher-kva.de", Rule{Text: "xn--bcher-kva.de", Name: "xn--bcher-kva.de."}},
		{"_dns.resolver.arpa", Rule{Text: "_dns.resolver.arpa", Name: "_dns.resolver.arpa."}},
		{"_acme.bücher.de", Rule{Text: "_acme.bücher.de", Name: "_acme.xn--bcher-kva.de."}},
	}
	for _, tc := range tests {
		got, err := ParseRule(tc.text)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.text, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseRule(%q)\n got %+v\nwant %+v", tc.text, got, tc.want)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	longName := strings.Repeat("abcdefghi.", 26) + "com"
	tests := []struct {
		text string
		want string
	}{
		{"", `empty rule`},
		{"   ", `empty rule`},
		{"x.com:70000", `invalid port "70000" in rule "x.com:70000"`},
		{"x.com:0", `invalid port "0" in rule "x.com:0"`},
		{"x.com:", `invalid port "" in rule "x.com:"`},
		{"x.com:https", `invalid port "https" in rule "x.com:https"`},
		{"x.com:+443", `invalid port "+443" in rule "x.com:+443"`},
		{"x.com:443,8443", `invalid port "443,8443" in rule "x.com:443,8443"`},
		{"x.com:443:80", `invalid port "443:80" in rule "x.com:443:80"`},
		{"x.com:80-", `invalid port "" in rule "x.com:80-"`},
		{"x.com:80-70000", `invalid port "70000" in rule "x.com:80-70000"`},
		{"x.com:9000-8000", `invalid port range "9000-8000" in rule "x.com:9000-8000": start is above end`},
		{"x.com:53/sctp", `invalid protocol "sctp" in rule "x.com:53/sctp"; use tcp or udp`},
		{"x.com:53/", `invalid protocol "" in rule "x.com:53/"; use tcp or udp`},
		{"x.com/udp", `protocol without port in rule "x.com/udp"; write NAME:PORT/PROTO`},
		{"*", `rule "*" matches every name; use default = "allow" instead`},
		{"*.", `rule "*." matches every name; use default = "allow" instead`},
		{"*:443", `rule "*:443" matches every name; use default = "allow" instead`},
		{"a.*.com", `invalid wildcard in rule "a.*.com": "*" may only be the whole first label`},
		{"*.*.com", `invalid wildcard in rule "*.*.com": "*" may only be the whole first label`},
		{"*x.com", `invalid wildcard in rule "*x.com": "*" may only be the whole first label`},
		{"**.com", `invalid wildcard in rule "**.com": "*" may only be the whole first label`},
		{".", `invalid name "." in rule ".": empty name`},
		{"a..com", `invalid name "a..com" in rule "a..com": empty label`},
		{".x.com", `invalid name ".x.com" in rule ".x.com": empty label`},
		{"x.com..", `invalid name "x.com.." in rule "x.com..": empty label`},
		{"ex ample.com", `invalid name "ex ample.com" in rule "ex ample.com": invalid character ' ' in label "ex ample"`},
		{"user@x.com", `invalid name "user@x.com" in rule "user@x.com": invalid character '@' in label "user@x"`},
		{long + ".com", `invalid name "` + long + `.com" in rule "` + long + `.com": label "` + long + `" is longer than 63 characters`},
		{longName, `invalid name "` + longName + `" in rule "` + longName + `": name is longer than 253 characters`},
		{"xn--zz.com", `invalid name "xn--zz.com" in rule "xn--zz.com": label "xn--zz" is not valid punycode`},
	}
	for _, tc := range tests {
		_, err := ParseRule(tc.text)
		if err == nil {
			t.Errorf("ParseRule(%q) succeeded; want error %q", tc.text, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("ParseRule(%q) error\n got %q\nwant %q", tc.text, err.Error(), tc.want)
		}
	}
}

func TestParseRuleRejectsInvalidIDN(t *testing.T) {
	// A label with a character IDNA disallows must fail, naming the label.
	_, err := ParseRule("a\u2488b.com") // U+2488 DIGIT ONE FULL STOP is disallowed
	if err == nil || !strings.Contains(err.Error(), "is not a valid international name") {
		t.Fatalf("ParseRule with a disallowed code point: err = %v", err)
	}
}

func TestMergePorts(t *testing.T) {
	r := func(ports ...PortRange) Rule { return Rule{Ports: ports} }
	tests := []struct {
		name  string
		rules []Rule
		want  []PortRange
	}{
		{"single", []Rule{r(tcp(443, 443))}, []PortRange{tcp(443, 443)}},
		{"sorted by protocol then port", []Rule{r(udp(53, 53)), r(tcp(8443, 8443)), r(tcp(443, 443))},
			[]PortRange{tcp(443, 443), tcp(8443, 8443), udp(53, 53)}},
		{"overlap coalesces", []Rule{r(tcp(8000, 8100)), r(tcp(8050, 8200))}, []PortRange{tcp(8000, 8200)}},
		{"adjacent coalesces", []Rule{r(tcp(443, 443)), r(tcp(444, 444))}, []PortRange{tcp(443, 444)}},
		{"contained range", []Rule{r(tcp(1, 65535)), r(tcp(443, 443))}, []PortRange{tcp(1, 65535)}},
		{"duplicate", []Rule{r(tcp(443, 443)), r(tcp(443, 443))}, []PortRange{tcp(443, 443)}},
		{"protocols stay apart", []Rule{r(tcp(53, 53)), r(udp(53, 53))}, []PortRange{tcp(53, 53), udp(53, 53)}},
		{"any port wins", []Rule{r(tcp(443, 443)), {}}, nil},
	}
	for _, tc := range tests {
		if got := mergePorts(tc.rules); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: mergePorts = %v; want %v", tc.name, got, tc.want)
		}
	}
}
