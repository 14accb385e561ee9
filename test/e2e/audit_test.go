package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestAuditMode checks that audit mode resolves and admits everything,
// and records what enforcement would have denied in the query log.
func TestAuditMode(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	cfg := g.egressdConfig()
	cfg.Mode = "audit"
	cfg.QueryLog = filepath.Join(t.TempDir(), "queries.jsonl")
	g.startEgressd(t, cfg)

	resolve(t, g.client1, g.dns1(), "denied.test", dns.TypeA, deniedIP)
	expectReach(t, g.client1, ap(deniedIP, 80), "audit mode: denied.test resolved")
	expectReach(t, g.client1, ap(unresolvedIP, 80), "audit mode: address never resolved")
	expectReach(t, g.client2, ap(unresolvedIP, 443), "audit mode: client that never queried")
	if resp, err := query(g.client1, ap(resolverAddr4, 53), "udp", "allowed.test", dns.TypeA); err != nil {
		t.Errorf("audit mode: direct DNS to another resolver: want an answer, got %v %s", err, describe(resp))
	}

	entry, lines := waitLogEntry(cfg.QueryLog, "denied.test", 5*time.Second)
	if entry == nil {
		t.Fatalf("query log %s has no entry for denied.test within 5s; it holds:\n%s", cfg.QueryLog, lines)
	}
	if entry["decision"] != "would_deny" {
		t.Errorf("query log entry for denied.test: decision %v, want \"would_deny\"\n%s", entry["decision"], lines)
	}
}

// waitLogEntry polls a JSON lines query log for the first entry about
// qname and returns it with the file's text, for messages.
func waitLogEntry(path, qname string, limit time.Duration) (map[string]any, string) {
	deadline := time.Now().Add(limit)
	var text string
	for {
		data, _ := os.ReadFile(path)
		text = string(data)
		for _, line := range strings.Split(text, "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			if name, _ := e["qname"].(string); strings.TrimSuffix(strings.ToLower(name), ".") == qname {
				return e, text
			}
		}
		if time.Now().After(deadline) {
			return nil, text
		}
		time.Sleep(100 * time.Millisecond)
	}
}
