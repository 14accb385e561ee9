// Package bench holds tests of the benchmark scripts' table code.
package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// TestRateSummary runs compare's RATE summary on medians of runs where
// some servers or workloads were not run: their cells and every ratio
// that needs them print "-", never zeros.
func TestRateSummary(t *testing.T) {
	row := func(server, workload, cpu, p50, p99, rss string) string {
		// server workload runs QPS CPU mean p50 p99 lost RSS upstream NOERROR load1
		return strings.Join([]string{server, workload, "3", "30000", cpu, "0.1", p50, p99, "0", rss, "10", "99", "1.0"}, "\t")
	}
	tests := []struct {
		name    string
		medians []string
		want    []string // table rows, in order
	}{
		{
			name: "mixed only",
			medians: []string{
				row("egressd", "mixed", "17.2", "0.06", "1.92", "56.3"),
				row("unbound", "mixed", "12.9", "0.06", "9.44", "30.1"),
			},
			want: []string{
				"| egressd (backend none) | - | 17.2, 0.06, 1.92 | 56 | -, -, 1.33, 0.20, 1.87 |",
				"| unbound | - | 12.9, 0.06, 9.44 | 30 | - |",
			},
		},
		{
			name: "cache-hit only",
			medians: []string{
				row("egressd", "cache-hit", "11.0", "0.05", "0.40", "40.0"),
				row("unbound", "cache-hit", "10.0", "0.05", "0.20", "20.0"),
			},
			want: []string{
				"| egressd (backend none) | 11.0, 0.05, 0.40 | - | - | 1.10, 2.00, -, -, - |",
				"| unbound | 10.0, 0.05, 0.20 | - | - | - |",
			},
		},
		{
			name: "no unbound, one workload missing for one server",
			medians: []string{
				row("egressd", "cache-hit", "11.0", "0.05", "0.40", "40.0"),
				row("egressd", "mixed", "15.0", "0.06", "0.50", "50.0"),
				row("egressd+nft", "mixed", "20.0", "0.07", "1.00", "60.0"),
			},
			want: []string{
				"| egressd (backend none) | 11.0, 0.05, 0.40 | 15.0, 0.06, 0.50 | 50 | - |",
				"| egressd (nftables) | - | 20.0, 0.07, 1.00 | 60 | - |",
			},
		},
		{
			name: "an earlier build in the same run",
			medians: []string{
				row("egressd+nft", "mixed", "15.0", "0.05", "0.40", "45.0"),
				row("before+nft", "mixed", "22.0", "0.07", "1.20", "90.0"),
				row("unbound", "mixed", "15.0", "0.05", "0.40", "30.0"),
			},
			want: []string{
				"| egressd (nftables) | - | 15.0, 0.05, 0.40 | 45 | -, -, 1.00, 1.00, 1.50 |",
				"| egressd before (nftables) | - | 22.0, 0.07, 1.20 | 90 | -, -, 1.47, 3.00, 3.00 |",
				"| unbound | - | 15.0, 0.05, 0.40 | 30 | - |",
			},
		},
		{
			name: "a failed run's columns",
			medians: []string{
				row("egressd", "mixed", "-", "-", "-", "-"),
				row("unbound", "mixed", "12.0", "0.06", "1.00", "30.0"),
			},
			want: []string{
				"| egressd (backend none) | - | -, -, - | - | -, -, -, -, - |",
				"| unbound | - | 12.0, 0.06, 1.00 | 30 | - |",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("awk", "-F", "\t", "-v", "rate=30000", "-f", "rate-summary.awk")
			cmd.Stdin = strings.NewReader(strings.Join(tt.medians, "\n") + "\n")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("awk: %v", err)
			}
			var rows []string
			for line := range strings.Lines(string(out)) {
				line = strings.TrimSpace(line)
				if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| server ") {
					rows = append(rows, line)
				}
			}
			if strings.Join(rows, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
