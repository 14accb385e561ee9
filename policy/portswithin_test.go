package policy

import "testing"

func TestPortsWithin(t *testing.T) {
	tcp := func(from, to uint16) PortRange { return PortRange{Proto: ProtoTCP, From: from, To: to} }
	udp := func(from, to uint16) PortRange { return PortRange{Proto: ProtoUDP, From: from, To: to} }
	tests := []struct {
		name          string
		have, allowed []PortRange
		want          bool
	}{
		{"any port allowed", []PortRange{tcp(22, 22)}, nil, true},
		{"any port asked, any allowed", nil, nil, true},
		{"any port asked, some allowed", nil, []PortRange{tcp(443, 443)}, false},
		{"same port", []PortRange{tcp(443, 443)}, []PortRange{tcp(443, 443)}, true},
		{"inside a range", []PortRange{tcp(8080, 8081)}, []PortRange{tcp(8000, 8999)}, true},
		{"past a range", []PortRange{tcp(8990, 9001)}, []PortRange{tcp(8000, 8999)}, false},
		{"other protocol", []PortRange{udp(443, 443)}, []PortRange{tcp(443, 443)}, false},
		{"zero protocol is TCP", []PortRange{{From: 443, To: 443}}, []PortRange{tcp(443, 443)}, true},
		{"each within one", []PortRange{tcp(443, 443), udp(53, 53)}, []PortRange{udp(53, 53), tcp(1, 1024)}, true},
		{"one of two outside", []PortRange{tcp(443, 443), tcp(8443, 8443)}, []PortRange{tcp(443, 443)}, false},
	}
	for _, tc := range tests {
		if got := PortsWithin(tc.have, tc.allowed); got != tc.want {
			t.Errorf("%s: PortsWithin(%v, %v) = %t, want %t", tc.name, tc.have, tc.allowed, got, tc.want)
		}
	}
}
