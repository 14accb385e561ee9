package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/configs"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/resolver"
)

const validBase = `
[server]
listen = ["127.0.0.1:5353"]

[categories.malware]
sources = ["lists/malware.txt"]

[[group]]
name = "lan"
clients = ["10.0.0.0/8"]
allow = ["example.com", "*.example.com:443"]
deny_categories = ["malware"]
`

// mustParse parses a config the test expects to be valid.
func mustParse(t *testing.T, name string, text []byte) *Config {
	t.Helper()
	cfg, err := Parse(name, text)
	if err != nil {
		t.Fatalf("Parse %s: %v", name, err)
	}
	return cfg
}

func TestParseValid(t *testing.T) {
	cfg := mustParse(t, "ok.toml", []byte(validBase))
	if got := cfg.Upstream.TimeoutDur; got != 2*time.Second {
		t.Errorf("upstream timeout default = %v, want 2s", got)
	}
	if got := cfg.Firewall.MaxTTLDur; got != 5*time.Minute {
		t.Errorf("firewall max_ttl default = %v, want 5m", got)
	}
	if f := cfg.Firewall; f.MaxAddressesPerAnswer != 64 || f.MaxElementsPerSet != 65536 || f.MaxElementsPerClient != 8192 {
		t.Errorf("firewall caps default = %d per answer, %d per set, %d per client; want 64, 65536, 8192", f.MaxAddressesPerAnswer, f.MaxElementsPerSet, f.MaxElementsPerClient)
	}
	if got := cfg.Firewall.Inbound; got != "drop" {
		t.Errorf("firewall inbound default = %q, want drop", got)
	}
	if got := cfg.Firewall.UnlistedSources; got != "drop" {
		t.Errorf("firewall unlisted_sources default = %q, want drop", got)
	}
	if got := cfg.Categories["malware"].RefreshDur; got != 24*time.Hour {
		t.Errorf("category refresh default = %v, want 24h", got)
	}
	groups := cfg.PolicyGroups()
	if len(groups) != 1 || groups[0].Name != "lan" || groups[0].DefaultAllow || groups[0].Action != policy.ActionNXDomain {
		t.Fatalf("groups = %+v", groups)
	}
	if groups[0].Clients[0].String() != "10.0.0.0/8" {
		t.Errorf("clients = %v", groups[0].Clients)
	}
}

func TestParseDenyAddresses(t *testing.T) {
	cfg := mustParse(t, "ok.toml", []byte(validBase+`deny_addresses = ["169.254.169.254", "192.0.2.0/24", "2001:db8:53::1/48"]
`))
	got := cfg.PolicyGroups()[0].DenyAddresses
	want := []string{"169.254.169.254/32", "192.0.2.0/24", "2001:db8:53::/48"}
	if len(got) != len(want) {
		t.Fatalf("deny addresses %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("deny address %d = %s, want %s", i, got[i], want[i])
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want string // FILE:LINE: message fragment
	}{
		{"unknown top key", "bogus = 1\n", "bad.toml:1: unknown key \"bogus\""},
		{"unknown server key", "[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = 3\n", "bad.toml:3: unknown key \"server.listne\""},
		{"unknown group key", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nalow = [\"x.com\"]\n", "bad.toml:4: unknown key \"group.alow\""},
		{"bad cidr", "[[group]]\nname = \"a\"\nclients = [\n  \"10.0.0.0/8\",\n  \"10.300.0.0/16\",\n]\n", "bad.toml:5: group.0.clients: invalid CIDR \"10.300.0.0/16\""},
		{"bad server cidr", "[server]\nclients = [\"nope\"]\n", "bad.toml:2: server.clients: invalid CIDR \"nope\""},
		{"bad duration", "[upstream]\ntimeout = \"2 seconds\"\n", "bad.toml:2: upstream.timeout: invalid duration \"2 seconds\""},
		{"bad firewall duration", "[firewall]\ngrace = \"-\"\n", "bad.toml:2: firewall.grace: invalid duration"},
		{"bad listen", "[server]\nlisten = [\"localhost\"]\n", "bad.toml:2: server.listen: invalid address \"localhost\""},
		{"bad mode", "[server]\nmode = \"loud\"\n", "bad.toml:2: server.mode: invalid value \"loud\""},
		{"bad backend", "[firewall]\nbackend = \"iptables\"\n", "bad.toml:2: firewall.backend: invalid value \"iptables\""},
		{"bad hook", "[firewall]\nhooks = [\"input\"]\n", "bad.toml:2: firewall.hooks: invalid hook \"input\""},
		{"bad rule", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nallow = [\n \"ok.com\",\n \"bad..name\",\n]\n", "bad.toml:6: group[a].allow:"},
		{"bad port", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\ndeny = [\"x.com:70000\"]\n", "bad.toml:4: group[a].deny: invalid port \"70000\" in rule \"x.com:70000\""},
		{"deny with port", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\ndeny = [\"x.com:443\"]\n", "bad.toml:4: group[a].deny: rule \"x.com:443\" has a port"},
		{"unknown category", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\ndeny_categories = [\"malware\"]\n", "bad.toml:4: group[a].deny_categories: unknown category \"malware\""},
		{"duplicate group", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[group]]\nname = \"a\"\nclients = [\"10.1.0.0/16\"]\n", "bad.toml:5: group[a]: duplicate group name (first defined at line 1)"},
		{"overlapping same prefix", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[group]]\nname = \"b\"\nclients = [\"10.0.0.0/8\"]\n", "bad.toml:6: group[b]: client range 10.0.0.0/8 is already in group \"a\""},
		{"missing name", "[[group]]\nclients = [\"10.0.0.0/8\"]\n", "bad.toml:1: group #1: name is required"},
		{"bad action", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\naction = \"drop\"\n", "bad.toml:4: group[a].action: invalid value \"drop\""},
		{"sinkhole without addresses", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\naction = \"sinkhole\"\n", "bad.toml:4: group[a]: action \"sinkhole\" needs sinkhole addresses"},
		{"bad sinkhole", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\naction = \"sinkhole\"\nsinkhole = [\"1.2.3\"]\n", "bad.toml:5: group[a].sinkhole: invalid address \"1.2.3\""},
		{"bootstrap must be plain", "[upstream]\nbootstrap = [\"tls://9.9.9.9\"]\n", "bad.toml:2: upstream.bootstrap: invalid server \"tls://9.9.9.9\""},
		{"bad upstream", "[upstream]\nservers = [\"dns.example:53\"]\n", "bad.toml:2: upstream.servers: invalid upstream \"dns.example:53\""},
		{"syntax error", "[server\nlisten = 1\n", "bad.toml:2: expected '.' or ']' to end table name"},
		{"type error", "[server]\nlisten = 5\n", "bad.toml:2: key server.listen: incompatible types"},
		{"duplicate key", "[server]\nmode = \"audit\"\nmode = \"audit\"\n", "bad.toml:3:"},
		{"empty category sources", "[categories.x]\nsources = []\n", "bad.toml:2: categories.x: sources must not be empty"},
		{"bad category match", "[categories.x]\nsources = [\"a\"]\nmatch = \"prefix\"\n", "bad.toml:3: categories.x.match: invalid value \"prefix\""},
		{"bad scope", "[firewall]\nscope = \"host\"\n", "bad.toml:2: firewall.scope: invalid value \"host\""},
		{"negative set cap", "[firewall]\nmax_elements_per_set = -1\n", "bad.toml:2: firewall.max_elements_per_set: -1 is out of range"},
		{"huge set cap", "[firewall]\nmax_elements_per_set = 2000000\n", "bad.toml:2: firewall.max_elements_per_set: 2000000 is out of range"},
		{"set gc interval below a second", "[firewall]\ngc_interval = \"500ms\"\n", "bad.toml:2: firewall.gc_interval: duration \"500ms\" must be at least 1s"},
		{"set gc interval over an hour", "[firewall]\ngc_interval = \"2h\"\n", "bad.toml:2: firewall.gc_interval: duration \"2h\" must be at most 1h0m0s"},
		{"set gc interval not a duration", "[firewall]\ngc_interval = \"often\"\n", "bad.toml:2: firewall.gc_interval: invalid duration \"often\""},
		{"answer cap above set cap", "[firewall]\nmax_elements_per_set = 100\nmax_addresses_per_answer = 101\n", "bad.toml:3: firewall.max_addresses_per_answer: 101 is out of range"},
		{"client share above set cap", "[firewall]\nmax_elements_per_set = 100\nmax_elements_per_client = 101\n", "bad.toml:3: firewall.max_elements_per_client: 101 is out of range (1 to max_elements_per_set, 100)"},
		{"negative client share", "[firewall]\nmax_elements_per_client = -5\n", "bad.toml:2: firewall.max_elements_per_client: -5 is out of range"},
		{"negative answer cap", "[firewall]\nmax_addresses_per_answer = -5\n", "bad.toml:2: firewall.max_addresses_per_answer: -5 is out of range"},
		{"bad group mode", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nmode = \"watch\"\n", "bad.toml:4: group[a].mode: invalid value \"watch\""},
		{"bad table name", "[firewall]\ntable = \"my table\"\n", "bad.toml:2: firewall.table: invalid table name"},
		{"table name too long", "[firewall]\ntable = \"t" + strings.Repeat("x", 64) + "\"\n", "bad.toml:2: firewall.table: invalid table name"},
		{"tls upstream without host", "[upstream]\nservers = [\"tls://\"]\n", "bad.toml:2: upstream.servers: invalid upstream \"tls://\""},
		{"bad inbound", "[firewall]\ninbound = \"allow\"\n", "bad.toml:2: firewall.inbound: invalid value \"allow\" (one of drop, accept)"},
		{"bad unlisted_sources", "[firewall]\n\nunlisted_sources = \"pass\"\n", "bad.toml:3: firewall.unlisted_sources: invalid value \"pass\" (one of drop, accept)"},
		{"bad drop_events", "[firewall]\ndrop_events = \"syslog\"\n", "bad.toml:2: firewall.drop_events: invalid value \"syslog\" (one of log, nflog, both, none)"},
		{"nflog_group out of range", "[firewall]\nnflog_group = 65536\n", "bad.toml:2: firewall.nflog_group: 65536 is out of range (0 to 65535)"},
		{"recent_answers out of range", "[firewall]\nrecent_answers = -1\n", "bad.toml:2: firewall.recent_answers: -1 is out of range (1 to 10000000)"},
		{"drop_events_rate out of range", "[firewall]\ndrop_events_rate = 0\n", "bad.toml:2: firewall.drop_events_rate: 0 is out of range (1 to 1000000)"},
		{"drop_events_rate too large", "[firewall]\n\ndrop_events_rate = 1000001\n", "bad.toml:3: firewall.drop_events_rate: 1000001 is out of range (1 to 1000000)"},
		{"drop_events_burst out of range", "[firewall]\ndrop_events_burst = -5\n", "bad.toml:2: firewall.drop_events_burst: -5 is out of range (1 to 1000000)"},
		{"bad deny_addresses", "[[group]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\ndeny_addresses = [\n  \"169.254.169.254\",\n  \"192.0.2.0/33\",\n]\n", "bad.toml:6: group.0.deny_addresses: invalid CIDR \"192.0.2.0/33\""},
		{"bad hosts address", "[hosts]\n\"printer.lan\" = [\"10.0.0.300\"]\n", "bad.toml:2: hosts.printer.lan: invalid address \"10.0.0.300\""},
		{"bad log size", "[log]\nmax_size = \"100 megs\"\n", "bad.toml:2: log.max_size: invalid size \"100 megs\""},
		{"log size too small", "[log]\nmax_size = \"1KB\"\n", "bad.toml:2: log.max_size: \"1KB\" is less than 64KiB"},
		{"negative log files", "[log]\nmax_files = -1\n", "bad.toml:2: log.max_files must be between 0 and 1000"},
		{"negative denied rate", "[log]\ndenied_per_client_rate = -1.0\n", "bad.toml:2: log.denied_per_client_rate must not be negative"},
		{"dnstap output without scheme", "[dnstap]\noutput = \"/run/tap.sock\"\n", "bad.toml:2: dnstap.output: invalid output \"/run/tap.sock\""},
		{"dnstap relative path", "[dnstap]\noutput = \"unix://tap.sock\"\n", "bad.toml:2: dnstap.output: invalid output \"unix://tap.sock\""},
		{"dnstap tcp without port", "[dnstap]\n\noutput = \"tcp://127.0.0.1\"\n", "bad.toml:3: dnstap.output: invalid output \"tcp://127.0.0.1\""},
		{"dnstap unknown scheme", "[dnstap]\noutput = \"udp://127.0.0.1:6000\"\n", "bad.toml:2: dnstap.output: invalid output"},
		{"dnstap queue zero", "[dnstap]\nqueue = -1\n", "bad.toml:2: dnstap.queue: -1 is out of range (1 to 1048576)"},
		{"dnstap queue huge", "[dnstap]\nqueue = 2000000\n", "bad.toml:2: dnstap.queue: 2000000 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tt.conf))
			if err == nil {
				t.Fatalf("Parse accepted the config, want error %q", tt.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error type %T, want config.Errors: %v", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

// TestClientShareDefault: the client share defaults to 8192 elements, or
// to the whole set when max_elements_per_set is smaller, so a small set
// cap alone is never an error.
func TestClientShareDefault(t *testing.T) {
	for _, tc := range []struct {
		conf string
		want int
	}{
		{"", 8192},
		{"[firewall]\nmax_elements_per_set = 100\n", 100},
		{"[firewall]\nmax_elements_per_set = 1048576\n", 8192},
		{"[firewall]\nmax_elements_per_set = 100\nmax_elements_per_client = 7\n", 7},
	} {
		cfg := mustParse(t, "ok.toml", []byte(validBase+tc.conf))
		if got := cfg.Firewall.MaxElementsPerClient; got != tc.want {
			t.Errorf("%q: max_elements_per_client = %d, want %d", tc.conf, got, tc.want)
		}
	}
}

func TestErrorsSortedByLine(t *testing.T) {
	conf := "[firewall]\nscope = \"x\"\n[server]\nmode = \"y\"\n"
	_, err := Parse("f.toml", []byte(conf))
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	if es[0].Line != 2 || es[1].Line != 4 {
		t.Errorf("lines = %d, %d; want 2, 4", es[0].Line, es[1].Line)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of missing file: %v, want not-exist", err)
	}
}

func TestEmbeddedDefaultIsValid(t *testing.T) {
	cfg := mustParse(t, configs.DefaultName, configs.Default)
	if cfg.Server.Listen[0] != "127.0.0.1:5353" {
		t.Errorf("default listens on %v, want 127.0.0.1:5353 first", cfg.Server.Listen)
	}
	if !cfg.Firewall.Fallback {
		t.Error("embedded default must fall back to backend none without CAP_NET_ADMIN")
	}
}

func TestExampleConfigsAreValid(t *testing.T) {
	files, _ := filepath.Glob("../configs/*.toml")
	more, _ := filepath.Glob("../examples/*/*.toml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no configs found")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%v", err)
		}
	}
}

func TestDiff(t *testing.T) {
	old := mustParse(t, "old.toml", []byte(validBase))
	cur := mustParse(t, "new.toml", []byte(`
[categories.business]
sources = ["b.txt"]

[[group]]
name = "lan"
clients = ["10.0.0.0/8"]
allow = ["example.com", "api.partner.net:443"]
allow_categories = ["business"]
deny_addresses = ["169.254.169.254"]
mode = "audit"

[[group]]
name = "dmz"
clients = ["192.168.0.0/24"]
`))
	got := strings.Join(Diff(old, cur), "\n")
	want := strings.Join([]string{
		"category added: business",
		"category removed: malware",
		"group[lan].allow added: api.partner.net:443",
		"group[lan].allow removed: *.example.com:443",
		"group[lan].allow_categories added: business",
		"group[lan].deny_categories removed: malware",
		"group[lan].deny_addresses added: 169.254.169.254",
		"group[lan].mode: enforce -> audit",
		"group added: dmz",
	}, "\n")
	if got != want {
		t.Errorf("Diff:\n%s\nwant:\n%s", got, want)
	}
}

// The TCP defaults are the resolver's, and configs/reference.toml (which
// shows every default) agrees with them.
func TestTCPDefaultsAreTheResolvers(t *testing.T) {
	ref, err := Load("../configs/reference.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *Config
	}{
		{"unset", mustParse(t, "ok.toml", []byte(validBase))},
		{"reference.toml", ref},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.cfg.Server
			if s.TCPIdle != resolver.DefaultTCPIdleTimeout || s.TCPMaxConns != resolver.DefaultTCPMaxConns ||
				s.TCPMaxPerIP != resolver.DefaultTCPMaxConnsPerClient {
				t.Errorf("tcp idle %v, max %d, per client %d; the resolver's defaults are %v, %d, %d",
					s.TCPIdle, s.TCPMaxConns, s.TCPMaxPerIP,
					resolver.DefaultTCPIdleTimeout, resolver.DefaultTCPMaxConns, resolver.DefaultTCPMaxConnsPerClient)
			}
		})
	}
}

func TestLogBounds(t *testing.T) {
	tests := []struct {
		name      string
		conf      string
		wantSize  int64
		wantFiles int
		wantRate  float64
	}{
		{"defaults", "", 100_000_000, 3, 50},
		{"binary units, rotation off, rate off", "[log]\nmax_size = \"64MiB\"\nmax_files = 0\ndenied_per_client_rate = 0.0\n", 64 << 20, 0, 0},
		{"decimal units", "[log]\nmax_size = \"2 GB\"\nmax_files = 10\ndenied_per_client_rate = 2.5\n", 2_000_000_000, 10, 2.5},
		{"bytes", "[log]\nmax_size = \"65536\"\n", 65536, 3, 50},
		{"cap off", "[log]\nmax_size = \"0\"\n", 0, 3, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := mustParse(t, "log.toml", []byte(validBase+tc.conf)).Log
			if l.MaxSizeBytes != tc.wantSize || *l.MaxFiles != tc.wantFiles || *l.DeniedPerClientRate != tc.wantRate {
				t.Errorf("max_size %d, max_files %d, denied_per_client_rate %v; want %d, %d, %v",
					l.MaxSizeBytes, *l.MaxFiles, *l.DeniedPerClientRate, tc.wantSize, tc.wantFiles, tc.wantRate)
			}
		})
	}
}

func TestDnstapOutput(t *testing.T) {
	tests := []struct {
		name, conf   string
		kind, target string
		queue        int
		on           bool
	}{
		{"default off", "", "", "", 10000, true},
		{"unix", "[dnstap]\noutput = \"unix:///run/egressd/dnstap.sock\"\n", "unix", "/run/egressd/dnstap.sock", 10000, true},
		{"tcp", "[dnstap]\noutput = \"tcp://[::1]:6000\"\nqueue = 5\n", "tcp", "[::1]:6000", 5, true},
		{"file, kinds off", "[dnstap]\noutput = \"file:///var/log/tap.fstrm\"\nclient_queries = false\nclient_responses = false\nforwarder = false\n", "file", "/var/log/tap.fstrm", 10000, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := mustParse(t, "dnstap.toml", []byte(validBase+tc.conf)).Dnstap
			if d.OutputKind != tc.kind || d.OutputTarget != tc.target || d.Queue != tc.queue {
				t.Errorf("kind %q target %q queue %d, want %q %q %d", d.OutputKind, d.OutputTarget, d.Queue, tc.kind, tc.target, tc.queue)
			}
			if *d.ClientQueries != tc.on || *d.ClientResponses != tc.on || *d.Forwarder != tc.on {
				t.Errorf("client_queries %v client_responses %v forwarder %v, want all %v", *d.ClientQueries, *d.ClientResponses, *d.Forwarder, tc.on)
			}
		})
	}
}

// Config accepts exactly what the resolver and the firewall accept: the
// upstream grammar and the table name rule live in those packages.
func TestParseAcceptsWhatTheOwnersAccept(t *testing.T) {
	for _, extra := range []string{
		"[upstream]\nservers = [\"https://dns.example\"]\nbootstrap = [\"127.0.0.1\"]\n",
		"[upstream]\nservers = [\"tls://[2001:db8::1]:8853#dns.example\"]\n",
		"[firewall]\ntable = \"t" + strings.Repeat("x", 63) + "\"\n",
	} {
		mustParse(t, "ok.toml", []byte(validBase+"\n"+extra))
	}
}
