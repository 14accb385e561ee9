// Command soak runs egressd under mixed DNS load for a bounded time while
// one upstream flaps and the config is reloaded, then checks that egressd
// stayed up, answered everything, did not grow, and had every sampled
// answer's addresses in its nftables set when the client got the answer.
//
// As root it builds its own network namespaces (client, gateway running
// egressd with the nftables backend on the forward hook, internet with two
// authoritative upstreams); otherwise it runs on loopback with the
// firewall backend "none" and says so. See README.md; test/soak/run builds
// the binaries and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
	"github.com/egressd/egressd/internal/procstat"
	"golang.org/x/sys/unix"
)

type options struct {
	duration    time.Duration
	warmup      time.Duration
	qps         int
	maxQueries  uint64
	flapEvery   time.Duration
	reloadEvery time.Duration
	sampleEvery uint64
	unanswered  uint64
	notSentPct  float64
	workers     int
	wrong       uint64
	memoryLimit uint64
	egressdBin  string
	authdBin    string
	pidFile     string
	keep        bool
	loopback    bool
	id          string
}

func parseOptions() (options, error) {
	var o options
	var err error
	durationDefault, err := envOr("SOAK_DURATION", 3*time.Minute, time.ParseDuration)
	if err != nil {
		return o, err
	}
	qpsDefault, err := envOr("SOAK_QPS", 2000, strconv.Atoi)
	if err != nil {
		return o, err
	}
	flag.DurationVar(&o.duration, "duration", durationDefault, "how long the load runs (env SOAK_DURATION)")
	flag.DurationVar(&o.warmup, "warmup", 0, "time before the goroutine and RSS baseline is taken (default: a sixth of -duration, 5s to 30s)")
	flag.IntVar(&o.qps, "qps", qpsDefault, "queries per second, all kinds together (env SOAK_QPS)")
	flag.Uint64Var(&o.maxQueries, "max-queries", 0, "upper bound on queries sent (default: 1.1 × qps × duration)")
	flag.DurationVar(&o.flapEvery, "flap-every", 10*time.Second, "the primary upstream is stopped this often, and restarted half this later (default: shorter for runs under 3 flaps)")
	flag.DurationVar(&o.reloadEvery, "reload-every", 15*time.Second, "SIGHUP interval (default: shorter for runs under 4 reloads)")
	flag.Uint64Var(&o.sampleEvery, "sample-every", 50, "check one in N allowed answers against the nftables set")
	flag.Uint64Var(&o.unanswered, "unanswered-budget", 0, "queries allowed to stay unanswered after one retry")
	flag.Float64Var(&o.notSentPct, "not-sent-limit", 5, "percent of the load that may go unsent because every worker waited on egressd")
	flag.IntVar(&o.workers, "workers", 512, "UDP client sockets, one query in flight each (plus 8 TCP connections)")
	flag.Uint64Var(&o.wrong, "wrong-budget", 0, "answers allowed to differ from what the policy promises (SERVFAIL, wrong rcode)")
	flag.Uint64Var(&o.memoryLimit, "memory-limit", 96<<20, "egressd's [server] memory_limit in bytes; peak RSS must stay within it plus the binary's image (see README)")
	flag.StringVar(&o.egressdBin, "egressd", os.Getenv("SOAK_EGRESSD"), "egressd binary (env SOAK_EGRESSD)")
	flag.StringVar(&o.authdBin, "authd", os.Getenv("SOAK_AUTHD"), "test/bench/authd binary (env SOAK_AUTHD)")
	flag.StringVar(&o.pidFile, "pidfile", "", "append \"PID NAME\" of every started program here")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, logs) even when every check passes")
	flag.StringVar(&o.id, "id", "", "namespace names are soak-ID-ROLE (default: random)")
	flag.BoolVar(&o.loopback, "loopback", os.Getenv("SOAK_LOOPBACK") == "1", "use loopback mode even as root (env SOAK_LOOPBACK=1)")
	flag.Parse()
	switch {
	case o.egressdBin == "" || o.authdBin == "":
		return o, errors.New("-egressd and -authd are required (test/soak/run builds and passes them)")
	case o.memoryLimit < 16<<20:
		return o, errors.New("-memory-limit must be at least 16777216, as egressd's memory_limit")
	case o.duration <= 0 || o.qps <= 0 || o.sampleEvery == 0 || o.workers <= 0:
		return o, errors.New("-duration, -qps, -workers and -sample-every must be positive")
	case o.flapEvery < 2*time.Second || o.reloadEvery < 2*time.Second:
		return o, errors.New("-flap-every and -reload-every must be at least 2s")
	}
	// A short run still sees valid and broken reloads and a few flaps,
	// unless the intervals were set explicitly.
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["reload-every"] && o.duration < 4*o.reloadEvery {
		o.reloadEvery = max(o.duration/4, 2*time.Second)
	}
	if !set["flap-every"] && o.duration < 3*o.flapEvery {
		o.flapEvery = max(o.duration/3, 2*time.Second)
	}
	if o.warmup == 0 {
		o.warmup = min(max(o.duration/6, 5*time.Second), 30*time.Second)
	}
	if o.maxQueries == 0 {
		o.maxQueries = uint64(o.duration.Seconds()*float64(o.qps)*1.1) + 1
	}
	return o, nil
}

// envOr parses the environment variable key, or returns def when it is
// unset or empty.
func envOr[T any](key string, def T, parse func(string) (T, error)) (T, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	parsed, err := parse(v)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", key, err)
	}
	return parsed, nil
}

func main() {
	os.Exit(soak())
}

func soak() int {
	o, err := parseOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pidFile = o.pidFile

	workDir, err := os.MkdirTemp("", "egressd-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	code := soakIn(ctx, o, workDir)
	if code != 1 && !o.keep {
		os.RemoveAll(workDir)
	} else {
		fmt.Printf("\nwork directory kept: %s (configs, egressd.log, authd*.log, queries.jsonl)\n", workDir)
	}
	return code
}

// soakIn runs the whole soak; everything it starts is stopped and every
// namespace it made deleted before it returns, also on Ctrl-C.
func soakIn(ctx context.Context, o options, workDir string) int {
	var topo *topology
	var err error
	mode := "network namespaces, firewall backend nftables"
	problems := netnstest.Missing()
	if o.loopback {
		problems = append(problems, "loopback mode asked for")
	}
	if len(problems) == 0 {
		id := o.id
		if id == "" {
			id = netnstest.RandomID()
		}
		topo, err = buildNamespaces(id)
	} else {
		mode = "LOOPBACK, firewall backend none (" + strings.Join(problems, "; ") + ")"
		topo, err = buildLoopback()
	}
	if topo != nil {
		defer func() {
			for _, e := range topo.teardown() {
				fmt.Fprintln(os.Stderr, "soak: teardown:", e)
			}
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: topology:", err)
		return 1
	}
	fmt.Printf("egressd soak: %s\n  %s at %d qps, upstream flap every %s, reload every %s, warm-up %s\n",
		mode, o.duration, o.qps, o.flapEvery, o.reloadEvery, o.warmup)
	if !topo.namespaces {
		fmt.Println("  NOTE: loopback mode cannot check nftables sets; run as root for the full soak")
	}

	ups := &upstreams{ns: topo.internet, addrs: topo.upstreams, bin: o.authdBin, logDir: workDir}
	defer ups.stopAll()
	if err := ups.startAll(); err != nil {
		fmt.Fprintln(os.Stderr, "soak: upstreams:", err)
		return 1
	}

	params := configParams{topo: topo, queryLog: filepath.Join(workDir, "queries.jsonl"), variant: variantA, memoryLimit: o.memoryLimit}
	configPath := filepath.Join(workDir, "egressd.toml")
	if err := writeConfig(configPath, params); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	egressd, err := startProc(topo.gateway, "egressd", workDir, o.egressdBin, "serve", "-config", configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	egressdPID := egressd.pid
	stopped := false
	stopEgressd := func() bool {
		stopped = true
		return !egressd.stop(10 * time.Second)
	}
	defer func() {
		if !stopped {
			stopEgressd()
		}
	}()
	if err := waitAnswering(topo.client, topo.dns, flipName, egressd, 20*time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "soak: egressd did not come up: %v (log %s)\n", err, egressd.log)
		return 1
	}
	fmt.Printf("  egressd pid %d serving on %s, upstreams %v\n", egressdPID, topo.dns, topo.upstreams)

	loadBefore := procstat.LoadAverage()
	start := time.Now()
	var checker *setChecker
	if topo.namespaces {
		if checker, err = newSetChecker(topo.gateway, tableName, groupName, start); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			return 1
		}
		defer checker.close()
		if err := checker.selfTest(topo.client, topo.dns); err != nil {
			fmt.Fprintln(os.Stderr, "soak: set checker:", err)
			return 1
		}
	}

	ups.mu.Lock()
	ups.t0 = start
	ups.mu.Unlock()
	scr := newScraper(topo.gateway, topo.metrics)
	mon := &monitor{scraper: scr, start: start, warmup: o.warmup}
	if err := mon.sample(); err != nil {
		fmt.Fprintln(os.Stderr, "soak: metrics:", err)
		return 1
	}
	rel := &reloader{egressd: egressd, path: configPath, params: params, scraper: scr, start: start,
		probe: newExchanger(topo.client, topo.dns, "udp")}
	live := &liveCounters{}

	churnCtx, stopChurn := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { ups.flap(churnCtx, o.flapEvery); done <- struct{}{} }()
	go func() { rel.loop(churnCtx, o.reloadEvery); done <- struct{}{} }()
	go func() {
		mon.loop(churnCtx, 2*time.Second, 10*time.Second, func() string {
			flaps, _ := ups.flapCount()
			return fmt.Sprintf("sent=%d answered=%d unanswered=%d flaps=%d reloads=%d",
				live.sent.Load(), live.answered.Load(), live.unanswered.Load(), flaps, len(rel.snapshot()))
		})
		done <- struct{}{}
	}()

	cfg := loadConfig{qps: o.qps, duration: o.duration, maxQueries: o.maxQueries, udpWorkers: o.workers, tcpWorkers: 8,
		tcpPercent: 5, timeout: 3 * time.Second, sampleEvery: o.sampleEvery, start: start}
	load := runLoad(ctx, cfg, topo, checker, live)
	elapsed := time.Since(start).Round(time.Second)
	stopChurn()
	for range 3 {
		<-done
	}
	if ctx.Err() != nil {
		fmt.Println("\ninterrupted: stopping everything; no verdict")
		return 130
	}

	// The end figures wait until egressd holds no more goroutines than its
	// limits allow once idle (see goroutineBound), or the deadline passes.
	pre := mon.figures().preGoroutines
	settled, endErr := mon.settle(goroutineBound(pre, soakTCPMaxConns), settleDeadline(soakUpstreamTimeout, len(topo.upstreams)))
	alive := egressd.running() && egressd.pid == egressdPID
	exitState := egressd.exitErr()
	cleanExit := stopEgressd()

	flaps, flapErrs := ups.flapCount()
	s := summary{soakCPU: ownCPUSeconds(), seconds: time.Since(start).Seconds(), loadavg: fmt.Sprintf("%s at the start, %s at the end, %d CPUs", loadBefore, procstat.LoadAverage(), runtime.NumCPU()), mode: mode, elapsed: elapsed.String(), load: load, reloads: rel.snapshot(), flaps: flaps, mon: mon.figures(), setSkip: checker == nil}
	s.mon.settled = settled
	var setExamples []string
	if checker != nil {
		s.setPassed, s.setFailed, setExamples = checker.counts()
	}
	printSummary(os.Stdout, s)
	image, imageErr := imageBytes(o.egressdBin)
	checks := buildChecks(o, s, checkInputs{alive: alive, pid: egressdPID, exit: exitState, cleanExit: cleanExit,
		endScrapeErr: endErr, flapErrs: flapErrs, setExamples: setExamples, image: image, imageErr: imageErr})
	failed := printChecks(os.Stdout, checks)
	printList(os.Stdout, "First unanswered or unexpected replies:", load.examples)
	printList(os.Stdout, "First queries that needed a retry:", load.retries)
	printList(os.Stdout, "Upstream flaps:", ups.eventLog())
	skipped := countSkipped(checks)
	fmt.Printf("\n%d passed, %d failed, %d skipped\n", len(checks)-failed-skipped, failed, skipped)
	if failed > 0 {
		return 1
	}
	return 0
}

func printList(w io.Writer, title string, lines []string) {
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\n"+title)
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}

// ownCPUSeconds is the user and system time the soak has used.
func ownCPUSeconds() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func countSkipped(cs []check) int {
	n := 0
	for _, c := range cs {
		if c.status == "SKIP" {
			n++
		}
	}
	return n
}
