// Command gen writes the inputs of egressd's benchmark into one directory:
//
//	queries-hit.txt    dnsperf data, the hot names (cache hits once warm)
//	queries-miss.txt   dnsperf data, the cold names, each once
//	queries-mixed.txt  dnsperf data, 90% hot and 10% cold names
//	blocked.txt        the deny category, d<N>.blocked.test
//	egressd.toml       egressd config with firewall backend "none"
//	egressd-nft.toml   the same with backend "nftables"
//
// The names are those authd serves: hot h0..h<hot-1>, cold the next -cold.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("out", "", "directory to write into (created if missing)")
	hot := flag.Int("hot", 1000, "number of hot names")
	cold := flag.Int("cold", 100000, "number of cold names")
	mixedLines := flag.Int("mixed-lines", 1000000, "lines in the mixed query file")
	blocked := flag.Int("blocked", 1000000, "domains in the deny category")
	listen := flag.String("listen", "127.0.0.1:5401", "egressd listen address")
	upstream := flag.String("upstream", "127.0.0.2:5300", "authd address")
	cache := flag.Int("cache", 100000, "egressd cache entries")
	cacheBytes := flag.Int64("cache-bytes", 8<<20, "egressd cache.max_bytes (compare gives unbound the same: msg-cache-size plus rrset-cache-size)")
	memoryLimit := flag.Int64("memory-limit", 0, "egressd server.memory_limit in bytes (0: not set)")
	metrics := flag.String("metrics", "", "egressd metrics listen address (\"\" disables)")
	flag.Parse()

	if *out == "" {
		log.Fatal("gen: -out is required")
	}
	if *hot < 1 || *cold < 1 || *mixedLines < 1 || *blocked < 0 {
		log.Fatal("gen: -hot, -cold and -mixed-lines must be positive, -blocked not negative")
	}
	if err := generate(*out, workload{hot: *hot, cold: *cold, mixedLines: *mixedLines, coldShare: 0.1, seed: 1},
		*blocked, configOptions{listen: *listen, upstream: *upstream, cache: *cache,
			cacheBytes: *cacheBytes, memoryLimit: *memoryLimit, metrics: *metrics}); err != nil {
		log.Fatalf("gen: %v", err)
	}
}

func generate(dir string, w workload, blocked int, opts configOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		fill func(io.Writer) error
	}{
		{"queries-hit.txt", func(f io.Writer) error { return writeQueries(f, w.hitQueries()) }},
		{"queries-miss.txt", func(f io.Writer) error { return writeQueries(f, w.missQueries()) }},
		{"queries-mixed.txt", func(f io.Writer) error { return writeQueries(f, w.mixedQueries()) }},
		{"blocked.txt", func(f io.Writer) error { return writeBlocked(f, blocked) }},
	}
	for _, f := range files {
		if _, err := writeFile(dir, f.name, f.fill); err != nil {
			return err
		}
	}
	opts.blocked = filepath.Join(dir, "blocked.txt")
	for name, backend := range map[string]string{"egressd.toml": "none", "egressd-nft.toml": "nftables"} {
		o := opts
		o.backend = backend
		if _, err := writeFile(dir, name, func(f io.Writer) error { return writeConfig(f, o) }); err != nil {
			return err
		}
	}
	fmt.Printf("gen: wrote %d hot, %d cold names, %d blocked domains and configs to %s\n", w.hot, w.cold, blocked, dir)
	return nil
}
