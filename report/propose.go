package report

import (
	"math"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// proposal is what propose makes of one group's names.
type proposal struct {
	allow      []string
	collapsed  []Collapse
	denied     []string       // denied in enforce mode
	policy     []PolicyDenial // denied by a deny rule or category (logged or configured)
	tunnelling []Burst
}

// propose turns a group's names into allow rules. Names that were allowed
// or would have been denied by the group's default (audit mode) are
// candidates; names denied in enforce mode, and names a deny rule or deny
// category covers (Name.DeniedBy), are left out and listed separately.
// Candidates below one registrable domain collapse into "*.domain" plus
// the apex when more than threshold distinct subdomains were seen, unless
// a denied name lies under that domain: an explicit wildcard would outrank
// a category deny and quietly re-open what policy blocked. A domain whose
// subdomains are mostly random-looking (encoded data, as DNS tunnels send
// it) is proposed neither collapsed nor name by name: it is flagged.
func propose(names []*Name, threshold int) proposal {
	p := proposal{allow: []string{}, collapsed: []Collapse{}, denied: []string{}, policy: []PolicyDenial{}, tunnelling: []Burst{}}
	byDomain := map[string][]string{}
	var domains, blocked []string
	for _, n := range names {
		switch {
		case n.Denied > 0:
			p.denied = append(p.denied, n.QName)
			blocked = append(blocked, n.QName)
			continue
		case n.DeniedBy != "":
			p.policy = append(p.policy, PolicyDenial{QName: n.QName, Rule: n.DeniedBy})
			blocked = append(blocked, n.QName)
			continue
		}
		d := registrable(n.QName)
		if _, ok := byDomain[d]; !ok {
			domains = append(domains, d)
		}
		byDomain[d] = append(byDomain[d], n.QName)
	}
	for _, d := range domains {
		members := byDomain[d]
		subs, random := 0, 0
		for _, m := range members {
			if m != d {
				subs++
				if randomLooking(strings.TrimSuffix(m, "."+d)) {
					random++
				}
			}
		}
		if random >= minBurst && 2*random >= subs {
			p.tunnelling = append(p.tunnelling, Burst{Domain: d, Subdomains: subs, RandomLooking: random})
			continue
		}
		if threshold >= 0 && subs > threshold && !anyUnder(blocked, d) {
			p.allow = append(p.allow, d, "*."+d)
			p.collapsed = append(p.collapsed, Collapse{Domain: d, Subdomains: subs})
			continue
		}
		p.allow = append(p.allow, members...)
	}
	slices.SortFunc(p.allow, compareDomains)
	slices.SortFunc(p.collapsed, func(x, y Collapse) int { return compareDomains(x.Domain, y.Domain) })
	slices.SortFunc(p.denied, compareDomains)
	slices.SortFunc(p.policy, func(x, y PolicyDenial) int { return compareDomains(x.QName, y.QName) })
	slices.SortFunc(p.tunnelling, func(x, y Burst) int { return compareDomains(x.Domain, y.Domain) })
	return p
}

// minBurst is how many random-looking subdomains of one domain make a
// burst: more than DefaultThreshold, so a burst would have been collapsed.
const minBurst = DefaultThreshold + 1

// randomLooking reports whether the labels a name adds below its
// registrable domain look like encoded data rather than a service name:
// at least 12 characters, letters and digits only (dots aside) with both
// kinds mixed in, and a character entropy of at least 3 bits, as hex or
// base32 carries. Names like www, cdn-eu-west-1 or r3---sn-4g5e6nsz do
// not qualify.
func randomLooking(prefix string) bool {
	s := strings.ReplaceAll(prefix, ".", "")
	if len(s) < 12 {
		return false
	}
	var counts [256]int
	letters, digits := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z':
			letters++
		case '0' <= c && c <= '9':
			digits++
		default:
			return false
		}
		counts[c]++
	}
	if letters < 2 || digits < 2 {
		return false
	}
	entropy := 0.0
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(s))
			entropy -= p * math.Log2(p)
		}
	}
	return entropy >= 3
}

// registrable is the name's registrable domain (eTLD+1), or the name
// itself when it has none (a public suffix, a single label, the root).
func registrable(name string) string {
	d, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name
	}
	return d
}

func anyUnder(names []string, domain string) bool {
	for _, n := range names {
		if n == domain || strings.HasSuffix(n, "."+domain) {
			return true
		}
	}
	return false
}

// compareDomains orders names label by label from the right, so a domain,
// its wildcard and its subdomains sit together: example.com,
// *.example.com, api.example.com, example.net.
func compareDomains(a, b string) int {
	la, lb := strings.Split(a, "."), strings.Split(b, ".")
	slices.Reverse(la)
	slices.Reverse(lb)
	return slices.Compare(la, lb)
}
