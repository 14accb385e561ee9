package report

import (
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// propose turns a group's names into allow rules. Names that were allowed
// or would have been denied (audit mode) are candidates; names denied in
// enforce mode are left out and listed separately. Candidates below one
// registrable domain collapse into "*.domain" plus the apex when more than
// threshold distinct subdomains were seen, unless a denied name lies
// under that domain: an explicit wildcard would outrank a category deny
// and quietly re-open what policy blocked.
func propose(names []*Name, threshold int) (allow []string, collapsed []Collapse, denied []string) {
	allow, collapsed, denied = []string{}, []Collapse{}, []string{}
	byDomain := map[string][]string{}
	var domains []string
	for _, n := range names {
		if n.Denied > 0 {
			denied = append(denied, n.QName)
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
		subs := 0
		for _, m := range members {
			if m != d {
				subs++
			}
		}
		if threshold >= 0 && subs > threshold && !anyUnder(denied, d) {
			allow = append(allow, d, "*."+d)
			collapsed = append(collapsed, Collapse{Domain: d, Subdomains: subs})
			continue
		}
		allow = append(allow, members...)
	}
	slices.SortFunc(allow, compareDomains)
	slices.SortFunc(collapsed, func(x, y Collapse) int { return compareDomains(x.Domain, y.Domain) })
	slices.SortFunc(denied, compareDomains)
	return allow, collapsed, denied
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
