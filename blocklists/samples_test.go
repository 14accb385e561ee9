package blocklists

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

var sampleLists = []string{"malware.txt", "file-sharing.txt", "anonymizers.txt", "doh-resolvers.txt", "business.txt"}

// The shipped sample lists must load without a single bad line.
func TestSampleListsAreClean(t *testing.T) {
	for _, name := range sampleLists {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Parse(f, name, FormatAuto, func(Entry) {})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.Format != FormatDomains || res.Invalid+res.Unsupported != 0 || res.Entries < 20 {
			t.Errorf("%s: format %v, %d entries, problems %v %v", name, res.Format, res.Entries, res.Problems, res.Skipped)
		}
	}
}

func TestSampleDoHList(t *testing.T) {
	m := newTestManager(t, []CategorySpec{{Name: "doh", Sources: []string{"doh-resolvers.txt"}}}, Options{BaseDir: "."})
	if err := m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"dns.google.", "mozilla.cloudflare-dns.com", "dns.quad9.net", "doh.opendns.com", "chrome.cloudflare-dns.com"} {
		if m.Match(q) != 1 {
			t.Errorf("%s is not in the DoH sample list", q)
		}
	}
	if m.Match("www.google.com") != 0 {
		t.Error("the DoH sample list covers www.google.com")
	}
}

// The public-lists example must be a valid categories fragment whose
// local sources exist and whose remote sources carry a license note.
func TestPublicListsExample(t *testing.T) {
	const path = "../examples/public-lists.toml"
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Categories map[string]struct {
			Sources []string `toml:"sources"`
			Refresh string   `toml:"refresh"`
			Match   string   `toml:"match"`
		} `toml:"categories"`
	}
	md, err := toml.Decode(string(text), &doc)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("unknown keys: %v", u)
	}
	if len(doc.Categories) < 4 {
		t.Fatalf("only %d categories", len(doc.Categories))
	}
	var specs []CategorySpec
	for name, c := range doc.Categories {
		spec := CategorySpec{Name: name, Sources: c.Sources, Match: c.Match}
		if c.Refresh != "" {
			if spec.Refresh, err = time.ParseDuration(c.Refresh); err != nil {
				t.Errorf("%s: refresh: %v", name, err)
			}
		}
		specs = append(specs, spec)
		for _, src := range c.Sources {
			if isURL(src) {
				if !strings.HasPrefix(src, "https://") {
					t.Errorf("%s: %s is not https", name, src)
				}
				if !licenseNoted(string(text), src) {
					t.Errorf("%s: no License: comment before %s", name, src)
				}
			}
		}
	}
	problems, err := CheckSources(specs, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("problem: %s", p)
	}
}

// licenseNoted reports whether a "License:" comment appears within the
// few lines before src.
func licenseNoted(text, src string) bool {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !strings.Contains(l, `"`+src+`"`) {
			continue
		}
		for j := i - 1; j >= max(0, i-5); j-- {
			if strings.Contains(lines[j], "License:") {
				return true
			}
		}
	}
	return false
}
