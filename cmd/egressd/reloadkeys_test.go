package main

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/egressd/egressd/config"
)

// keyEdits gives every key of config.Keys a valid value other than the one
// in configs/reference.toml. Keys in tables the operator names
// (categories.*, hosts.*, group[], upstream.zone[]) edit the first entry.
var keyEdits = map[string]any{
	"server.listen":                   []any{"127.0.0.1:5354"},
	"server.clients":                  []any{"127.0.0.1/32"},
	"server.mode":                     "audit",
	"server.rate_limit":               10.0,
	"server.rate_burst":               int64(20),
	"server.rate_limit_ipv4_prefix":   int64(24),
	"server.rate_limit_ipv6_prefix":   int64(56),
	"server.max_in_flight_per_client": int64(64),
	"server.memory_limit":             int64(256 << 20),
	"server.tcp_idle_timeout":         "20s",
	"server.tcp_max_conns":            int64(500),
	"server.tcp_max_conns_per_client": int64(5),
	"server.doh_canary":               false,
	"server.tls_listen":               []any{"127.0.0.1:8853"},
	"server.https_listen":             []any{"127.0.0.1:8443"},
	"server.https_path":               "/resolve",
	"server.tls_cert":                 "/etc/egressd/other.pem",
	"server.tls_key":                  "/etc/egressd/other.key",
	"server.trusted_proxies":          []any{"10.9.0.0/16"},
	"server.nat64_prefixes":           []any{"64:ff9b:1::/48"},
	"server.state_dir":                "/var/tmp/egressd-other",

	"upstream.servers":        []any{"127.0.0.2:53"},
	"upstream.timeout":        "3s",
	"upstream.bootstrap":      []any{"127.0.0.3"},
	"upstream.zone[].name":    "other.internal",
	"upstream.zone[].servers": []any{"10.0.0.54"},

	"cache.size":        int64(10),
	"cache.max_bytes":   int64(1 << 20),
	"cache.max_ttl":     "30m",
	"cache.serve_stale": "1h",

	"firewall.backend":          "none",
	"firewall.fallback_to_none": true,
	"firewall.table":            "other",
	"firewall.hooks":            []any{"output"},
	"firewall.grace":            "10s",
	"firewall.max_ttl":          "1m",
	"firewall.scope":            "client",
	"firewall.fail_open":        true,
	"firewall.mark":             int64(42),
	"firewall.remove_on_exit":   true,

	"firewall.inbound":                  "accept",
	"firewall.unlisted_sources":         "accept",
	"firewall.drop_events":              "both",
	"firewall.nflog_group":              int64(7),
	"firewall.drop_events_rate":         int64(100),
	"firewall.drop_events_burst":        int64(20),
	"firewall.recent_answers":           int64(1000),
	"firewall.recent_answers_age":       "10m",
	"firewall.max_addresses_per_answer": int64(8),
	"firewall.max_elements_per_set":     int64(20000),
	"firewall.max_elements_per_client":  int64(100),
	"firewall.gc_interval":              "30s",

	"log.queries":                "none",
	"log.sample_allowed":         int64(5),
	"log.max_size":               "10MB",
	"log.max_files":              int64(7),
	"log.denied_per_client_rate": 5.0,
	"log.level":                  "debug",

	"metrics.listen":   "127.0.0.1:9154",
	"metrics.profiles": true,

	"dnstap.output":           "unix:///run/egressd/dnstap.sock",
	"dnstap.identity":         "gw1",
	"dnstap.version":          "custom",
	"dnstap.queue":            int64(100),
	"dnstap.client_queries":   false,
	"dnstap.client_responses": false,
	"dnstap.forwarder":        false,

	"fleet.servers":         []any{"nats://127.0.0.1:4222"},
	"fleet.node":            "gw-a",
	"fleet.publish":         []any{"servers"},
	"fleet.enforce":         []any{"servers"},
	"fleet.credentials":     "/etc/egressd/fleet.creds",
	"fleet.tls_ca":          "/etc/egressd/nats-ca.pem",
	"fleet.tls_cert":        "/etc/egressd/nats.pem",
	"fleet.tls_key":         "/etc/egressd/nats.key",
	"fleet.subject_prefix":  "corp.egress",
	"fleet.stream":          "APPROVALS",
	"fleet.publish_timeout": "1s",
	"fleet.queue":           int64(100),
	"fleet.confirm":         []any{"gw-b"},
	"fleet.confirm_timeout": "500ms",

	"categories.*.sources": []any{"../blocklists/anonymizers.txt"},
	"categories.*.refresh": "1h",
	"categories.*.match":   "exact",
	"categories.*.format":  "domains",

	"hosts.*": []any{"10.0.0.21"},

	"group[].name":                  "other",
	"group[].clients":               []any{"10.2.0.0/16"},
	"group[].allow":                 []any{"example.org"},
	"group[].deny":                  []any{"x.example.com"},
	"group[].allow_categories":      []any{"malware"},
	"group[].deny_categories":       []any{},
	"group[].default":               "allow",
	"group[].action":                "refused",
	"group[].sinkhole":              []any{"192.0.2.2"},
	"group[].mode":                  "audit",
	"group[].allow_private_answers": true,
	"group[].deny_addresses":        []any{"169.254.169.254"},
}

// together lists edits a key needs beside its own to stay valid.
var together = map[string]map[string]any{
	"group[].allow_categories": {"group[].deny_categories": []any{}},
	// Every [fleet] key but servers needs the fleet on; confirm needs
	// approvals to publish, a certificate its key.
	"fleet.node":        fleetOn,
	"fleet.publish":     fleetOn,
	"fleet.enforce":     fleetOn,
	"fleet.credentials": fleetOn,
	"fleet.tls_ca":      fleetOn,
	"fleet.tls_cert":    {"fleet.servers": fleetOn["fleet.servers"], "fleet.tls_key": "/etc/egressd/nats.key"},
	"fleet.tls_key":     {"fleet.servers": fleetOn["fleet.servers"], "fleet.tls_cert": "/etc/egressd/nats.pem"},
	"fleet.confirm":     {"fleet.servers": fleetOn["fleet.servers"], "fleet.publish": []any{"servers"}},
}

var fleetOn = map[string]any{"fleet.servers": []any{"nats://127.0.0.1:4222"}}

// startFrom lists keys a key needs in the config the edit starts from, set
// in both the running and the edited config: a listener is valid only with
// a certificate that loads.
var startFrom = map[string]map[string]any{
	"server.tls_listen":   testCertKeys,
	"server.https_listen": testCertKeys,
}

var testCertKeys = map[string]any{"server.tls_cert": "testdata/tls/cert.pem", "server.tls_key": "testdata/tls/key.pem"}

// Every key of configs/reference.toml is either applied by SIGHUP (the
// running configuration a reload installs changes) or reported as
// restart-only (and then the running configuration keeps its value).
func TestEveryKeyIsAppliedOrReported(t *testing.T) {
	const ref = "../../configs/reference.toml"
	data, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	base, err := config.Parse(ref, data)
	if err != nil {
		t.Fatal(err)
	}
	before := newRunning(base, base)
	keys := make([]string, 0, len(config.Keys))
	for k := range config.Keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			value, ok := keyEdits[key]
			if !ok {
				t.Fatalf("no edit for %s in keyEdits: add a value, and make SIGHUP apply the key or classify it restart-only", key)
			}
			var doc map[string]any
			if _, err := toml.Decode(string(data), &doc); err != nil {
				t.Fatal(err)
			}
			base, before := base, before
			if start := startFrom[key]; start != nil {
				for k, v := range start {
					setKey(t, doc, k, v)
				}
				var buf bytes.Buffer
				if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
					t.Fatal(err)
				}
				if base, err = config.Parse(ref, buf.Bytes()); err != nil {
					t.Fatalf("config to start from does not load: %v", err)
				}
				before = newRunning(base, base)
			}
			setKey(t, doc, key, value)
			for k, v := range together[key] {
				setKey(t, doc, k, v)
			}
			var buf bytes.Buffer
			if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
				t.Fatal(err)
			}
			cur, err := config.Parse(ref, buf.Bytes())
			if err != nil {
				t.Fatalf("edited config does not load: %v", err)
			}
			var changed []string
			for _, c := range config.Changes(base, cur) {
				changed = append(changed, c.Pattern)
			}
			if !slices.Contains(changed, key) {
				t.Fatalf("editing %s changed %v", key, changed)
			}
			after := newRunning(cur, base)
			restart := config.RestartOnly(base, cur)
			switch config.Keys[key] {
			case config.OnReload:
				if reflect.DeepEqual(before, after) {
					t.Errorf("%s is classified as applied on reload, but the running configuration a reload installs does not change", key)
				}
				if len(restart) != 0 {
					t.Errorf("reload of %s reports restart-only keys %v", key, restart)
				}
			case config.OnRestart:
				if !reflect.DeepEqual(before, after) {
					t.Errorf("%s is restart-only, but a reload would change the running configuration", key)
				}
				if len(restart) == 0 {
					t.Errorf("reload of restart-only %s reports nothing", key)
				}
			}
		})
	}
}

// setKey sets a Keys pattern in a decoded document, in the first entry of
// operator-named tables and arrays of tables.
func setKey(t *testing.T, doc map[string]any, pattern string, value any) {
	t.Helper()
	parts := strings.Split(pattern, ".")
	var cur any = doc
	for i, p := range parts {
		last := i == len(parts)-1
		array := strings.HasSuffix(p, "[]")
		p = strings.TrimSuffix(p, "[]")
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: %T at %q", pattern, cur, p)
		}
		if p == "*" {
			names := make([]string, 0, len(m))
			for n := range m {
				names = append(names, n)
			}
			if len(names) == 0 {
				t.Fatalf("%s: empty table", pattern)
			}
			slices.Sort(names)
			p = names[0]
		}
		if last {
			m[p] = value
			return
		}
		cur = m[p]
		if array {
			tables, ok := cur.([]map[string]any)
			if !ok || len(tables) == 0 {
				t.Fatalf("%s: no [[%s]] tables", pattern, p)
			}
			cur = tables[0]
		}
	}
}
