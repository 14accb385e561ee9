package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/fleet"
)

// lineOf is the line of the first occurrence of s in text.
func lineOf(text, s string) int {
	i := strings.Index(text, s)
	if i < 0 {
		return 0
	}
	return strings.Count(text[:i], "\n") + 1
}

// Errors in [fleet] name the file and the line of the offending key or
// value.
func TestFleetErrors(t *testing.T) {
	const on = "[fleet]\nservers = [\"nats://127.0.0.1:4222\"]\n"
	tests := []struct {
		name, conf, at, want string
	}{
		{"bad url", "[fleet]\nservers = [\n \"nats://127.0.0.1:4222\",\n \"http://x:1\",\n]\n", `"http://x:1"`, `fleet.servers: invalid NATS URL "http://x:1"`},
		{"no port", "[fleet]\nservers = [\"nats://nats.example\"]\n", `"nats://nats.example"`, `fleet.servers: "nats://nats.example" has no port`},
		{"off but publish", "[fleet]\npublish = [\"lan\"]\n", "publish", "fleet.publish: set, but fleet.servers is empty"},
		{"off but node", "[fleet]\nnode = \"gw\"\n", "node", "fleet.node: set, but fleet.servers is empty"},
		{"unknown group", on + "enforce = [\"lan\", \"dmz\"]\n", `"dmz"`, `fleet.enforce: no group named "dmz"`},
		{"group twice", on + "publish = [\"lan\", \"lan\"]\n", "publish", `fleet.publish: "lan" listed twice`},
		{"node with dot", on + "node = \"gw.a\"\n", "node", `fleet.node: "gw.a" is not a NATS subject token`},
		{"wildcard prefix", on + "subject_prefix = \"egressd.*\"\n", "subject_prefix", `fleet.subject_prefix: "egressd.*" is not a NATS subject`},
		{"bad stream", on + "stream = \"a.b\"\n", "stream", `fleet.stream: "a.b" is not a JetStream stream name`},
		{"cert without key", on + "tls_cert = \"/c.pem\"\n", "[fleet]", "fleet: tls_cert and tls_key go together"},
		{"bad timeout", on + "publish_timeout = \"soon\"\n", "publish_timeout", `fleet.publish_timeout: invalid duration "soon"`},
		{"over budget", on + "publish = [\"lan\"]\npublish_timeout = \"1s\"\nconfirm_timeout = \"2s\"\n", "confirm_timeout", "fleet: publish_timeout plus confirm_timeout is 3s, more than 2.5s"},
		{"queue zero", on + "queue = -1\n", "queue", "fleet.queue: -1 is out of range (1 to 1048576)"},
		{"confirm without publish", on + "confirm = [\"gw-b\"]\n", "confirm", "fleet.confirm: set, but fleet.publish is empty"},
		{"confirm by itself", on + "node = \"gw-a\"\npublish = [\"lan\"]\nconfirm = [\"gw-b\", \"gw-a\"]\n", `"gw-b", "gw-a"`, `fleet.confirm: "gw-a" is this node`},
		{"bad confirm node", on + "publish = [\"lan\"]\nconfirm = [\"gw b\"]\n", `"gw b"`, `fleet.confirm: "gw b" is not a node name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := validBase + "\n" + tt.conf
			_, err := Parse("bad.toml", []byte(text))
			if err == nil {
				t.Fatal("parsed")
			}
			at := lineOf(text[len(validBase):], tt.at) + strings.Count(validBase, "\n")
			want := fmt.Sprintf("bad.toml:%d: %s", at, tt.want)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
		})
	}
}

// Without [fleet] nothing is on; with it, defaults fill what is left out.
func TestFleetDefaults(t *testing.T) {
	off := mustParse(t, "ok.toml", []byte(validBase)).Fleet
	if off.Enabled() {
		t.Error("fleet on without a [fleet] section")
	}
	f := mustParse(t, "ok.toml", []byte(validBase+"\n[fleet]\nservers = [\"tls://nats.example:4222\"]\npublish = [\"lan\"]\nenforce = [\"lan\"]\n")).Fleet
	if !f.Enabled() || f.SubjectPrefix != fleet.DefaultSubjectPrefix || f.Stream != fleet.DefaultStream ||
		f.PublishTimeoutDur != fleet.DefaultPublishTimeout || f.ConfirmTimeoutDur != fleet.DefaultConfirmTimeout ||
		f.Queue != fleet.DefaultQueue {
		t.Errorf("defaults: %+v", f)
	}
	if n := f.NodeName(); n == "" || strings.Contains(n, ".") {
		t.Errorf("default node name %q", n)
	}
	g := mustParse(t, "ok.toml", []byte(validBase+"\n[fleet]\nservers = [\"nats://127.0.0.1:4222\"]\nnode = \"gw-a\"\npublish = [\"lan\"]\nconfirm = [\"gw-b\"]\nconfirm_timeout = \"1500ms\"\n")).Fleet
	if g.NodeName() != "gw-a" || g.ConfirmTimeoutDur != 1500*time.Millisecond {
		t.Errorf("node %q confirm_timeout %s", g.NodeName(), g.ConfirmTimeoutDur)
	}
}
