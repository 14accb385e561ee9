package firewall

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestTableStateDifferences(t *testing.T) {
	want := tableState{table: "egressd", present: true, objects: map[string]string{
		"chain forward":          "type=filter hook=2",
		"rules of chain forward": "a\nb\n",
		"set g_a_d4":             "key=ipv4_addr/4",
	}}
	with := func(edit func(map[string]string)) tableState {
		o := map[string]string{}
		for k, v := range want.objects {
			o[k] = v
		}
		edit(o)
		return tableState{table: "egressd", present: true, objects: o}
	}
	cases := []struct {
		name string
		got  tableState
		want []string
	}{
		{"same", with(func(map[string]string) {}), nil},
		{"table gone", tableState{table: "egressd"}, []string{"table inet egressd missing"}},
		{"rule deleted", with(func(o map[string]string) { o["rules of chain forward"] = "a\n" }), []string{"rules of chain forward changed"}},
		{"set deleted, chain added", with(func(o map[string]string) {
			delete(o, "set g_a_d4")
			o["chain extra"] = "type=filter"
		}), []string{"chain extra unexpected", "set g_a_d4 missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := want.differences(tc.got); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("differences = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTableStateMatchesLayout(t *testing.T) {
	lay := buildLayout(allowSpec(), AllFeatures())
	good := tableState{table: lay.table, present: true, objects: map[string]string{}}
	for _, ch := range lay.chains {
		good.objects["chain "+ch.name] = "x"
		good.objects["rules of chain "+ch.name] = strings.Repeat("rule\n", len(ch.rules))
	}
	for _, s := range lay.sets {
		good.objects["set "+s.name] = "x"
	}
	if err := good.matchesLayout(lay); err != nil {
		t.Fatalf("exact listing rejected: %v", err)
	}
	bad := map[string]func(o map[string]string){
		"rule missing": func(o map[string]string) {
			o["rules of chain forward"] = strings.TrimPrefix(o["rules of chain forward"], "rule\n")
		},
		"extra set":   func(o map[string]string) { o["set other"] = "x" },
		"set missing": func(o map[string]string) { delete(o, "set g_servers_d4") },
	}
	for name, edit := range bad {
		st := tableState{table: lay.table, present: true, objects: map[string]string{}}
		for k, v := range good.objects {
			st.objects[k] = v
		}
		edit(st.objects)
		if err := st.matchesLayout(lay); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (tableState{table: lay.table}).matchesLayout(lay); err == nil {
		t.Error("missing table accepted")
	}
}

func TestRestoreCounterSharedPerRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := restoreCounter(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := restoreCounter(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	b.WithLabelValues(restoreTable).Inc()
	if got := testutil.ToFloat64(a.WithLabelValues(restoreTable)); got != 1 {
		t.Errorf("counter not shared: %v", got)
	}
	// All reasons are exported from the start.
	if n := testutil.CollectAndCount(a, "egressd_firewall_restores_total"); n != 3 {
		t.Errorf("exported %d series, want 3", n)
	}
	if c, err := restoreCounter(nil); err != nil || c == nil {
		t.Errorf("nil registry: %v, %v", c, err)
	}
}

func TestIndexLiveElements(t *testing.T) {
	now := time.Unix(1000, 0)
	x := newExpiryIndex()
	put := func(set, key string, left time.Duration) {
		x.put(element{set: set, key: []byte(key)}, now.Add(left))
	}
	put("a", "long", time.Minute)
	put("a", "short", 300*time.Millisecond) // still live: kept
	put("a", "gone", -time.Millisecond)     // expired
	put("b", "other", time.Minute)          // set not asked for
	got := x.live(now, map[string]bool{"a": true})
	left := map[string]time.Duration{}
	for _, e := range got["a"] {
		left[string(e.Key)] = e.Timeout
	}
	if len(got) != 1 || len(left) != 2 || left["long"] != time.Minute || left["short"] != 300*time.Millisecond {
		t.Errorf("live = %+v, want a/long with 1m and a/short with 300ms left", got)
	}
	if x.size() != 4 {
		t.Errorf("live must not forget entries; %d left", x.size())
	}
}
