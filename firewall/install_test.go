package firewall

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInstallMatchesRender builds each golden layout over netlink in a
// fresh namespace and checks that nft lists exactly what Render prints, and
// that nft accepts Render's text and lists it back the same way.
func TestInstallMatchesRender(t *testing.T) {
	requireNetAdmin(t)
	for name, spec := range goldenSpecs {
		t.Run(name, func(t *testing.T) {
			ns := newTestNS(t)
			n, err := NewNFTables(spec, Options{NetNS: ns.fd, Logger: quietLogger})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			built := ns.exec(t, "nft", "list", "table", "inet", spec.Table)
			golden, err := os.ReadFile(filepath.Join("testdata", name+".nft"))
			if err != nil {
				t.Fatal(err)
			}
			if normalize(built) != normalize(string(golden)) {
				t.Errorf("netlink-built table differs from golden:\n--- nft list\n%s\n--- golden\n%s", built, golden)
			}

			other := newTestNS(t)
			file := filepath.Join(t.TempDir(), "rules.nft")
			if err := os.WriteFile(file, []byte(Render(spec)), 0o600); err != nil {
				t.Fatal(err)
			}
			other.exec(t, "nft", "-f", file)
			loaded := other.exec(t, "nft", "list", "table", "inet", spec.Table)
			if normalize(loaded) != normalize(built) {
				t.Errorf("nft -f of Render lists differently:\n--- nft -f\n%s\n--- netlink\n%s", loaded, built)
			}
		})
	}
}
