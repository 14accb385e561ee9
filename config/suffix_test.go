package config

import (
	"strings"
	"testing"
)

// An allow rule "*.com" (or "*.co.uk", or a wildcard over any top-level
// domain of the ICANN list) allows every name registered under a public
// suffix; it is refused at its FILE:LINE. A site's own top-level names
// (*.lan, *.internal) are not on the list and stay usable. Deny rules may cover a whole TLD on purpose
// (deny = ["*.zip"]), and a wildcard below a registrable domain or over a
// private-section suffix is an ordinary rule.
func TestAllowRuleOverPublicSuffix(t *testing.T) {
	group := "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n"
	tests := []struct {
		name string
		rule string // the group's third line after clients
		want string // "" for valid
	}{
		{"wildcard over com", "allow = [\"*.com\"]", "bad.toml:4: group[a].allow: rule \"*.com\" allows every name under the public suffix \"com\""},
		{"wildcard over co.uk with port", "allow = [\n \"ok.example\",\n \"*.co.uk:443\",\n]", "bad.toml:6: group[a].allow: rule \"*.co.uk:443\" allows every name under the public suffix \"co.uk\""},
		{"wildcard over a TLD", "allow = [\"*.dev\"]", "bad.toml:4: group[a].allow: rule \"*.dev\" allows every name under the public suffix \"dev\""},
		{"wildcard over a site's own TLD", "allow = [\"*.lan\", \"*.internal\"]", ""},
		{"wildcard over a registrable domain", "allow = [\"*.example.co.uk\"]", ""},
		{"private-section suffix", "allow = [\"*.duckdns.org\"]", ""},
		{"deny a whole TLD", "deny = [\"*.zip\"]", ""},
		{"apex of a suffix only", "allow = [\"com\"]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(group+tt.rule+"\n"))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}
