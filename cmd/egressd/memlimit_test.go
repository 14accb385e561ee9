package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMemoryLimit resolves [server] memory_limit against GOMEMLIMIT and a
// fake cgroup tree: v2 with the tightest memory.max of the cgroup and its
// parents, v1's memory.limit_in_bytes, and no limit at all.
func TestMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name       string
		configured int64
		env        string
		cgroup     string            // /proc/self/cgroup
		files      map[string]string // under the cgroup mount
		want       int64
		wantFrom   string
	}{
		{"off", -1, "", "0::/egressd.service\n", map[string]string{"egressd.service/memory.max": "104857600\n"}, 0, ""},
		{"configured", 256 * mib, "", "0::/egressd.service\n", map[string]string{"egressd.service/memory.max": "104857600\n"}, 256 * mib, "server.memory_limit"},
		{"configured over GOMEMLIMIT", 256 * mib, "100MiB", "0::/\n", nil, 256 * mib, "server.memory_limit"},
		{"GOMEMLIMIT stands", 0, "100MiB", "0::/egressd.service\n", map[string]string{"egressd.service/memory.max": "104857600\n"}, 0, "GOMEMLIMIT"},
		{"cgroup v2", 0, "", "0::/system.slice/egressd.service\n", map[string]string{
			"system.slice/egressd.service/memory.max": "209715200\n",
			"system.slice/memory.max":                 "max\n",
		}, 180 * mib, "cgroup memory.max"},
		{"cgroup v2 parent tighter", 0, "", "0::/system.slice/egressd.service\n", map[string]string{
			"system.slice/egressd.service/memory.max": "max\n",
			"system.slice/memory.max":                 "104857600\n",
		}, 90 * mib, "cgroup memory.max"},
		{"cgroup v2 unlimited", 0, "", "0::/system.slice/egressd.service\n", map[string]string{
			"system.slice/egressd.service/memory.max": "max\n",
		}, 0, ""},
		{"cgroup v1", 0, "", "12:cpu,cpuacct:/x\n7:memory:/docker/abc\n", map[string]string{
			"memory/docker/abc/memory.limit_in_bytes": "104857600\n",
		}, 90 * mib, "cgroup memory.max"},
		{"cgroup v1 unlimited", 0, "", "7:memory:/docker/abc\n", map[string]string{
			"memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, ""},
		{"no cgroup files", 0, "", "", nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, text := range tt.files {
				path := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, from := memoryLimit(tt.configured, tt.env, cgroupMemoryMax([]byte(tt.cgroup), root))
			if got != tt.want || from != tt.wantFrom {
				t.Errorf("memoryLimit = %d (%q), want %d (%q)", got, from, tt.want, tt.wantFrom)
			}
		})
	}
}
