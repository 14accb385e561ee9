package querylog

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// contractFields is the query log schema from the design contract.
var contractFields = []string{
	"time", "client", "group", "qname", "qtype", "decision", "rule", "source",
	"action", "rcode", "answers", "ttl", "cached", "upstream", "transport",
	"duration_ms", "suppressed",
}

func sampleEntry() Entry {
	return Entry{
		Time:       time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC),
		Client:     "10.1.2.3",
		Group:      "servers",
		QName:      "api.example.com.",
		QType:      "A",
		Decision:   DecisionAllow,
		Rule:       "*.example.com",
		Source:     "group.servers.allow",
		RCode:      "NOERROR",
		Answers:    []string{"192.0.2.10", "2001:db8::10"},
		TTL:        300,
		Cached:     true,
		Upstream:   "127.0.0.1:53",
		DurationMS: 0.4567,
	}
}

func TestAppendJSONHasExactlyContractFields(t *testing.T) {
	full := sampleEntry()
	tests := []struct {
		name string
		e    Entry
	}{
		{"full", full},
		{"zero", Entry{}},
		{"deny without answers", Entry{Time: full.Time, Client: "::1", Group: "g", QName: "ads.example.net.", QType: "AAAA", Decision: DecisionDeny, Rule: "ads.example.net", Action: "nxdomain", RCode: "NXDOMAIN"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := AppendJSON(nil, &tc.e)
			if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
				t.Fatalf("not one line: %q", line)
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("invalid JSON %q: %v", line, err)
			}
			var keys []string
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := slices.Sorted(slices.Values(contractFields))
			if !slices.Equal(keys, want) {
				t.Fatalf("keys = %v, want %v", keys, want)
			}
		})
	}
}

func TestAppendJSONRoundTrips(t *testing.T) {
	e := sampleEntry()
	var got Entry
	if err := json.Unmarshal(AppendJSON(nil, &e), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(e.Time) {
		t.Errorf("time = %v, want %v", got.Time, e.Time)
	}
	got.Time = e.Time
	e.DurationMS = 0.457 // rounded to microseconds
	if !reflect.DeepEqual(got, e) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
	}
}

func TestAppendJSONDuration(t *testing.T) {
	tests := []struct {
		ms   float64
		want string
	}{
		{0, `,"duration_ms":0,`},
		{1.5, `,"duration_ms":1.5,`},
		{0.0004, `,"duration_ms":0,`},
		{12.34567, `,"duration_ms":12.346,`},
		{1e9, `,"duration_ms":1000000000,`},
	}
	for _, tc := range tests {
		e := Entry{DurationMS: tc.ms}
		if got := string(AppendJSON(nil, &e)); !strings.Contains(got, tc.want) {
			t.Errorf("%v ms: %s, want %s", tc.ms, got, tc.want)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	tests := []string{
		"",
		"example.com.",
		`quote".example.`,
		`back\slash.`,
		"tab\tnew\nline\rcr",
		"nul\x00bell\x07esc\x1b",
		"ünïcödé.例え.",
		"bad\xffutf8\xc3",
		"\u2028 line separator",
	}
	for _, s := range tests {
		assertSameDecoded(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"a", "\"\\", "\x00\x1f", "\xff\xfe", "é"} {
		f.Add(s)
	}
	f.Fuzz(assertSameDecoded)
}

// assertSameDecoded checks that appendString output is valid JSON decoding
// to the same string as encoding/json's own encoding of s.
func assertSameDecoded(t *testing.T, s string) {
	t.Helper()
	ours := appendString(nil, s)
	var got string
	if err := json.Unmarshal(ours, &got); err != nil {
		t.Fatalf("%q encoded as invalid JSON %s: %v", s, ours, err)
	}
	ref, _ := json.Marshal(s)
	var want string
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%q decodes to %q, encoding/json gives %q", s, got, want)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := sampleEntry()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e)
	}
}

func BenchmarkEncodingJSON(b *testing.B) {
	e := sampleEntry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendJSONDropLine: a drop line has the contract fields plus a drop
// object with all its fields, and decodes back to the same entry.
func TestAppendJSONDropLine(t *testing.T) {
	e := Entry{Time: sampleEntry().Time, Client: "10.1.0.5", Group: "lan", QName: "api.example.com", Decision: DecisionDrop,
		Drop: &Drop{Destination: "192.0.2.7", Protocol: "tcp", Port: 22, Reason: "other_ports", ApprovedPorts: []string{"443/tcp", "8443/tcp"}, AnswerTime: "2026-12-05T00:00:00Z", Expiry: "2026-12-05T00:01:30Z"}}
	line := AppendJSON(nil, &e)
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := slices.Sorted(slices.Values(append(slices.Clone(contractFields), "drop")))
	if !slices.Equal(keys, want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	drop, _ := m["drop"].(map[string]any)
	if len(drop) != 8 {
		t.Errorf("drop object %v, want 8 fields", drop)
	}
	var got Entry
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatal(err)
	}
	if got.Drop == nil || !reflect.DeepEqual(*got.Drop, *e.Drop) {
		t.Errorf("decoded drop = %+v, want %+v", got.Drop, e.Drop)
	}
}
