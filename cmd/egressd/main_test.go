package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/testfile"
)

// writeFile stores text as dir/name and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	return testfile.Write(t, filepath.Join(dir, name), text)
}

const testConfig = `
[server]
listen = ["127.0.0.1:5353"]

[upstream]
servers = ["127.0.0.1:53"]

[firewall]
backend = "none"

[categories.malware]
sources = ["malware.txt"]

[[group]]
name = "lan"
clients = ["10.0.0.0/8"]
allow = ["example.com", "*.example.com", "api.partner.net:443"]
deny = ["files.example.com"]
deny_categories = ["malware"]
deny_addresses = ["169.254.169.254/32", "198.51.100.0/24"]

[[group]]
name = "ops"
clients = ["10.9.0.0/16"]
default = "allow"
action = "refused"
`

const testList = `# sample
evil.test
# spacer
bad.example.com
`

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "egressd.toml", testConfig)
	writeFile(t, dir, "malware.txt", testList)
	moved := writeFile(t, dir, "moved.toml", strings.Replace(testConfig, "127.0.0.1:5353", "127.0.0.1:5454", 1))
	bad := writeFile(t, dir, "bad.toml", "[server]\nlisten = [\"127.0.0.1:53\"]\nmode = \"loud\"\n\n[[group]]\nname = \"x\"\nclients = [\"10.0.0.0/33\"]\n")

	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string // fragments, in order
		stderr   []string
		noStdout []string
	}{
		{name: "version", args: []string{"version"}, stdout: []string{"egressd dev"}},
		{name: "help", args: []string{"help"}, stdout: []string{"Usage:", "egressd explain"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{name: "check ok", args: []string{"check", "-config", conf}, stdout: []string{"egressd.toml: ok: 2 groups, 4 rules, 1 categories"}},
		{name: "check bad", args: []string{"check", "-config", bad}, code: 1,
			stderr: []string{bad + `:3: server.mode: invalid value "loud"`, bad + `:7: group.0.clients: invalid CIDR "10.0.0.0/33"`}},
		{name: "check against the running config", args: []string{"check", "-config", moved, "-running", conf},
			stdout: []string{"moved.toml: warning: server.listen differs from " + conf + " and applies only on restart", "moved.toml: ok"}},
		{name: "check against itself", args: []string{"check", "-config", conf, "-running", conf},
			stdout: []string{"egressd.toml: ok"}, noStdout: []string{"applies only on restart"}},
		{name: "check missing", args: []string{"check", "-config", filepath.Join(dir, "nope.toml")}, code: 1, stderr: []string{"no such file"}},
		{name: "explain allow", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "www.example.com"},
			stdout: []string{"group:    lan", "decision: allow", "rule:     *.example.com", "group[lan].allow in " + conf, "any port"}},
		{name: "explain ports", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "API.Partner.net."},
			stdout: []string{"decision: allow", "rule:     api.partner.net:443", "open on 443/tcp"}},
		{name: "explain deny rule beats wildcard", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "files.example.com"},
			stdout: []string{"decision: deny", "rule:     files.example.com", "answer:   nxdomain"}},
		{name: "explain category with file and line", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "cdn.evil.test"},
			stdout: []string{"decision: deny", "rule:     category:malware", "malware.txt:2 (evil.test"}},
		{name: "explain default", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "other.org"},
			stdout: []string{"decision: deny", "rule:     default"}},
		{name: "explain more specific group", args: []string{"explain", "-config", conf, "-client", "10.9.0.1", "other.org"},
			stdout: []string{"group:    ops", "decision: allow", "rule:     default"}},
		{name: "explain no group", args: []string{"explain", "-config", conf, "-client", "192.168.1.1", "example.com"},
			stdout: []string{"group:    (none", "decision: deny"}},
		{name: "explain deny_addresses", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "www.example.com"},
			stdout:   []string{"decision: allow", "deny:     answers with an address in 169.254.169.254/32, 198.51.100.0/24 are denied (nxdomain) (group[lan].deny_addresses in " + conf + ")"},
			noStdout: []string{"address:"}},
		{name: "explain denied address", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "-address", "198.51.100.7", "www.example.com"},
			stdout: []string{"decision: allow", "address:  198.51.100.7 is in 198.51.100.0/24: an answer with it is denied (nxdomain) (group[lan].deny_addresses in " + conf + ")"}},
		{name: "explain denied address behind NAT64", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "-address", "64:ff9b::a9fe:a9fe", "www.example.com"},
			stdout: []string{"address:  64:ff9b::a9fe:a9fe is in 169.254.169.254/32: an answer with it is denied"}},
		{name: "explain address not denied", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "-address", "192.0.2.1", "www.example.com"},
			stdout: []string{"address:  192.0.2.1 is in no deny_addresses prefix of group lan"}},
		{name: "explain group without deny_addresses", args: []string{"explain", "-config", conf, "-client", "10.9.0.1", "-address", "198.51.100.7", "other.org"},
			stdout: []string{"group:    ops", "address:  198.51.100.7 is in no deny_addresses prefix of group ops"}, noStdout: []string{"deny:"}},
		{name: "explain denied name says nothing of addresses", args: []string{"explain", "-config", conf, "-client", "10.1.2.3", "-address", "198.51.100.7", "files.example.com"},
			stdout: []string{"decision: deny"}, noStdout: []string{"deny:  ", "address:"}},
		{name: "explain bad address", args: []string{"explain", "-config", conf, "-address", "nope", "x.com"}, code: 2, stderr: []string{`-address "nope"`}},
		{name: "explain needs a name", args: []string{"explain", "-config", conf}, code: 2, stderr: []string{"want exactly one NAME"}},
		{name: "explain bad client", args: []string{"explain", "-config", conf, "-client", "nope", "x.com"}, code: 2, stderr: []string{`-client "nope"`}},
		{name: "report needs files", args: []string{"report"}, code: 2, stderr: []string{"want one or more query log files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errOut.String())
			}
			assertInOrder(t, "stdout", out.String(), tt.stdout)
			assertInOrder(t, "stderr", errOut.String(), tt.stderr)
			for _, f := range tt.noStdout {
				if strings.Contains(out.String(), f) {
					t.Errorf("stdout has %q:\n%s", f, out.String())
				}
			}
		})
	}
}

func assertInOrder(t *testing.T, what, got string, want []string) {
	t.Helper()
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (in order):\n%s", what, w, got)
			return
		}
		rest = rest[i+len(w):]
	}
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	log := writeFile(t, dir, "q.log", strings.Join([]string{
		`{"time":"2026-01-01T10:00:00Z","client":"10.0.0.5","group":"lan","qname":"a.example.com.","qtype":"A","decision":"would_deny","rule":"default","source":"group[lan].default","action":"nxdomain","rcode":"NOERROR","answers":[],"ttl":60,"cached":false,"upstream":"","duration_ms":1}`,
		`{"time":"2026-01-01T10:01:00Z","client":"10.0.0.5","group":"lan","qname":"b.example.com.","qtype":"A","decision":"allow","rule":"*.example.com","source":"group[lan].allow","action":"","rcode":"NOERROR","answers":[],"ttl":60,"cached":false,"upstream":"","duration_ms":1}`,
	}, "\n")+"\n")
	var out, errOut bytes.Buffer
	if code := run([]string{"report", log}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	assertInOrder(t, "report", out.String(), []string{"lan", `name = "lan"`, `"a.example.com"`, `"b.example.com"`})
}

func TestNftRulesCommand(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "egressd.toml", testConfig)
	writeFile(t, dir, "malware.txt", testList)
	var out, errOut bytes.Buffer
	if code := run([]string{"nft-rules", "-config", conf}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	assertInOrder(t, "nft-rules", out.String(), []string{"table inet egressd", "lan", "ops"})
	// egressd's own traffic passes the output hook by its uid and mark.
	conf = writeFile(t, dir, "host.toml", "[firewall]\nbackend = \"nftables\"\nhooks = [\"output\"]\nmark = 4096\n"+
		"[[group]]\nname = \"host\"\nclients = [\"127.0.0.1/32\"]\n")
	for _, tc := range []struct {
		user string
		want string // in the output; "" : a usage error
	}{
		{"4242", "meta skuid 4242 "},
		{"root", "meta skuid 0 "},
		{"no-such-user-here", ""},
	} {
		out.Reset()
		errOut.Reset()
		code := run([]string{"nft-rules", "-config", conf, "-user", tc.user}, &out, &errOut)
		switch {
		case tc.want == "" && code == 0:
			t.Errorf("-user %s: accepted", tc.user)
		case tc.want != "" && (code != 0 || !strings.Contains(out.String(), tc.want)):
			t.Errorf("-user %s: exit %d, output lacks %q: %s%s", tc.user, code, tc.want, out.String(), errOut.String())
		}
	}
}
