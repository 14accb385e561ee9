package config

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// Every key the file can set is classified, and nothing else is.
func TestKeysClassifyEveryField(t *testing.T) {
	fields := map[string]bool{}
	patterns(reflect.TypeOf(Config{}), "", fields)
	for p := range fields {
		if _, ok := Keys[p]; !ok {
			t.Errorf("key %s is not classified in Keys (reload or restart)", p)
		}
	}
	for p := range Keys {
		if !fields[p] {
			t.Errorf("Keys lists %s, which the config has no field for", p)
		}
	}
}

// configs/reference.toml documents every classified key, and only those.
func TestReferenceHasEveryKey(t *testing.T) {
	data, err := os.ReadFile("../configs/reference.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	flattenTOML(doc, "", seen)
	for p := range seen {
		if _, ok := Keys[p]; !ok {
			t.Errorf("reference.toml has %s, which Keys does not classify", p)
		}
	}
	for p := range Keys {
		if !seen[p] {
			t.Errorf("reference.toml does not document %s", p)
		}
	}
}

// flattenTOML records the Keys pattern of every key in a decoded document.
func flattenTOML(v any, pattern string, out map[string]bool) {
	join := func(name string) string {
		if pattern == "" {
			return name
		}
		return pattern + "." + name
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			name := k
			// Tables whose keys are names the operator chooses.
			if pattern == "categories" || pattern == "hosts" {
				name = "*"
			}
			flattenTOML(e, join(name), out)
		}
	case []map[string]any:
		for _, e := range x {
			flattenTOML(e, pattern+"[]", out)
		}
	default:
		out[pattern] = true
	}
}

func TestChanges(t *testing.T) {
	base := `
[server]
listen = ["127.0.0.1:5353"]
clients = ["127.0.0.0/8"]
[upstream]
servers = ["127.0.0.1:53"]
[[group]]
name = "a"
clients = ["127.0.0.0/8"]
allow = ["example.com"]
`
	tests := []struct {
		name    string
		edit    func(string) string
		changed []string
		restart []string
	}{
		{"nothing", func(s string) string { return s }, nil, nil},
		{"clients narrowed", func(s string) string {
			return strings.Replace(s, `clients = ["127.0.0.0/8"]`+"\n[upstream]", `clients = ["127.0.0.1/32"]`+"\n[upstream]", 1)
		}, []string{"server.clients"}, nil},
		{"listen moved", func(s string) string {
			return strings.Replace(s, "127.0.0.1:5353", "127.0.0.1:5354", 1)
		}, []string{"server.listen"}, []string{"server.listen"}},
		{"rule added", func(s string) string {
			return strings.Replace(s, `allow = ["example.com"]`, `allow = ["example.com", "example.org"]`, 1)
		}, []string{"group[0].allow"}, nil},
		{"group added", func(s string) string {
			return s + "[[group]]\nname = \"b\"\nclients = [\"127.0.0.2/32\"]\n"
		}, nil, nil},
		{"upstream and mark", func(s string) string {
			return strings.Replace(s, `servers = ["127.0.0.1:53"]`, `servers = ["127.0.0.2:53"]`+"\n[firewall]\nmark = 7", 1)
		}, []string{"firewall.mark", "upstream.servers"}, []string{"firewall.mark", "upstream.servers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, err := Parse("a.toml", []byte(base))
			if err != nil {
				t.Fatal(err)
			}
			cur, err := Parse("b.toml", []byte(tt.edit(base)))
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, c := range Changes(old, cur) {
				if _, ok := Keys[c.Pattern]; !ok {
					t.Errorf("change %s has unclassified pattern %s", c.Key, c.Pattern)
				}
				keys = append(keys, c.Key)
			}
			if tt.name == "group added" {
				if len(keys) == 0 || !strings.HasPrefix(keys[0], "group[1].") {
					t.Fatalf("changes %v, want group[1] keys", keys)
				}
				return
			}
			sort.Strings(keys)
			if !reflect.DeepEqual(keys, tt.changed) {
				t.Errorf("changes %v, want %v", keys, tt.changed)
			}
			if got := RestartOnly(old, cur); !reflect.DeepEqual(got, tt.restart) {
				t.Errorf("restart-only %v, want %v", got, tt.restart)
			}
		})
	}
}

// configs/reference.toml says "Restart only." in the comment above every
// restart-only key, and nowhere else, so the file a user reads tells what
// SIGHUP applies.
func TestReferenceMarksRestartOnlyKeys(t *testing.T) {
	data, err := os.ReadFile("../configs/reference.toml")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "Restart only."
	section, comment := "", ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			if !strings.HasSuffix(comment, "\n") {
				comment = ""
			}
			comment += line + "\n"
			continue
		case strings.HasPrefix(line, "[[") || strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			switch {
			case strings.HasPrefix(line, "[["):
				section += "[]"
			case strings.HasPrefix(section, "categories."):
				section = "categories.*"
			}
			comment = ""
			continue
		default:
			key, _, _ := strings.Cut(line, "=")
			key = strings.TrimSpace(key)
			pattern := section + "." + key
			if section == "hosts" {
				pattern = "hosts.*"
			}
			apply, ok := Keys[pattern]
			if !ok {
				t.Errorf("reference.toml:%d: %s is not in Keys", i+1, pattern)
			}
			if marked := strings.Contains(comment, marker); marked != (apply == OnRestart) {
				t.Errorf("reference.toml:%d: %s is applied on %s, but its comment says %q: %v", i+1, pattern, apply, marker, marked)
			}
		}
		// A key line ends a comment block; the keys that follow it
		// without a comment of their own share it.
		comment = strings.TrimSuffix(comment, "\n")
	}
}
