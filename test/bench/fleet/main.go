// Command fleet measures how fast approvals travel from one resolver to a
// remote agent through a local 3-node NATS JetStream cluster: how many
// approvals a second one resolver publishes and an agent applies, and how
// long from the client's answer until the element is live in the agent's
// nftables set (p50, p99, max).
//
//	sudo go run ./test/bench/fleet                      # 5,000 approvals/s for 10 s, then flat out for 5 s
//	sudo go run ./test/bench/fleet -rate 2000 -duration 20s -flat 0
//
// Two network namespaces, made and removed here:
//
//	res   10.99.0.1: egressd serve (nftables, forward hook, [fleet] publish),
//	      nats-server x3 (10.99.0.11-13, JetStream cluster), authd (the upstream),
//	      the load generator (UDP to 127.0.0.1:53)
//	agent 10.99.0.2: egressd agent (nftables, [fleet] enforce)
//
// Each query is a name never asked before (h<N>.bench.test, one address
// each, TTL 1 s), so each answer is one new approval. The time an element
// went live is when the kernel announced it: an nftables netlink monitor
// on the agent's namespace sees every new element of the agent's table
// (the resolver's own elements are in the other namespace). The latency is
// that time minus the time the load generator read the answer; an element
// live before the answer arrived counts as 0.
//
// Needs root (namespaces, nftables) and Go (it builds egressd, authd and
// nats-server). A benchmark, not a test: the figures depend on the machine
// and its load; run it on an idle machine and read them with the load
// average printed at the end.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/fleet"
	"github.com/egressd/egressd/internal/natsproc"
	"github.com/egressd/egressd/internal/netnstest"
	"github.com/egressd/egressd/internal/procstat"
)

func main() {
	rate := flag.Int("rate", 5000, "approvals (new names) a second in the fixed-rate phase")
	duration := flag.Duration("duration", 10*time.Second, "length of the fixed-rate phase")
	flat := flag.Duration("flat", 5*time.Second, "length of the flat-out phase (0: none)")
	inflight := flag.Int("inflight", 200, "queries in flight in the flat-out phase")
	keep := flag.Bool("keep", false, "keep the work directory (configs, logs)")
	flag.Parse()
	if err := run(*rate, *duration, *flat, *inflight, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "fleet bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	work       string
	res, agent netnstest.Namespace
	procs      []*exec.Cmd
	nats       []*natsproc.Proc
	mu         sync.Mutex
	live       map[netip.Addr][]time.Time // agent element adds, by address
}

func run(rate int, duration, flat time.Duration, inflight int, keep bool) error {
	if missing := netnstest.Missing(); len(missing) > 0 {
		return fmt.Errorf("needs %s", strings.Join(missing, "; "))
	}
	work, err := os.MkdirTemp("", "egressd-fleet-bench-")
	if err != nil {
		return err
	}
	b := &bench{work: work, live: map[netip.Addr][]time.Time{}}
	defer func() {
		b.stop()
		natsproc.RemoveBuild() // the nats-server binary built for this run, if any
		if keep {
			fmt.Println("work directory:", work)
		} else {
			os.RemoveAll(work)
		}
	}()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := b.setup(); err != nil {
		return err
	}
	stopMonitor, err := b.monitor()
	if err != nil {
		return err
	}
	defer stopMonitor()
	load1 := procstat.LoadAverage()
	cpu0 := b.cpu()
	msgs0 := b.streamMessages()

	var next uint64 = 1000000 // names never asked before
	fixed, err := b.fixedRate(ctx, rate, duration, &next)
	if err != nil {
		return err
	}
	var flatRes result
	if flat > 0 {
		if flatRes, err = b.flatOut(ctx, inflight, flat, &next); err != nil {
			return err
		}
	}
	fmt.Printf("\nfleet propagation: 1 resolver -> 3-node NATS JetStream cluster -> 1 agent, %d CPUs\n", runtime.NumCPU())
	fmt.Printf("%-26s %9s %9s %8s %10s %9s %9s %9s %9s\n", "phase", "answers/s", "applied/s", "missing", "answer p50", "p99", "live p50", "p99", "max")
	fixed.print(fmt.Sprintf("fixed %d/s, %s", rate, duration))
	if flat > 0 {
		flatRes.print(fmt.Sprintf("flat out, %d in flight", inflight))
	}
	cpu1 := b.cpu()
	approvals := fixed.answers + flatRes.answers
	fmt.Print("CPU seconds during both phases:")
	for _, name := range cpuOrder {
		fmt.Printf(" %s %.1f", name, float64(cpu1[name]-cpu0[name])/clockTicks)
	}
	fmt.Println()
	if approvals > 0 {
		fmt.Print("CPU per approval:")
		for _, name := range cpuOrder {
			fmt.Printf(" %s %.0fµs", name, float64(cpu1[name]-cpu0[name])/clockTicks/float64(approvals)*1e6)
		}
		fmt.Println()
	}
	if msgs := b.streamMessages() - msgs0; msgs > 0 {
		fmt.Printf("messages stored in JetStream: %d for %d approvals (%.1f approvals a message)\n", msgs, approvals, float64(approvals)/float64(msgs))
	}
	if text, err := scrape(b.res, "127.0.0.1:9153"); err == nil {
		fmt.Print("resolver:")
		for _, name := range []string{"egressd_fleet_published_total", "egressd_fleet_publish_failures_total",
			"egressd_fleet_queued_total", "egressd_fleet_dropped_total"} {
			fmt.Printf(" %s %s", strings.TrimPrefix(name, "egressd_fleet_"), metricValue(text, name))
		}
		fmt.Println()
	}
	if text, err := scrape(b.agent, "127.0.0.1:9153"); err == nil {
		fmt.Printf("agent: applied_total %s, rejected %s\n", metricValue(text, "egressd_fleet_applied_total"), rejected(text))
	}
	fmt.Printf("load average before: %s, after: %s\n", load1, procstat.LoadAverage())
	return nil
}

// scrape reads /metrics at addr in ns.
func scrape(ns netnstest.Namespace, addr string) (string, error) {
	var out []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
		out, err = io.ReadAll(c)
		return err
	})
	return string(out), err
}

// rejected lists the nonzero egressd_fleet_rejected_total samples of text.
func rejected(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "egressd_fleet_rejected_total"); ok && !strings.HasSuffix(v, " 0") {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// metricValue is the value of the unlabelled sample name in text, "?"
// when there is none.
func metricValue(text, name string) string {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "?"
}

// setup makes the namespaces and starts NATS, authd, the resolver and the
// agent, each ready.
func (b *bench) setup() error {
	id := fmt.Sprint(os.Getpid())
	var err error
	if b.res, err = netnstest.Create("egressd-fbench-res-" + id); err != nil {
		return err
	}
	if b.agent, err = netnstest.Create("egressd-fbench-agent-" + id); err != nil {
		return err
	}
	if err := netnstest.Veth(b.res, "eth0", b.agent, "eth0"); err != nil {
		return err
	}
	if err := b.res.AddAddrs("eth0", "10.99.0.1/24", "10.99.0.11/24", "10.99.0.12/24", "10.99.0.13/24"); err != nil {
		return err
	}
	if err := b.agent.AddAddrs("eth0", "10.99.0.2/24"); err != nil {
		return err
	}

	bins := map[string]string{"egressd": "./cmd/egressd", "authd": "./test/bench/authd"}
	for name, pkg := range bins {
		out := filepath.Join(b.work, name)
		if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
		}
		bins[name] = out
	}
	for _, n := range natsproc.ClusterNodes([]string{"10.99.0.11", "10.99.0.12", "10.99.0.13"}) {
		dir := filepath.Join(b.work, n.Name)
		p, err := natsproc.Start(b.res, n, dir)
		if err != nil {
			return err
		}
		b.nats = append(b.nats, p)
	}
	for _, p := range b.nats {
		if err := p.Ready(natsproc.ReadyLimit); err != nil {
			return err
		}
	}
	if err := b.start(b.res, "authd", bins["authd"], "-listen", "127.0.0.4:5300", "-names", "100000000",
		"-cold-from", "0", "-cold-ttl", "1"); err != nil {
		return err
	}
	servers := tomlList(natsproc.URLs(b.nats))
	resolver := fmt.Sprintf(config, "127.0.0.1:53", "egressd_res", "127.0.0.1:9153") +
		fmt.Sprintf("[fleet]\nservers = %s\nnode = \"resolver\"\npublish = [\"bench\"]\n", servers)
	agent := fmt.Sprintf(config, "10.99.0.1:53", "egressd_agent", "127.0.0.1:9153") +
		fmt.Sprintf("[fleet]\nservers = %s\nnode = \"agent\"\nenforce = [\"bench\"]\n", servers)
	for _, c := range []struct {
		ns         netnstest.Namespace
		name, sub  string
		configText string
	}{{b.res, "resolver", "serve", resolver}, {b.agent, "agent", "agent", agent}} {
		path := filepath.Join(b.work, c.name+".toml")
		if err := os.WriteFile(path, []byte(c.configText), 0o644); err != nil {
			return err
		}
		if err := b.start(c.ns, c.name, bins["egressd"], c.sub, "-config", path); err != nil {
			return err
		}
		if err := ready(c.ns, "127.0.0.1:9153"); err != nil {
			return fmt.Errorf("%s: %w (log %s)", c.name, err, filepath.Join(b.work, c.name+".log"))
		}
	}
	return nil
}

// config is both egressd's: listen (the resolver's address, which the
// agent lets DNS through to), table, metrics address. Every h<N>.bench.test
// is allowed; TTL 1 s plus grace 2 s keeps the sets small while addresses
// (131,070 of them) come round again.
const config = `[server]
listen = ["%s"]
clients = ["127.0.0.0/8"]
[upstream]
servers = ["127.0.0.4:5300"]
[cache]
max_ttl = "1s"
[firewall]
backend = "nftables"
table = "%s"
hooks = ["forward"]
grace = "2s"
max_ttl = "60s"
max_elements_per_set = 1048576
max_elements_per_client = 1048576
[log]
queries = "none"
level = "warn"
[metrics]
listen = "%s"
[[group]]
name = "bench"
clients = ["127.0.0.0/8"]
allow = ["*.bench.test"]
default = "deny"
allow_private_answers = true
`

func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (b *bench) start(ns netnstest.Namespace, name, bin string, args ...string) error {
	log, err := os.Create(filepath.Join(b.work, name+".log"))
	if err != nil {
		return err
	}
	cmd := ns.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	b.procs = append(b.procs, cmd)
	return nil
}

// stop ends every process started here, by PID, then removes the
// namespaces.
func (b *bench) stop() {
	for _, cmd := range slices.Backward(b.procs) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	for _, p := range b.nats {
		_ = p.Stop()
	}
	for _, ns := range []netnstest.Namespace{b.agent, b.res} {
		if ns.Name != "" {
			_ = ns.Delete()
		}
	}
}

// ready polls /readyz in ns until it answers 200, for 30 s at most.
func ready(ns netnstest.Namespace, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var status string
		_ = ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			status = string(buf[:n])
			return nil
		})
		if strings.HasPrefix(status, "HTTP/1.0 200") || strings.HasPrefix(status, "HTTP/1.1 200") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("/readyz at %s not 200 within 30s", addr)
}

// monitor records when each element of the agent's table goes live.
func (b *bench) monitor() (func(), error) {
	f, err := os.Open("/run/netns/" + b.agent.Name)
	if err != nil {
		return nil, err
	}
	// A large receive buffer: when the monitor falls behind a burst of
	// element adds and the socket overflows, the monitor ends.
	bigBuffer := func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		})
		return errors.Join(err, serr)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.WithSockOptions(bigBuffer))
	if err != nil {
		f.Close()
		return nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorAction(nftables.MonitorActionNew),
		nftables.WithMonitorObject(nftables.MonitorObjectElements), nftables.WithMonitorEventBuffer(1<<16))
	events, err := conn.AddMonitor(mon)
	if err != nil {
		f.Close()
		return nil, err
	}
	go func() {
		for ev := range events {
			now := time.Now()
			if ev.Error != nil {
				fmt.Printf("element monitor failed (elements after this are counted missing): %v\n", ev.Error)
				continue
			}
			elems, ok := ev.Data.([]nftables.SetElement)
			if !ok {
				continue
			}
			b.mu.Lock()
			for _, e := range elems {
				if a, ok := netip.AddrFromSlice(e.Key); ok && len(e.Key) == 4 {
					b.live[a] = append(b.live[a], now)
				}
			}
			b.mu.Unlock()
		}
	}()
	return func() { mon.Close(); f.Close() }, nil
}

// sample is one answered query.
type sample struct {
	sent, answered time.Time
	addr           netip.Addr
}

type result struct {
	answers, applied, missing int
	// From the first query sent to the last answer read, and to the last
	// element live on the agent.
	answerSpan, liveSpan time.Duration
	answer, live         []time.Duration
}

func (r result) print(name string) {
	perSec := func(n int, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	fmt.Printf("%-26s %9.0f %9.0f %8d %10s %9s %9s %9s %9s\n", name, perSec(r.answers, r.answerSpan), perSec(r.applied, r.liveSpan), r.missing,
		pct(r.answer, 50), pct(r.answer, 99), pct(r.live, 50), pct(r.live, 99), pct(r.live, 100))
}

func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	slices.Sort(d)
	i := (len(d)*p + 99) / 100
	if i > 0 {
		i--
	}
	return d[i].Round(10 * time.Microsecond).String()
}

// client sends queries from sockets inside the resolver's namespace and
// matches answers by ID.
type client struct {
	conns   []*net.UDPConn
	mu      sync.Mutex
	pending map[uint16]pendingQuery
	nextID  uint16
	out     chan sample
}

type pendingQuery struct {
	sent time.Time
	name string
}

func (b *bench) newClient(sockets int) (*client, error) {
	c := &client{pending: map[uint16]pendingQuery{}, out: make(chan sample, 1<<16)}
	for range sockets {
		var conn *net.UDPConn
		err := b.res.Do(func() (err error) {
			conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:53")))
			return err
		})
		if err != nil {
			return nil, err
		}
		_ = conn.SetReadBuffer(4 << 20)
		c.conns = append(c.conns, conn)
		go c.read(conn)
	}
	return c, nil
}

func (c *client) send(n uint64) error {
	m := new(dns.Msg)
	name := fmt.Sprintf("h%d.bench.test.", n)
	m.SetQuestion(name, dns.TypeA)
	c.mu.Lock()
	c.nextID++
	for _, busy := c.pending[c.nextID]; busy; _, busy = c.pending[c.nextID] {
		c.nextID++
	}
	m.Id = c.nextID
	c.pending[m.Id] = pendingQuery{sent: time.Now(), name: name}
	c.mu.Unlock()
	wire, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = c.conns[int(n)%len(c.conns)].Write(wire)
	return err
}

func (c *client) read(conn *net.UDPConn) {
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		m := new(dns.Msg)
		if m.Unpack(buf[:n]) != nil || len(m.Question) != 1 {
			continue
		}
		c.mu.Lock()
		p, ok := c.pending[m.Id]
		if ok && strings.EqualFold(p.name, m.Question[0].Name) {
			delete(c.pending, m.Id)
		}
		c.mu.Unlock()
		if !ok {
			continue
		}
		for _, rr := range m.Answer {
			if a, isA := rr.(*dns.A); isA {
				addr, _ := netip.AddrFromSlice(a.A.To4())
				c.out <- sample{sent: p.sent, answered: now, addr: addr}
				break
			}
		}
	}
}

func (c *client) close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

// fixedRate sends rate new names a second for d, paced every millisecond.
func (b *bench) fixedRate(ctx context.Context, rate int, d time.Duration, next *uint64) (result, error) {
	c, err := b.newClient(8)
	if err != nil {
		return result{}, err
	}
	defer c.close()
	start := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for now := start; now.Sub(start) < d && ctx.Err() == nil; now = <-tick.C {
		due := int(float64(rate) * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			*next++
			if err := c.send(*next); err != nil {
				return result{}, err
			}
		}
	}
	return b.collect(c, start, sent)
}

// flatOut keeps inflight queries outstanding for d.
func (b *bench) flatOut(ctx context.Context, inflight int, d time.Duration, next *uint64) (result, error) {
	c, err := b.newClient(8)
	if err != nil {
		return result{}, err
	}
	defer c.close()
	start := time.Now()
	sent := 0
	var samples []sample
	for range inflight {
		*next++
		if err := c.send(*next); err != nil {
			return result{}, err
		}
		sent++
	}
	for time.Since(start) < d && ctx.Err() == nil {
		select {
		case s := <-c.out:
			samples = append(samples, s)
		case <-time.After(500 * time.Millisecond): // a lost query: top up
		}
		*next++
		if err := c.send(*next); err != nil {
			return result{}, err
		}
		sent++
	}
	return b.finish(start, samples)
}

// collect waits for the answers still due, then measures.
func (b *bench) collect(c *client, start time.Time, sent int) (result, error) {
	var samples []sample
	timeout := time.After(5 * time.Second)
	for len(samples) < sent {
		select {
		case s := <-c.out:
			samples = append(samples, s)
		case <-timeout:
			fmt.Printf("%d of %d queries unanswered\n", sent-len(samples), sent)
			return b.finish(start, samples)
		}
	}
	return b.finish(start, samples)
}

// finish gives the agent up to 2 s to apply what was answered, then
// joins answers and element adds.
func (b *bench) finish(start time.Time, samples []sample) (result, error) {
	r := result{answers: len(samples)}
	deadline := time.Now().Add(2 * time.Second)
	for {
		missing := 0
		b.mu.Lock()
		for _, s := range samples {
			if firstAfter(b.live[s.addr], s.sent).IsZero() {
				missing++
			}
		}
		b.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var lastAnswer, lastLive time.Time
	for _, s := range samples {
		r.answer = append(r.answer, s.answered.Sub(s.sent))
		if s.answered.After(lastAnswer) {
			lastAnswer = s.answered
		}
		t := firstAfter(b.live[s.addr], s.sent)
		if t.IsZero() {
			r.missing++
			continue
		}
		r.applied++
		if t.After(lastLive) {
			lastLive = t
		}
		r.live = append(r.live, max(0, t.Sub(s.answered)))
	}
	r.answerSpan, r.liveSpan = lastAnswer.Sub(start), lastLive.Sub(start)
	return r, nil
}

func firstAfter(ts []time.Time, after time.Time) time.Time {
	for _, t := range ts {
		if !t.Before(after) {
			return t
		}
	}
	return time.Time{}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux).
const clockTicks = 100

var cpuOrder = []string{"resolver", "agent", "nats", "authd"}

// cpu reads the CPU time (user plus system, in clock ticks) each process
// used so far, the three NATS servers added up.
func (b *bench) cpu() map[string]int {
	out := map[string]int{}
	for i, cmd := range b.procs {
		out[[]string{"authd", "resolver", "agent"}[i]] += ticks(cmd.Process.Pid)
	}
	for _, p := range b.nats {
		out["nats"] += ticks(p.PID())
	}
	return out
}

func ticks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	var utime, stime int
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return utime + stime
}

// streamMessages is how many messages the approval stream took so far
// (its last sequence number, as the first server that answers says).
func (b *bench) streamMessages() uint64 {
	for _, p := range b.nats {
		body, err := p.Monitor("/jsz?streams=true")
		if err != nil {
			continue
		}
		var jsz struct {
			Accounts []struct {
				Streams []struct {
					Name  string `json:"name"`
					State struct {
						LastSeq uint64 `json:"last_seq"`
					} `json:"state"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		if json.Unmarshal(body, &jsz) != nil {
			continue
		}
		for _, a := range jsz.Accounts {
			for _, s := range a.Streams {
				if s.Name == fleet.DefaultStream {
					return s.State.LastSeq
				}
			}
		}
	}
	return 0
}
