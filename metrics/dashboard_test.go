package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

const dashboardPath = "../examples/grafana/egressd.json"

// series maps every series name egressd exports (histograms expanded into
// _bucket, _sum and _count) to its label names.
type series map[string][]string

func exportedSeries(t *testing.T) series {
	t.Helper()
	out := series{}
	for _, mf := range gather(t, populated(t)) {
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		name := mf.GetName()
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"] = append(slices.Clone(labels), "le")
			out[name+"_sum"], out[name+"_count"] = labels, labels
		case dto.MetricType_SUMMARY:
			out[name] = append(slices.Clone(labels), "quantile")
			out[name+"_sum"], out[name+"_count"] = labels, labels
		default:
			out[name] = labels
		}
	}
	return out
}

var (
	stringLit    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	selector     = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcherLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping     = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
	matchers     = regexp.MustCompile(`\{[^}]*\}`)
	rangeOrSub   = regexp.MustCompile(`\[[^\]]*\]`)
	token        = regexp.MustCompile(`\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
)

var promqlKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}

// checkExpr reports every name in a PromQL expression that egressd does
// not export: metric names, matcher labels and grouping labels. It is a
// deliberately small tokenizer, enough for dashboard expressions.
func checkExpr(expr string, known series) []string {
	var problems []string
	// Matchers are checked against their own metric, before string values
	// (which may hold anything) are blanked out.
	for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
		labels, ok := known[sel[1]]
		for _, m := range matcherLabel.FindAllStringSubmatch(stringLit.ReplaceAllString(sel[2], `""`), -1) {
			if ok && !slices.Contains(labels, m[1]) {
				problems = append(problems, fmt.Sprintf("%s has no label %q", sel[1], m[1]))
			}
		}
	}
	rest := stringLit.ReplaceAllString(expr, `""`)
	rest = matchers.ReplaceAllString(rest, " ")
	rest = rangeOrSub.ReplaceAllString(rest, " ")
	var grouped []string
	for _, g := range grouping.FindAllStringSubmatch(rest, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				grouped = append(grouped, l)
			}
		}
	}
	rest = grouping.ReplaceAllString(rest, " ")

	var metrics []string
	for _, tok := range token.FindAllStringSubmatch(rest, -1) {
		word := tok[0]
		switch {
		case tok[1] != "": // a function call
		case word[0] >= '0' && word[0] <= '9':
		case slices.Contains(promqlKeywords, word):
		default:
			if _, ok := known[word]; !ok {
				problems = append(problems, fmt.Sprintf("unknown metric %q", word))
				continue
			}
			metrics = append(metrics, word)
		}
	}
	if len(metrics) == 0 {
		problems = append(problems, "references no exported metric")
	}
	for _, l := range grouped {
		found := false
		for _, m := range metrics {
			found = found || slices.Contains(known[m], l)
		}
		if !found {
			problems = append(problems, fmt.Sprintf("grouping label %q is on none of %v", l, metrics))
		}
	}
	return problems
}

func TestCheckExprCatchesMistakes(t *testing.T) {
	known := series{
		"egressd_queries_total":                    {"group", "decision", "qtype"},
		"egressd_upstream_duration_seconds_bucket": {"server", "le"},
	}
	tests := []struct {
		expr         string
		wantProblems int
	}{
		{`sum by (decision) (rate(egressd_queries_total{group=~"$group"}[$__rate_interval]))`, 0},
		{`histogram_quantile(0.99, sum by (server, le) (rate(egressd_upstream_duration_seconds_bucket[5m])))`, 0},
		{`topk(10, sum by (group) (rate(egressd_queries_total{decision="deny"}[5m]))) / 1e-9`, 0},
		{`rate(egressd_querie_total[5m])`, 2}, // unknown, and nothing known referenced
		{`sum by (decison) (rate(egressd_queries_total[5m]))`, 1},
		{`rate(egressd_queries_total{grp="x"}[5m])`, 1},
		{`rate(egressd_queries_total{group="a{b}=c"}[5m])`, 0},
		{`up`, 2},
		{`sum(rate(egressd_queries_total[5m])) and on (server) egressd_upstream_duration_seconds_bucket`, 0},
	}
	for _, tc := range tests {
		if got := checkExpr(tc.expr, known); len(got) != tc.wantProblems {
			t.Errorf("checkExpr(%s) = %q, want %d problems", tc.expr, got, tc.wantProblems)
		}
	}
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // inside collapsed rows
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

func TestDashboardUsesOnlyExportedMetrics(t *testing.T) {
	d := loadDashboard(t)
	known := exportedSeries(t)
	panels := flatten(d.Panels)
	queries := 0
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			for _, problem := range checkExpr(tg.Expr, known) {
				t.Errorf("panel %q: %s in %s", p.Title, problem, tg.Expr)
			}
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries found; is the panel layout still parsed?", queries)
	}
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_]\w*)\s*\)`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(string(v.Query))
		if m == nil {
			t.Errorf("variable %s: query %s is not label_values(metric, label)", v.Name, v.Query)
			continue
		}
		if !slices.Contains(known[m[1]], m[2]) {
			t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
		}
	}
}

func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want a current one (36-41)", d.SchemaVersion)
	}
	hasDatasourceVar := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDatasourceVar = true
		}
	}
	if !hasDatasourceVar {
		t.Error("no Prometheus datasource variable named datasource")
	}
	ids := map[int]bool{}
	var cells [][4]int
	for _, p := range flatten(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, c := range cells {
			if g.X < c[0]+c[2] && c[0] < g.X+g.W && g.Y < c[1]+c[3] && c[1] < g.Y+g.H {
				t.Errorf("panel %q overlaps another panel", p.Title)
			}
		}
		cells = append(cells, [4]int{g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q uses datasource %q instead of the variable", p.Title, p.Datasource.UID)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a query uses datasource %q", p.Title, tg.Datasource.UID)
			}
		}
	}
}

// TestDashboardHasDropsPanel: the dashboard shows drops by reason and the
// drop events lost (each query's metrics are checked above).
func TestDashboardHasDropsPanel(t *testing.T) {
	want := map[string]*regexp.Regexp{
		"drops by reason":  regexp.MustCompile(`sum by \(reason\) \(rate\(egressd_drops_total[\[{]`),
		"drop events lost": regexp.MustCompile(`egressd_drop_events_lost_total`),
		"drops by group":   regexp.MustCompile(`sum by \(group\) \(rate\(egressd_drops_total[\[{]`),
	}
	for what, re := range want {
		found := false
		for _, p := range flatten(loadDashboard(t).Panels) {
			for _, tg := range p.Targets {
				found = found || re.MatchString(tg.Expr)
			}
		}
		if !found {
			t.Errorf("no panel shows %s (%s)", what, re)
		}
	}
}
