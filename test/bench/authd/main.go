// Command authd is the authoritative upstream for egressd's benchmarks. It
// serves a generated zone from memory, fast enough that the resolver under
// test, not the upstream, is what a benchmark measures:
//
//	h<N>.bench.test.  A     198.18.0.0/15 address derived from N
//	h<N>.bench.test.  AAAA  2001:db8::/32 address derived from N
//
// for N in [0, -names); other names in the zone are NXDOMAIN, and names
// outside it are REFUSED. SIGUSR1 writes the number of queries received so
// far to the -stats file, so a benchmark can tell how many queries reached
// the upstream.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/egressd/egressd/internal/testfile"
)

func main() {
	listen := flag.String("listen", "127.0.0.2:5300", "address (host:port) to serve UDP and TCP on")
	origin := flag.String("zone", "bench.test.", "zone origin")
	names := flag.Uint64("names", 101000, "number of h<N> names in the zone")
	ttl := flag.Uint("ttl", 3600, "TTL of records, in seconds")
	coldFrom := flag.Uint64("cold-from", ^uint64(0), "names with N at or above this get -cold-ttl instead")
	coldTTL := flag.Uint("cold-ttl", 1, "TTL of the cold names, in seconds")
	sockets := flag.Int("sockets", runtime.NumCPU(), "number of SO_REUSEPORT UDP sockets")
	stats := flag.String("stats", "", "file that SIGUSR1 writes the query count to")
	flag.Parse()

	if *sockets < 1 {
		log.Fatal("authd: -sockets must be at least 1")
	}
	if *ttl > 1<<31-1 || *coldTTL > 1<<31-1 {
		log.Fatal("authd: TTLs must fit in 31 bits (RFC 2181)")
	}
	z, err := newZone(*origin, *names, uint32(*ttl), *coldFrom, uint32(*coldTTL))
	if err != nil {
		log.Fatalf("authd: %v", err)
	}
	srv := &server{zone: z}
	if err := srv.listen(context.Background(), *listen, *sockets); err != nil {
		log.Fatalf("authd: %v", err)
	}
	srv.serve()
	log.Printf("authd: serving %d names in %s on %s (%d UDP sockets)", *names, z.origin, *listen, *sockets)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	for sig := range sigs {
		if sig == syscall.SIGUSR1 {
			if err := writeStats(*stats, srv.queries.Load()); err != nil {
				log.Printf("authd: stats: %v", err)
			}
			continue
		}
		break
	}
	srv.close()
	log.Printf("authd: stopped after %d queries", srv.queries.Load())
}

// writeStats replaces path with the query count, atomically so a reader
// never sees a half-written file.
func writeStats(path string, queries uint64) error {
	if path == "" {
		return fmt.Errorf("no -stats file given")
	}
	return testfile.Replace(path, strconv.FormatUint(queries, 10)+"\n")
}
