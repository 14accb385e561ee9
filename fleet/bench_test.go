package fleet

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/egressd/egressd/enforce"
	"github.com/egressd/egressd/internal/natstest"
	"github.com/egressd/egressd/policy"
)

// The cost of one approval on the fleet path, for review:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./fleet/ | benchstat -
//
// Publish and Apply run against in-process NATS servers, so their
// allocs/op include the server's; ns/op is wall time per approval with
// everything on the same cores.

// benchAllowance is the nth of a stream of distinct approvals (one address
// each), as the resolver makes them from answers.
func benchAllowance(n uint32) enforce.Allowance {
	ip := netip.AddrFrom4([4]byte{198, byte(18 + n>>24&1), byte(n >> 8), byte(n)})
	if n>>16&0xff != 0 {
		ip = netip.AddrFrom4([4]byte{100, byte(64 + n>>16&0x3f), byte(n >> 8), byte(n)})
	}
	return enforce.Allowance{Group: "staff", Client: client1, IPs: []netip.Addr{ip}, Ports: https,
		TTL: time.Minute, Name: "h1234567.example.com.", Targets: []string{"cdn.example.net."}}
}

// nopFW installs nothing and counts Allow calls.
type nopFW struct{ n atomic.Int64 }

func (f *nopFW) Allow(context.Context, enforce.Allowance) error { f.n.Add(1); return nil }
func (f *nopFW) Close() error                                   { return nil }

// benchMessage is a message of n approvals as a resolver publishes it.
func benchMessage(n int) []byte {
	aps := make([]*Approval, n)
	lifetimes := make([]time.Duration, n)
	for i := range aps {
		ap := approvalOf(benchAllowance(uint32(i)), true)
		aps[i], lifetimes[i] = &ap, 62*time.Second
	}
	return appendMessage(nil, "gw-a-26d7f26f3dbc-17", "gw-a", "staff", ScopeClient, aps, lifetimes, nil)
}

func BenchmarkEncode(b *testing.B) {
	ap := approvalOf(benchAllowance(1), true)
	aps, lifetimes := []*Approval{&ap}, []time.Duration{62 * time.Second}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendMessage(buf[:0], "gw-a-26d7f26f3dbc-17", "gw-a", "staff", ScopeClient, aps, lifetimes, nil)
	}
}

func BenchmarkDecode(b *testing.B) {
	data := benchMessage(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyMessage is an agent's work for one message once NATS has
// delivered it: decode, checks, policy re-check, the Allowance handed to
// the firewall (which does nothing here); with one approval, and with 16
// (ns/approval is the cost of each).
func BenchmarkApplyMessage(b *testing.B) {
	for _, size := range []int{1, 16} {
		b.Run(fmt.Sprintf("approvals=%d", size), func(b *testing.B) {
			fw := &nopFW{}
			recheck := func(string, netip.Addr, netip.Addr, []string) ([]policy.PortRange, bool) { return nil, true }
			n, _ := node(b, Options{Servers: []string{"nats://127.0.0.1:1"}, Node: "gw-b", Enforce: []string{"staff"}, Apply: fw,
				Settings: Settings{ScopeClient: true, MaxLifetime: 10 * time.Minute, Recheck: recheck}})
			data := benchMessage(size)
			subject := ApprovalSubject(DefaultSubjectPrefix, "staff")
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				n.app.apply(subject, data, time.Now())
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*size), "ns/approval")
			if fw.n.Load() != int64(b.N*size) {
				b.Fatalf("%d applied, want %d", fw.n.Load(), b.N*size)
			}
		})
	}
}

// BenchmarkPublish is the resolver's fleet work per approval: Allow on
// the publisher (over a firewall that does nothing) until JetStream has
// stored it, from 64 answers at once, into a single server and into a
// 3-server cluster (R3).
func BenchmarkPublish(b *testing.B) {
	for _, tt := range []struct {
		name    string
		servers func(testing.TB) []string
	}{
		{"single", func(t testing.TB) []string { return []string{natstest.Run(t).URL()} }},
		{"cluster3", func(t testing.TB) []string { return []string{natstest.RunCluster(t, 3).URLs()} }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			servers := tt.servers(b)
			n, m := node(b, Options{Servers: servers, Node: "gw-a", Publish: []string{"staff"},
				PublishTimeout: 5 * time.Second, Queue: 1 << 20})
			waitFor(b, "connected", n.Connected)
			enf := n.Wrap(&nopFW{})
			var seq atomic.Uint32
			b.SetParallelism(32) // 64 on 2 CPUs
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := enf.Allow(context.Background(), benchAllowance(seq.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportCPU(b, cpu0)
			if q := counter(m.Queued); q > 0 {
				b.Fatalf("%d approvals queued: not stored within publish_timeout", q)
			}
			b.ReportMetric(float64(counter(m.Published))/float64(streamMsgs(b, strings.Split(servers[0], ",")[0])), "approvals/msg")
		})
	}
}

// BenchmarkApply is an agent following the stream: messages stored in
// JetStream beforehand, delivered and installed (into a firewall that does
// nothing) as fast as the agent goes.
func BenchmarkApply(b *testing.B) {
	s := natstest.Run(b)
	fw := &nopFW{}
	n, _ := node(b, Options{Servers: []string{s.URL()}, Node: "gw-b", Enforce: []string{"staff"}, Apply: fw,
		Settings: Settings{ScopeClient: true}})
	waitFor(b, "replayed", n.ReplayDone)
	nc, err := nats.Connect(s.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	subject := ApprovalSubject(DefaultSubjectPrefix, "staff")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		ap := approvalOf(benchAllowance(uint32(i)), true)
		data := appendMessage(nil, n.newID(), "gw-a", "staff", ScopeClient, []*Approval{&ap}, []time.Duration{time.Minute}, nil)
		if _, err := js.PublishAsync(subject, data); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(settle):
		b.Fatal("publishes not acknowledged")
	}
	waitFor(b, "all applied", func() bool { return fw.n.Load() >= int64(b.N) })
	reportCPU(b, cpu0)
}

// cpuTime is the CPU time (user and system) the process used so far:
// with in-process servers, client and servers together.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since cpu0 per operation.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
