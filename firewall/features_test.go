package firewall

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// kernelRejects is a batch failure shaped as google/nftables' Flush
// returns it: the acknowledgement errors joined and wrapped.
func kernelRejects(errno unix.Errno) error {
	return fmt.Errorf("conn.Receive: %w", errors.Join(&netlink.OpError{Op: "receive", Err: errno}))
}

func TestLabelsFromProbe(t *testing.T) {
	cases := []struct {
		name       string
		batch      error
		labels     bool
		wantErr    bool
		noNetAdmin bool
	}{
		{"batch accepted", nil, true, false, false},
		{"kernel without conntrack labels", kernelRejects(unix.EOPNOTSUPP), false, false, false},
		{"not permitted", kernelRejects(unix.EPERM), false, true, true},
		{"malformed batch says nothing about labels", kernelRejects(unix.EINVAL), false, true, false},
		{"missing ct expression module", kernelRejects(unix.ENOENT), false, true, false},
		{"socket failure", errors.New("SendMessages: broken pipe"), false, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			labels, err := labelsFromProbe(tc.batch)
			if labels != tc.labels {
				t.Errorf("labels = %t, want %t", labels, tc.labels)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %t", err, tc.wantErr)
			}
			if errors.Is(err, ErrNoNetAdmin) != tc.noNetAdmin {
				t.Errorf("err = %v, want ErrNoNetAdmin: %t", err, tc.noNetAdmin)
			}
			if err != nil && !strings.Contains(err.Error(), tc.batch.Error()) {
				t.Errorf("err = %v does not name the cause %v", err, tc.batch)
			}
		})
	}
}

// TestProbeFeaturesReadsTheKernelAnswer runs the probe with a stand-in
// kernel; building the batch needs no privilege, only sending it does.
func TestProbeFeaturesReadsTheKernelAnswer(t *testing.T) {
	cases := []struct {
		name    string
		answer  error
		want    Features
		wantErr bool
	}{
		{"accepts", nil, Features{CtLabels: true}, false},
		{"rejects ct label", kernelRejects(unix.EOPNOTSUPP), Features{}, false},
		{"fails otherwise", kernelRejects(unix.EBUSY), Features{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sent := 0
			got, err := probeFeatures(0, func(*nftables.Conn) error {
				sent++
				return tc.answer
			})
			if sent != 1 {
				t.Errorf("probe batch sent %d times, want once", sent)
			}
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("probeFeatures = %+v, %v; want %+v, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestFeatureCacheProbesOnceAndForgetsFailures(t *testing.T) {
	var c featureCache
	calls := 0
	answers := []struct {
		f   Features
		err error
	}{
		{Features{}, kernelRejects(unix.EBUSY)},
		{Features{CtLabels: false}, nil},
		{Features{CtLabels: true}, nil}, // never asked: the second answer stands
	}
	probe := func() (Features, error) {
		a := answers[calls]
		calls++
		return a.f, a.err
	}
	if _, err := c.get(probe); err == nil {
		t.Fatal("first probe's failure not returned")
	}
	for i := range 3 {
		f, err := c.get(probe)
		if err != nil || f.CtLabels {
			t.Fatalf("get #%d = %+v, %v; want the remembered answer without labels", i+2, f, err)
		}
	}
	if calls != 2 {
		t.Errorf("probed %d times, want 2 (a failure, then one answer kept)", calls)
	}
}

// TestLayoutWithoutCtLabels: a kernel without labels gets the full layout
// minus the prenat chains and the label match, nothing else changed.
func TestLayoutWithoutCtLabels(t *testing.T) {
	for name, spec := range goldenSpecs {
		t.Run(name, func(t *testing.T) {
			full, bare := buildLayout(spec, AllFeatures()), buildLayout(spec, Features{})
			if full.render() == bare.render() {
				t.Fatal("layouts do not differ")
			}
			var want []string
			for _, c := range full.chains {
				if strings.HasPrefix(c.name, "prenat_") {
					continue
				}
				var rules [][]stmt
				for _, r := range c.rules {
					if !usesLabels(r) {
						rules = append(rules, r)
					}
				}
				want = append(want, chainDef{name: c.name, hook: c.hook, priority: c.priority, rules: rules}.render())
			}
			var got []string
			for _, c := range bare.chains {
				for _, r := range c.rules {
					if usesLabels(r) {
						t.Errorf("chain %s keeps a label rule: %s", c.name, c.render())
					}
				}
				got = append(got, c.render())
			}
			if strings.Join(got, "") != strings.Join(want, "") {
				t.Errorf("chains without labels:\n%s\nwant:\n%s", strings.Join(got, ""), strings.Join(want, ""))
			}
			if len(bare.sets) != len(full.sets) {
				t.Errorf("%d sets without labels, %d with", len(bare.sets), len(full.sets))
			}
		})
	}
}

func usesLabels(rule []stmt) bool {
	for _, st := range rule {
		switch st.(type) {
		case ctLabelIs, ctLabelSet:
			return true
		}
	}
	return false
}

func TestRenderForNamesWhatIsLeftOut(t *testing.T) {
	spec := goldenSpecs["forward"]
	if got, want := RenderFor(spec, AllFeatures()), Render(spec); got != want {
		t.Errorf("RenderFor(AllFeatures) differs from Render")
	}
	bare := RenderFor(spec, Features{})
	first, rest, _ := strings.Cut(bare, "\n")
	if !strings.HasPrefix(first, "# ") || !strings.Contains(first, "DNAT") || !strings.Contains(first, "translated address") {
		t.Errorf("first line does not explain the missing labels: %q", first)
	}
	if strings.Contains(rest, "#") || strings.Contains(rest, "ct label") || strings.Contains(rest, "prenat_") {
		t.Errorf("rendered table still mentions labels:\n%s", rest)
	}
	if rest != buildLayout(spec, Features{}).render() {
		t.Errorf("RenderFor body is not the layout without labels")
	}
	if got := RenderFor(Spec{Table: "egressd"}, Features{}); !strings.HasPrefix(got, "# firewall: no hooks") {
		t.Errorf("invalid spec: %q", got)
	}
}

func TestRenderDetected(t *testing.T) {
	spec := goldenSpecs["output"]
	cases := []struct {
		name      string
		f         Features
		err       error
		firstLine string // "" when the table comes first
		labels    bool
	}{
		{"kernel with labels", AllFeatures(), nil, "", true},
		{"kernel without labels", Features{}, nil, "# " + missingLabelsNote, false},
		{"no privilege to probe", Features{}, wrapPermission(kernelRejects(unix.EPERM)),
			"# kernel not checked for conntrack labels (probing needs CAP_NET_ADMIN); without them egressd leaves out the prenat chains and ct label matches", true},
		{"probe failed otherwise", Features{}, kernelRejects(unix.EBUSY),
			"# kernel not checked for conntrack labels (conn.Receive: netlink receive: device or resource busy); without them egressd leaves out the prenat chains and ct label matches", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := renderDetected(spec, func() (Features, error) { return tc.f, tc.err })
			first, rest, _ := strings.Cut(got, "\n")
			switch {
			case tc.firstLine == "" && got != RenderFor(spec, tc.f):
				t.Errorf("got\n%s\nwant RenderFor(%+v)", got, tc.f)
			case tc.firstLine != "" && first != tc.firstLine:
				t.Errorf("first line %q, want %q", first, tc.firstLine)
			}
			if strings.Contains(rest, "ct label set 23") != tc.labels {
				t.Errorf("label rules rendered: %t, want %t", !tc.labels, tc.labels)
			}
		})
	}
}
