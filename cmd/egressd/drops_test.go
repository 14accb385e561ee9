package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/dropjoin"
	"github.com/egressd/egressd/policy"
	"github.com/miekg/dns"
)

// The `egressd why` example in the README's "From audit to enforce" is
// what egressd prints for examples/gateway/egressd.toml after the client
// resolved the name: the command line parses, and the daemon's /why
// handler (with the policy functions serve uses) answers the README text.
func TestReadmeWhyExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	i := strings.Index(section, "## From audit to enforce")
	if i < 0 {
		t.Fatal(`README has no "From audit to enforce" section`)
	}
	section = section[i:]
	j := strings.Index(section, "# egressd why ")
	if j < 0 {
		t.Fatal("the section shows no `# egressd why` command")
	}
	block := section[j:]
	block = block[:strings.Index(block, "```")]
	lines := strings.Split(strings.TrimRight(block, " \n"), "\n")
	for k := range lines {
		lines[k] = strings.TrimPrefix(lines[k], "   ")
	}
	args := strings.Fields(lines[0])[3:] // after "# egressd why"
	want := strings.Join(lines[1:], "\n") + "\n"

	fs := newFlagSet("why", io.Discard)
	configFlag(fs)
	client := fs.String("client", "", "")
	fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		t.Fatalf("README's command line %q does not parse: %v", args, err)
	}
	src := netip.MustParseAddr(*client)
	dest, err := dropjoin.ParseDest(fs.Arg(0))
	if err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile("../../examples/gateway/egressd.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("../../examples/gateway/egressd.toml", []byte(strings.Replace(string(data), "\nmode = \"audit\"", "\nmode = \"enforce\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	lists, err := loadLists(context.Background(), cfg, "../../examples/gateway/egressd.toml", nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := compilePolicy(cfg, lists)
	if err != nil {
		t.Fatal(err)
	}
	// The client resolved the name the README names; the answer carries
	// the ports the policy approved.
	name := strings.Fields(lines[2])[0]
	dec := engine.Decide(src, name, dns.TypeA)
	if dec.Verdict != policy.Allow {
		t.Fatalf("%s is not allowed to %s: %+v", name, src, dec)
	}
	x := dropjoin.NewIndex(10, time.Hour)
	now := time.Now()
	x.Add(dropjoin.Answer{Time: now, Expiry: now.Add(time.Hour), Client: src, Group: dec.Group, Name: name, Addrs: []netip.Addr{dest.Dst}, Ports: dec.Ports})
	jn := dropjoin.NewJoiner(x, 1)
	current := func() *policy.Engine { return engine }
	jn.GroupOf = groupOf(current)
	jn.Policy = policyDenies(current)
	rec := httptest.NewRecorder()
	jn.WhyHandler(policyNow(current)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/why?client="+*client+"&dest="+fs.Arg(0), nil))
	var w dropjoin.Why
	if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil {
		t.Fatalf("/why: %v: %s", err, rec.Body)
	}
	if got := dropjoin.FormatWhy(w); got != want {
		t.Errorf("egressd why prints\n%s\nthe README shows\n%s", got, want)
	}
}
