package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseSamples(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 23
process_resident_memory_bytes 3.1457e+07
egressd_config_reloads_total{result="ok"} 4
egressd_queries_total{decision="allow",group="a b",qtype="A"} 17 1700000000000
`
	s, err := parseSamples(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		series string
		want   float64
		ok     bool
	}{
		{"go_goroutines", 23, true},
		{"process_resident_memory_bytes", 31457000, true},
		{`egressd_config_reloads_total{result="ok"}`, 4, true},
		{`egressd_queries_total{decision="allow",group="a b",qtype="A"}`, 17, true},
		{`egressd_config_reloads_total{result="error"}`, 0, false},
	}
	for _, tt := range tests {
		got, ok := s.get(tt.series)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s = %v, %t; want %v, %t", tt.series, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseSamplesRejectsGarbage(t *testing.T) {
	for _, text := range []string{"go_goroutines\n", "go_goroutines many\n", `x{a="b"}` + "\n"} {
		if _, err := parseSamples(strings.NewReader(text)); err == nil {
			t.Errorf("parseSamples(%q) succeeded", text)
		}
	}
}

func reply(rcode int, rrs ...string) *dns.Msg {
	m := new(dns.Msg)
	m.Response = true
	m.Rcode = rcode
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func TestExpected(t *testing.T) {
	a := "h5.bench.test. 60 IN A 198.18.0.6"
	aaaa := "h5.bench.test. 60 IN AAAA 2001:db8::5"
	tests := []struct {
		kind  queryKind
		qtype uint16
		reply *dns.Msg
		want  bool
	}{
		{kindHot, dns.TypeA, reply(dns.RcodeSuccess, a), true},
		{kindHot, dns.TypeA, reply(dns.RcodeSuccess), false}, // NODATA is not an allowed answer
		{kindHot, dns.TypeA, reply(dns.RcodeServerFailure), false},
		{kindHotAAAA, dns.TypeAAAA, reply(dns.RcodeSuccess, aaaa), true},
		{kindHotAAAA, dns.TypeAAAA, reply(dns.RcodeSuccess, a), false},
		{kindCold, dns.TypeA, reply(dns.RcodeNameError), false},
		{kindDenied, dns.TypeA, reply(dns.RcodeNameError), true},
		{kindDenied, dns.TypeA, reply(dns.RcodeSuccess, a), false},
		{kindJunkOut, dns.TypeA, reply(dns.RcodeRefused), false},
		{kindJunkIn, dns.TypeA, reply(dns.RcodeNameError), true},
		{kindJunkIn, dns.TypeA, reply(dns.RcodeServerFailure), false},
		{kindFlip, dns.TypeA, reply(dns.RcodeNameError), true},
		{kindFlip, dns.TypeA, reply(dns.RcodeSuccess, a), true},
	}
	for _, tt := range tests {
		if got := expected(tt.kind, tt.qtype, tt.reply); got != tt.want {
			t.Errorf("expected(%s, %s, %s) = %t, want %t", kindNames[tt.kind], dns.TypeToString[tt.qtype],
				rcodeName(tt.reply.Rcode), got, tt.want)
		}
	}
}

// The mix follows kindWeights, and each kind's names land where the
// policy and the zone put them.
func TestPickMix(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 100000
	var counts [numKinds]int
	for i := 0; i < n; i++ {
		j := pick(r)
		counts[j.kind]++
		if _, ok := dns.IsDomainName(j.name); !ok || !dns.IsFqdn(j.name) {
			t.Fatalf("%s: %q is not a fully qualified name", kindNames[j.kind], j.name)
		}
		inZone := dns.IsSubDomain(zoneOrigin, j.name)
		switch j.kind {
		case kindHot, kindHotAAAA, kindCold, kindJunkIn:
			if !inZone || j.name == flipName {
				t.Fatalf("%s: %q should be an allowed name other than %s", kindNames[j.kind], j.name, flipName)
			}
		case kindDenied:
			if !dns.IsSubDomain(blockedZone, j.name) {
				t.Fatalf("denied: %q not under %s", j.name, blockedZone)
			}
		case kindJunkOut:
			if inZone || dns.IsSubDomain(blockedZone, j.name) {
				t.Fatalf("junk-outside: %q matches a rule", j.name)
			}
		}
		if (j.qtype == dns.TypeAAAA) != (j.kind == kindHotAAAA) {
			t.Fatalf("%s: qtype %s", kindNames[j.kind], dns.TypeToString[j.qtype])
		}
	}
	for k, c := range counts {
		want := float64(kindWeights[k]) / 100
		if got := float64(c) / n; got < want-0.01 || got > want+0.01 {
			t.Errorf("%s: share %.3f, want %.2f", kindNames[k], got, want)
		}
	}
}

func TestConfigVariants(t *testing.T) {
	ns := &topology{namespaces: true, dns: netip.MustParseAddrPort("10.201.1.1:53"),
		upstreams:  []netip.AddrPort{netip.MustParseAddrPort("10.201.2.2:53"), netip.MustParseAddrPort("10.201.2.3:53")},
		metrics:    netip.MustParseAddrPort("127.0.0.1:9153"),
		clientNets: []string{"10.201.1.0/24"}}
	lo := &topology{dns: netip.MustParseAddrPort("127.0.0.1:5399"), upstreams: ns.upstreams, metrics: ns.metrics,
		clientNets: []string{"127.0.0.0/8"}}
	tests := []struct {
		topo    *topology
		variant policyVariant
		has     []string
		hasNot  []string
	}{
		{ns, variantA, []string{`backend = "nftables"`, `servers = ["10.201.2.2:53", "10.201.2.3:53"]`, `deny = ["*.blocked.test"]`, `action = "nxdomain"`},
			[]string{`"h1.bench.test"`}},
		{ns, variantB, []string{`deny = ["*.blocked.test", "h1.bench.test"]`, `action = "nxdomain"`}, nil},
		{ns, variantBroken, []string{`action = "teleport"`}, nil},
		{lo, variantA, []string{`backend = "none"`, `listen = ["127.0.0.1:5399"]`, `clients = ["127.0.0.0/8"]`}, []string{"nftables"}},
	}
	for _, tt := range tests {
		text := configParams{topo: tt.topo, queryLog: "/tmp/q.jsonl", variant: tt.variant}.render()
		for _, s := range tt.has {
			if !strings.Contains(text, s) {
				t.Errorf("variant %s: %q missing from\n%s", tt.variant, s, text)
			}
		}
		for _, s := range tt.hasNot {
			if strings.Contains(text, s) {
				t.Errorf("variant %s: %q present in\n%s", tt.variant, s, text)
			}
		}
	}
	if variantA.flipAllowed() == variantB.flipAllowed() {
		t.Error("configs A and B must differ on the flip name")
	}
}

func TestMatches(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("h5.bench.test.", dns.TypeA)
	ok := q.Copy()
	ok.Response = true
	upper := ok.Copy()
	upper.Question[0].Name = "H5.Bench.Test."
	otherID := ok.Copy()
	otherID.Id++
	otherType := ok.Copy()
	otherType.Question[0].Qtype = dns.TypeAAAA
	notReply := q.Copy()
	tests := []struct {
		name string
		r    *dns.Msg
		want bool
	}{
		{"same", ok, true},
		{"case differs", upper, true},
		{"other id", otherID, false},
		{"other type", otherType, false},
		{"not a reply", notReply, false},
	}
	for _, tt := range tests {
		if got := matches(q, tt.r); got != tt.want {
			t.Errorf("%s: matches = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestLatencyBucket(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{time.Millisecond, 0}, {10 * time.Millisecond, 0}, {11 * time.Millisecond, 1},
		{400 * time.Millisecond, 2}, {time.Second, 3}, {3 * time.Second, 4},
	}
	for _, tt := range tests {
		if got := latencyBucket(tt.d); got != tt.want {
			t.Errorf("latencyBucket(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestBuildChecks(t *testing.T) {
	o := options{unanswered: 0, wrong: 0, notSentPct: 5, memoryLimit: 64 << 20, sampleEvery: 50}
	const image = 20 << 20
	bound := float64(rssBound(o.memoryLimit, image, 0)) // 88 MiB
	healthy := func() (summary, checkInputs) {
		l := newLoadStats()
		l.kinds[kindHot] = kindStats{sent: 100, answered: 100, rcodes: map[int]uint64{0: 100}}
		s := summary{load: l, flaps: 3, setPassed: 2,
			reloads: []reloadResult{{variant: variantB, ok: true}, {variant: variantBroken, ok: true}},
			mon:     monitorFigures{havePre: true, preGoroutines: 20, haveBase: true, baseGoroutines: 30, baseRSS: 30 << 20, peakRSS: 50 << 20, lastGoroutines: 25, lastRSS: 40 << 20}}
		return s, checkInputs{alive: true, pid: 7, cleanExit: true, image: image}
	}
	tests := []struct {
		name   string
		change func(*summary, *checkInputs)
		fail   string // the one check that must fail; "" for none
	}{
		{"healthy", func(*summary, *checkInputs) {}, ""},
		{"died", func(_ *summary, in *checkInputs) { in.alive = false }, "egressd stayed up"},
		{"unanswered", func(s *summary, _ *checkInputs) { s.load.kinds[kindHot].unanswered = 1 }, "every query answered"},
		{"servfail", func(s *summary, _ *checkInputs) { s.load.kinds[kindCold].wrong = 1 }, "answers follow the policy"},
		// The failure seen on a busy machine: idle UDP workers from the load
		// far above the warm-up figure, within what egressd may hold.
		{"many goroutines within the limits", func(s *summary, _ *checkInputs) { s.mon.lastGoroutines = 20 + soakTCPMaxConns + 2 }, ""},
		{"goroutine leak", func(s *summary, _ *checkInputs) { s.mon.lastGoroutines = 20 + soakTCPMaxConns + 3 }, "goroutines bounded"},
		{"no pre-load figure", func(s *summary, _ *checkInputs) { s.mon.havePre = false }, "goroutines bounded"},
		{"peak RSS at the bound", func(s *summary, _ *checkInputs) { s.mon.peakRSS = bound }, ""},
		{"peak RSS past the bound", func(s *summary, _ *checkInputs) { s.mon.peakRSS = bound + 1 }, "RSS bounded"},
		{"mapped lists raise the bound", func(s *summary, _ *checkInputs) { s.mon.peakRSS, s.mon.peakMapped = bound+(8<<20), 8<<20 }, ""},
		{"binary unreadable", func(_ *summary, in *checkInputs) { in.imageErr = errors.New("no such file") }, "RSS bounded"},
		{"set miss", func(s *summary, _ *checkInputs) { s.setFailed = 1 }, "answers in nftables set"},
		{"no set sample", func(s *summary, _ *checkInputs) { s.setPassed = 0 }, "answers in nftables set"},
		{"broken config taken", func(s *summary, _ *checkInputs) { s.reloads[1].ok = false }, "config reloads"},
		{"upstream restart failed", func(_ *summary, in *checkInputs) { in.flapErrs = []string{"x"} }, "upstream flapping"},
		{"not delivered", func(s *summary, _ *checkInputs) { s.load.notSent = 6 }, "load was delivered"},
	}
	for _, tt := range tests {
		s, in := healthy()
		tt.change(&s, &in)
		for _, c := range buildChecks(o, s, in) {
			wantFail := c.name == tt.fail
			if (c.status == "FAIL") != wantFail {
				t.Errorf("%s: %s is %s (%s)", tt.name, c.name, c.status, c.figures)
			}
		}
	}
}

func TestMergeAndTotal(t *testing.T) {
	worker := func(sent, answered, wrong uint64, rcode int) *loadStats {
		s := newLoadStats()
		s.kinds[kindHot] = kindStats{sent: sent, answered: answered, wrong: wrong, rcodes: map[int]uint64{rcode: answered}}
		s.kinds[kindDenied] = kindStats{sent: 1, unanswered: 1, retried: 1, rcodes: map[int]uint64{}}
		s.udp = sent
		return s
	}
	all := newLoadStats()
	all.merge(worker(10, 9, 1, dns.RcodeSuccess))
	all.merge(worker(5, 5, 0, dns.RcodeServerFailure))

	hot := all.kinds[kindHot]
	if hot.sent != 15 || hot.answered != 14 || hot.wrong != 1 {
		t.Errorf("hot after merge: sent %d answered %d wrong %d, want 15 14 1", hot.sent, hot.answered, hot.wrong)
	}
	if hot.rcodes[dns.RcodeSuccess] != 9 || hot.rcodes[dns.RcodeServerFailure] != 5 {
		t.Errorf("hot rcodes after merge: %v", hot.rcodes)
	}
	if all.udp != 15 {
		t.Errorf("udp after merge: %d, want 15", all.udp)
	}
	total := all.total()
	want := kindStats{sent: 17, answered: 14, retried: 2, unanswered: 2, wrong: 1}
	if total.sent != want.sent || total.answered != want.answered || total.retried != want.retried ||
		total.unanswered != want.unanswered || total.wrong != want.wrong {
		t.Errorf("total = %+v, want counts of %+v", total, want)
	}
	if total.rcodes[dns.RcodeSuccess] != 9 || total.rcodes[dns.RcodeServerFailure] != 5 {
		t.Errorf("total rcodes: %v", total.rcodes)
	}
}

func TestEnvOr(t *testing.T) {
	tests := []struct {
		name, value string
		want        time.Duration
		wantErr     bool
	}{
		{name: "unset", value: "", want: time.Minute},
		{name: "set", value: "20s", want: 20 * time.Second},
		{name: "malformed", value: "soon", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOAK_TEST_ENV_OR", tt.value)
			got, err := envOr("SOAK_TEST_ENV_OR", time.Minute, time.ParseDuration)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "SOAK_TEST_ENV_OR") {
					t.Fatalf("error %v, want one naming the variable", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// The goroutine bound is the pre-load figure plus what the soak's config
// lets egressd hold, and the config really sets that limit.
func TestGoroutineBoundFollowsConfig(t *testing.T) {
	if got, want := goroutineBound(40, 16), 40.0+16*goroutinesPerTCPConn+closingMetricsConns*metricsConnGoroutines; got != want {
		t.Errorf("goroutineBound(40, 16) = %v, want %v", got, want)
	}
	if goroutineBound(40, 32) <= goroutineBound(40, 16) {
		t.Error("the bound does not grow with tcp_max_conns")
	}
	topo := &topology{dns: netip.MustParseAddrPort("10.201.1.1:53"), metrics: netip.MustParseAddrPort("127.0.0.1:9153"),
		clientNets: []string{"10.201.1.0/24"}, upstreams: []netip.AddrPort{netip.MustParseAddrPort("10.201.2.2:53")}}
	text := configParams{topo: topo, queryLog: "none", variant: variantA}.render()
	for _, want := range []string{fmt.Sprintf("tcp_max_conns = %d\n", soakTCPMaxConns), fmt.Sprintf("timeout = %q\n", soakUpstreamTimeout.String())} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	if d := settleDeadline(time.Second, 2); d < udpWorkerIdle+2*time.Second {
		t.Errorf("settle deadline %s ends before idle UDP workers must have ended", d)
	}
}

// The end figure waits for goroutines egressd only keeps a while: the
// failure "end 102 < 90 (warm-up 40 + 50)" was idle UDP workers sampled
// 3 s after the load, before their idle timeout. settle samples until the
// figure is within the bound, and gives up only at the deadline.
func TestSettleWaitsForIdleWorkers(t *testing.T) {
	tests := []struct {
		name     string
		figures  []int // go_goroutines at successive scrapes; the last repeats
		bound    float64
		within   bool
		minCalls int
	}{
		{"workers end", []int{40, 102, 95, 41}, 58, true, 4},
		{"already idle", []int{40, 45}, 58, true, 2},
		{"leak never settles", []int{40, 102, 99}, 58, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				i := min(int(calls.Add(1))-1, len(tt.figures)-1)
				fmt.Fprintf(w, "go_goroutines %d\nprocess_resident_memory_bytes 1e+07\n", tt.figures[i])
			}))
			defer srv.Close()
			m := &monitor{scraper: &scraper{url: srv.URL, client: srv.Client()}, start: time.Now()}
			if err := m.sample(); err != nil { // the pre-load figure
				t.Fatal(err)
			}
			if _, err := m.settle(tt.bound, 2*time.Second); err != nil {
				t.Fatal(err)
			}
			f := m.figures()
			if f.preGoroutines != float64(tt.figures[0]) {
				t.Errorf("pre-load %v, want %d", f.preGoroutines, tt.figures[0])
			}
			if (f.lastGoroutines <= tt.bound) != tt.within {
				t.Errorf("end %v, bound %v: within %v, want %v", f.lastGoroutines, tt.bound, !tt.within, tt.within)
			}
			if n := int(calls.Load()); n < tt.minCalls {
				t.Errorf("%d scrapes, want at least %d", n, tt.minCalls)
			}
		})
	}
}
