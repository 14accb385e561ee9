package dropjoin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/nflog"
	"github.com/egressd/egressd/querylog"
	"golang.org/x/sys/unix"
)

func TestParseDest(t *testing.T) {
	tests := []struct {
		in      string
		want    Drop
		wantErr bool
	}{
		{"192.0.2.7", Drop{Dst: dst, Proto: unix.IPPROTO_TCP}, false},
		{"192.0.2.7:22", Drop{Dst: dst, Proto: unix.IPPROTO_TCP, Port: 22}, false},
		{"192.0.2.7:53/udp", Drop{Dst: dst, Proto: unix.IPPROTO_UDP, Port: 53}, false},
		{"[2001:db8::9]:443/tcp", Drop{Dst: netip.MustParseAddr("2001:db8::9"), Proto: unix.IPPROTO_TCP, Port: 443}, false},
		{"2001:db8::9", Drop{Dst: netip.MustParseAddr("2001:db8::9"), Proto: unix.IPPROTO_TCP}, false},
		{"192.0.2.7:22/sctp", Drop{}, true},
		{"example.com:22", Drop{}, true},
	}
	for _, tc := range tests {
		got, err := ParseDest(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseDest(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && got != tc.want {
			t.Errorf("ParseDest(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestJoinerHandle: a drop event becomes one drop line and one count;
// events of audit rules are ignored; a full queue counts events as lost.
func TestJoinerHandle(t *testing.T) {
	x := NewIndex(10, time.Hour)
	x.Add(with(answerA, func(a *Answer) { a.Ports = []Port{https} }))
	j := NewJoiner(x, 1)
	j.GroupOf = func(a netip.Addr) string {
		if a == alice {
			return "lan"
		}
		return ""
	}
	var lines []*querylog.Entry
	counts := map[string]int{}
	j.Log = func(e *querylog.Entry) { lines = append(lines, e) }
	j.Count = func(group, reason string) { counts[group+"/"+reason]++ }

	ev := nflog.Event{Prefix: "egressd drop lan: ", Time: t0.Add(time.Second), Src: alice, Dst: dst, Proto: unix.IPPROTO_TCP, Sport: 40000, Dport: 22}
	j.Handle(ev)
	j.Handle(nflog.Event{Prefix: "egressd would_deny lan: ", Time: t0, Src: alice, Dst: dst, Proto: unix.IPPROTO_TCP, Dport: 22})
	unlisted := ev
	unlisted.Prefix = "egressd drop unlisted: "
	j.Handle(unlisted) // alice's address, but the base chain says no group
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %+v", len(lines), lines)
	}
	e := lines[0]
	want := querylog.Drop{Destination: "192.0.2.7", Protocol: "tcp", Port: 22, Reason: OtherPorts, ApprovedPorts: []string{"443/tcp"},
		AnswerTime: "2026-12-05T00:00:00Z", Expiry: "2026-12-05T00:01:30Z"}
	if e.Decision != querylog.DecisionDrop || e.Client != "10.1.0.5" || e.Group != "lan" || e.QName != "api.example.com" || e.Drop == nil {
		t.Fatalf("line = %+v", e)
	}
	if got, _ := json.Marshal(e.Drop); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("drop = %s, want %s", got, must(json.Marshal(want)))
	}
	if lines[1].Drop.Reason != UnlistedSource || lines[1].Group != "" {
		t.Errorf("unlisted line = %+v %+v", lines[1], lines[1].Drop)
	}
	if counts["lan/"+OtherPorts] != 1 || counts["/"+UnlistedSource] != 1 || len(counts) != 2 {
		t.Errorf("counts = %v", counts)
	}

	j.Enqueue(ev)
	j.Enqueue(ev) // the queue holds one
	if j.Lost() != 1 {
		t.Errorf("Lost = %d, want 1", j.Lost())
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestWhyHandler(t *testing.T) {
	x := NewIndex(10, time.Hour)
	a := answerA
	a.Time, a.Expiry = time.Now(), time.Now().Add(time.Hour)
	a.Ports = []Port{https}
	x.Add(a)
	j := NewJoiner(x, 1)
	j.GroupOf = func(netip.Addr) string { return "lan" }
	h := j.WhyHandler(func(client netip.Addr, name string) string { return "allow (rule " + name + ":443)" })
	tests := []struct {
		query  string
		status int
		want   string
	}{
		{"client=10.1.0.5&dest=192.0.2.7:22", 200, "api.example.com is approved only on 443/tcp"},
		{"client=10.1.0.5&dest=192.0.2.8:22", 200, NeverResolved},
		{"client=nope&dest=192.0.2.7:22", 400, "client"},
		{"client=10.1.0.5&dest=192.0.2.7:22/icmp", 400, "dest"},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/why?"+tc.query, nil))
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.query, rec.Code, tc.status, rec.Body)
			continue
		}
		body := rec.Body.String()
		if tc.status == 200 {
			var w Why
			if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil {
				t.Fatal(err)
			}
			body = FormatWhy(w)
		}
		if !strings.Contains(body, tc.want) {
			t.Errorf("%s: %q lacks %q", tc.query, body, tc.want)
		}
	}
}

// fakeLog keeps what it is asked to keep.
type fakeLog struct {
	keep    map[string]bool
	written []*querylog.Entry
}

func (f *fakeLog) Keep(decision string) bool { return f.keep[decision] }
func (f *fakeLog) Write(e *querylog.Entry)   { f.written = append(f.written, e) }

// TestDenialLog: denied queries pass through the query log wrapper into
// the index even when the query log keeps nothing, entries the log keeps
// still reach it, and a drop after the denied query is name_denied in the
// drop line and from /why, with the policy's decision now.
func TestDenialLog(t *testing.T) {
	const rule = "deny *.tracker.example"
	for _, keep := range []map[string]bool{nil, {querylog.DecisionDeny: true, querylog.DecisionAllow: true}} {
		x := NewIndex(10, time.Hour)
		now := time.Now()
		// Another group resolved the tracker to dst.
		x.Add(Answer{Time: now, Expiry: now.Add(time.Hour), Client: carol, Group: "office", Name: "ads.tracker.example.", Addrs: []netip.Addr{dst}})
		inner := &fakeLog{keep: keep}
		l := &DenialLog{QueryLogger: inner, Index: x}
		if !l.Keep(querylog.DecisionDeny) {
			t.Fatalf("keep %v: Keep(deny) = false: denied queries would never be built", keep)
		}
		if l.Keep(querylog.DecisionAllow) != keep[querylog.DecisionAllow] {
			t.Errorf("keep %v: Keep(allow) is not the query log's", keep)
		}
		l.Write(&querylog.Entry{Time: now, Client: "10.1.0.5", QName: "ads.tracker.example.", Decision: querylog.DecisionDeny, Rule: rule})
		if x.Denials() != 1 {
			t.Errorf("keep %v: %d denials recorded, want 1", keep, x.Denials())
		}
		want := 0
		if keep[querylog.DecisionDeny] {
			want = 1
		}
		if len(inner.written) != want {
			t.Errorf("keep %v: the query log got %d entries, want %d", keep, len(inner.written), want)
		}

		j := NewJoiner(x, 1)
		j.GroupOf = func(netip.Addr) string { return "lan" }
		var lines []*querylog.Entry
		j.Log = func(e *querylog.Entry) { lines = append(lines, e) }
		j.Handle(nflog.Event{Prefix: "egressd drop lan: ", Time: now.Add(time.Second), Src: alice, Dst: dst, Proto: unix.IPPROTO_TCP, Dport: 443})
		if len(lines) != 1 || lines[0].Drop.Reason != NameDenied || lines[0].Rule != rule || lines[0].QName != "ads.tracker.example." {
			t.Fatalf("keep %v: drop lines %+v, want one name_denied by %q", keep, lines, rule)
		}
	}

	// Without the denied query, the policy decides: /why prints the name,
	// the rule, and the policy now.
	x := NewIndex(10, time.Hour)
	now := time.Now()
	x.Add(Answer{Time: now, Expiry: now.Add(time.Hour), Client: carol, Group: "office", Name: "ads.tracker.example.", Addrs: []netip.Addr{dst}})
	j := NewJoiner(x, 1)
	j.GroupOf = func(netip.Addr) string { return "lan" }
	j.Policy = func(netip.Addr, string) (string, bool) { return rule, true }
	h := j.WhyHandler(func(client netip.Addr, name string) string { return "deny (rule " + rule + ")" })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/why?client=10.1.0.5&dest=192.0.2.7:443", nil))
	var w Why
	if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil {
		t.Fatal(err, rec.Body)
	}
	out := FormatWhy(w)
	for _, want := range []string{": name_denied", "ads.tracker.example. was denied by rule " + rule, "policy now for ads.tracker.example.: deny (rule " + rule + ")"} {
		if !strings.Contains(out, want) {
			t.Errorf("why output lacks %q:\n%s", want, out)
		}
	}
}

// TestInheritedAnswers: an approval read back from the firewall at start
// explains drops like an answer, without an answer time, and /why says
// so; without its name it still says which approval.
func TestInheritedAnswers(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name, qname string
		expiry      time.Time
		port        string
		want        []string
	}{
		{"expired", "api.example.com.", now.Add(-time.Second), "192.0.2.7:443",
			[]string{": expired", "api.example.com. was approved before egressd started; the approval expired at " + now.Add(-time.Second).UTC().Format(time.RFC3339Nano)}},
		{"other ports, name unknown", "", now.Add(time.Hour), "192.0.2.7:22",
			[]string{": other_ports", "an approval of an unknown name is approved only on 443/tcp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex(10, time.Hour)
			x.Add(Answer{Time: now.Add(-time.Minute), Expiry: tc.expiry, Group: "lan", Name: tc.qname, Addrs: []netip.Addr{dst}, Ports: []Port{https}, Inherited: true})
			j := NewJoiner(x, 1)
			j.GroupOf = func(netip.Addr) string { return "lan" }
			rec := httptest.NewRecorder()
			j.WhyHandler(func(netip.Addr, string) string { return "allow" }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/why?client=10.1.0.5&dest="+tc.port, nil))
			var w Why
			if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil {
				t.Fatal(err, rec.Body)
			}
			if w.Entry.Drop.AnswerTime != "" || w.Entry.Drop.Expiry == "" {
				t.Errorf("answer_time %q, expiry %q: want none and the element's", w.Entry.Drop.AnswerTime, w.Entry.Drop.Expiry)
			}
			out := FormatWhy(w)
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("why output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
