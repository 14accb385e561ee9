package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// workload sizes. The hot names are h0..h<hot-1>, the cold ones follow
// them: h<hot>..h<hot+cold-1>, so authd serves hot+cold names.
type workload struct {
	hot, cold int
	// mixedLines is the length of the mixed file; coldShare of it is
	// cold names, each appearing once, the rest hot names.
	mixedLines int
	coldShare  float64
	seed       uint64
}

func hostName(n int) string { return fmt.Sprintf("h%d.bench.test", n) }

// hitQueries: every hot name once; dnsperf loops over the file.
func (w workload) hitQueries() []int {
	out := make([]int, w.hot)
	for i := range out {
		out[i] = i
	}
	return out
}

// missQueries: every cold name once.
func (w workload) missQueries() []int {
	out := make([]int, w.cold)
	for i := range out {
		out[i] = w.hot + i
	}
	return out
}

// mixedQueries: coldShare of the lines are distinct cold names (as many
// as there are), the rest uniformly drawn hot names, in a shuffled order
// that is the same for the same seed.
func (w workload) mixedQueries() []int {
	rng := rand.New(rand.NewPCG(w.seed, w.seed^0x9e3779b97f4a7c15))
	coldLines := min(int(float64(w.mixedLines)*w.coldShare), w.cold)
	out := make([]int, 0, w.mixedLines)
	for i := range coldLines {
		out = append(out, w.hot+i)
	}
	for len(out) < w.mixedLines {
		out = append(out, rng.IntN(w.hot))
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// writeQueries writes a dnsperf data file: "NAME A" per line.
func writeQueries(w io.Writer, hosts []int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	for _, n := range hosts {
		if _, err := fmt.Fprintf(bw, "%s A\n", hostName(n)); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeBlocked writes the deny category: one d<N>.blocked.test per line.
func writeBlocked(w io.Writer, count int) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := fmt.Fprintf(bw, "# generated benchmark category: %d domains\n", count); err != nil {
		return err
	}
	for i := range count {
		if _, err := fmt.Fprintf(bw, "d%d.blocked.test\n", i); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeFile creates dir/name through fill, replacing any old copy.
func writeFile(dir, name string, fill func(io.Writer) error) (string, error) {
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := fill(f); err != nil {
		f.Close()
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return path, f.Close()
}
