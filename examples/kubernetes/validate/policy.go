package validate

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
	corev1 "k8s.io/api/core/v1"
)

// ConfigKey is the ConfigMap key egressd reads its policy from.
const ConfigKey = "egressd.toml"

// Policy is the part of an egressd config the manifests must agree with.
// The config package's own test validates the whole file.
type Policy struct {
	Server struct {
		Listen  []string `toml:"listen"`
		Clients []string `toml:"clients"`
	} `toml:"server"`
	Upstream struct {
		Servers []string `toml:"servers"`
	} `toml:"upstream"`
	Firewall struct {
		Hooks []string `toml:"hooks"`
		Scope string   `toml:"scope"`
	} `toml:"firewall"`
	Metrics struct {
		Listen string `toml:"listen"`
	} `toml:"metrics"`
	Groups []struct {
		Name    string   `toml:"name"`
		Clients []string `toml:"clients"`
	} `toml:"group"`
}

// ParsePolicy decodes the egressd.toml of a ConfigMap.
func ParsePolicy(cm *corev1.ConfigMap) (*Policy, error) {
	text, ok := cm.Data[ConfigKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no %q key", cm.Namespace, cm.Name, ConfigKey)
	}
	var p Policy
	if _, err := toml.Decode(text, &p); err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %s: %w", cm.Namespace, cm.Name, ConfigKey, err)
	}
	return &p, nil
}

// MatchingFile returns the *.toml file in dir whose content is exactly the
// ConfigMap's egressd.toml, so that `egressd check` and the config
// package's tests cover what the cluster runs.
func MatchingFile(dir string, cm *corev1.ConfigMap) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		return "", err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		if string(data) == cm.Data[ConfigKey] {
			return f, nil
		}
	}
	return "", fmt.Errorf("ConfigMap %s/%s: %s matches none of %s/*.toml; keep it a verbatim copy", cm.Namespace, cm.Name, ConfigKey, dir)
}

// listenAddrs parses server.listen; invalid entries are skipped (the config
// package reports them).
func (p *Policy) listenAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range p.Server.Listen {
		if ap, err := netip.ParseAddrPort(l); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// coversEveryIPv4 reports whether some group's clients contain 0.0.0.0/0:
// in a pod the address connections leave from is not known in advance.
func (p *Policy) coversEveryIPv4() bool {
	for _, g := range p.Groups {
		for _, c := range g.Clients {
			if pr, err := netip.ParsePrefix(c); err == nil && pr.Addr().Is4() && pr.Bits() == 0 {
				return true
			}
		}
	}
	return false
}
