// Command floodgen sends UDP datagrams to one address at a fixed rate, for
// the drop-flood benchmark (test/bench/dropflood): run inside a client
// namespace whose packets the gateway drops. It sends in batches
// (sendmmsg) once a millisecond, catching up when a tick was late, and
// prints what it sent.
//
//	floodgen -dst 10.99.2.7:9999 -pps 50000 -d 20s
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/net/ipv4"
)

func main() {
	dst := flag.String("dst", "", "destination host:port (UDP)")
	pps := flag.Int("pps", 50000, "packets a second")
	dur := flag.Duration("d", 20*time.Second, "how long to send")
	size := flag.Int("size", 64, "payload bytes")
	flag.Parse()
	if *dst == "" || *pps < 1 {
		fmt.Fprintln(os.Stderr, "usage: floodgen -dst HOST:PORT [-pps N] [-d DURATION]")
		os.Exit(2)
	}
	sent, errs, elapsed, err := flood(*dst, *pps, *dur, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floodgen:", err)
		os.Exit(1)
	}
	fmt.Printf("sent %d packets in %.2f s: %.0f/s (%d send errors)\n", sent, elapsed.Seconds(), float64(sent)/elapsed.Seconds(), errs)
}

func flood(dst string, pps int, dur time.Duration, size int) (sent, errs int, elapsed time.Duration, err error) {
	conn, err := net.Dial("udp4", dst)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	pc := ipv4.NewPacketConn(conn.(*net.UDPConn))
	const batch = 64
	msgs := make([]ipv4.Message, batch)
	payload := make([]byte, size)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{payload}
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		elapsed = now.Sub(start)
		if elapsed >= dur {
			return sent, errs, elapsed, nil
		}
		// Packets due by now, sent in batches.
		due := int(elapsed.Seconds()*float64(pps)) - sent
		for due > 0 {
			n := min(due, batch)
			k, err := pc.WriteBatch(msgs[:n], 0)
			if err != nil {
				errs++
				break
			}
			sent += k
			due -= k
		}
		<-tick.C
	}
}
