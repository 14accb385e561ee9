package main

import (
	"bytes"
	"strings"
	"testing"
)

// egressd check reports a list entry that is a public suffix at its
// file:line, and warns about a plain http:// source (without printing
// the token in its query string).
func TestCheckWarnsAboutListTrust(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "egressd.toml", `
[server]
listen = ["127.0.0.1:5353"]

[firewall]
backend = "none"

[categories.saas]
sources = ["saas.txt", "http://lists.example/saas.txt?token=s3cret", "https://lists.example/more.txt"]

[[group]]
name = "lan"
clients = ["10.0.0.0/8"]
allow_categories = ["saas"]
`)
	list := writeFile(t, dir, "saas.txt", "app.example\ncom\nco.uk\n")
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "-config", conf}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	got := out.String()
	assertInOrder(t, "stdout", got, []string{
		list + ":2: warning: top-level domain (", `"com"`,
		list + ":3: warning: public suffix (", `"co.uk"`,
		"http://lists.example/saas.txt?token=xxxxx: warning: category \"saas\": plain http:// source: anyone on the network path can rewrite this list",
		"3 list warnings",
	})
	for _, bad := range []string{"s3cret", ":0:", "more.txt"} {
		if strings.Contains(got, bad) {
			t.Errorf("output contains %q:\n%s", bad, got)
		}
	}
}

// egressd report -config never proposes what the group's deny categories
// deny (audit logs from before the category was added say "allow"), and
// proposes nothing for a group whose default is allow.
func TestReportWithConfig(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "egressd.toml", testConfig)
	writeFile(t, dir, "malware.txt", testList)
	log := writeFile(t, dir, "q.log", strings.Join([]string{
		`{"time":"2026-01-01T10:00:00Z","client":"10.0.0.5","group":"lan","qname":"cdn.evil.test.","qtype":"A","decision":"allow","rule":"default"}`,
		`{"time":"2026-01-01T10:00:01Z","client":"10.0.0.5","group":"lan","qname":"ok.example.net.","qtype":"A","decision":"would_deny","rule":"default"}`,
		`{"time":"2026-01-01T10:00:02Z","client":"10.9.0.5","group":"ops","qname":"x.example.org.","qtype":"A","decision":"allow","rule":"default"}`,
	}, "\n")+"\n")
	var out, errOut bytes.Buffer
	if code := run([]string{"report", "-config", conf, log}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got := out.String()
	assertInOrder(t, "report", got, []string{
		`group "lan"`, "denied by the group's policy, not proposed:", "cdn.evil.test (category:malware)", `"ok.example.net"`,
		`group "ops"`, "default is allow: nothing to propose",
	})
	if strings.Contains(got, `"cdn.evil.test"`) || strings.Contains(got, `"x.example.org"`) {
		t.Errorf("proposed a denied name or for a default-allow group:\n%s", got)
	}
}
