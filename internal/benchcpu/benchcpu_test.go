package benchcpu

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkGetpid shows the split: getpid is nearly all system time.
func BenchmarkGetpid(b *testing.B) {
	stop := Start(b)
	for b.Loop() {
		unix.Getpid()
	}
	stop()
}

func TestUsageGrows(t *testing.T) {
	r := testing.Benchmark(func(b *testing.B) {
		stop := Start(b)
		x := 0
		for b.Loop() {
			for i := range 1000 {
				x += i
			}
		}
		_ = x
		stop()
	})
	if r.N == 0 || r.Extra["user-ns/op"] <= 0 {
		t.Fatalf("user-ns/op = %v over %d ops, want > 0", r.Extra["user-ns/op"], r.N)
	}
	for _, m := range []string{"sys-ns/op", "cswitch/op"} {
		if _, ok := r.Extra[m]; !ok {
			t.Fatalf("no %s reported", m)
		}
	}
}
