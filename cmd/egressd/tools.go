package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/user"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/egressd/egressd/blocklists"
	"github.com/egressd/egressd/config"
	"github.com/egressd/egressd/firewall"
	"github.com/egressd/egressd/policy"
	"github.com/egressd/egressd/report"
)

// checkCmd validates a config and its category lists without serving.
func checkCmd(args []string, stdout io.Writer) error {
	fs := newFlagSet("check", stdout)
	path := configFlag(fs)
	running := fs.String("running", "", "the config egressd runs with: name the keys whose change needs a restart")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *running != "" {
		cur, err := loadConfig(*running)
		if err != nil {
			return fmt.Errorf("-running: %w", err)
		}
		for _, key := range config.RestartOnly(cur, cfg) {
			fmt.Fprintf(stdout, "%s: warning: %s differs from %s and applies only on restart; SIGHUP keeps the running value\n", cfg.File, key, cur.File)
		}
	}
	problems, err := blocklists.CheckSources(categorySpecs(cfg), baseDir(cfg, *path))
	if err != nil {
		return err
	}
	for _, p := range problems {
		loc := p.File // a whole-file problem, or a URL source, has no line
		if p.Line > 0 {
			loc = fmt.Sprintf("%s:%d", p.File, p.Line)
		}
		fmt.Fprintf(stdout, "%s: warning: %s\n", loc, p.Msg)
	}
	for _, w := range weakSettings(cfg) {
		fmt.Fprintf(stdout, "%s:%d: warning: %s\n", w.File, w.Line, w.Msg)
	}
	for _, w := range firewallWarnings(cfg) {
		fmt.Fprintf(stdout, "%s: warning: %s\n", cfg.File, w)
	}
	rules := 0
	for _, g := range cfg.Groups {
		rules += len(g.Allow) + len(g.Deny)
	}
	fmt.Fprintf(stdout, "%s: ok: %d groups, %d rules, %d categories, %d list warnings\n",
		cfg.File, len(cfg.Groups), rules, len(cfg.Categories), len(problems))
	return nil
}

// explainCmd prints how one query would be decided and why.
func explainCmd(args []string, stdout io.Writer) error {
	fs := newFlagSet("explain", stdout)
	path := configFlag(fs)
	client := fs.String("client", "127.0.0.1", "client address the query comes from")
	qtype := fs.String("type", "A", "query type")
	address := fs.String("address", "", "an answer address: say whether the group's deny_addresses deny an answer holding it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one NAME, e.g. egressd explain -config egressd.toml -client 10.0.0.5 example.com", errUsage)
	}
	addr, err := netip.ParseAddr(*client)
	if err != nil {
		return fmt.Errorf("%w: -client %q is not an IP address", errUsage, *client)
	}
	var dest netip.Addr
	if *address != "" {
		if dest, err = netip.ParseAddr(*address); err != nil {
			return fmt.Errorf("%w: -address %q is not an IP address", errUsage, *address)
		}
	}
	t, ok := dns.StringToType[strings.ToUpper(*qtype)]
	if !ok {
		return fmt.Errorf("%w: unknown query type %q", errUsage, *qtype)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	policy.SetNAT64Prefixes(cfg.Server.NAT64)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	lists, err := loadListsWithLines(context.Background(), cfg, *path, logger)
	if err != nil {
		return err
	}
	engine, err := compilePolicy(cfg, lists)
	if err != nil {
		return err
	}
	name := policy.NormalizeName(fs.Arg(0))
	ex := engine.Explain(addr, name, t)
	writeExplanation(stdout, cfg, lists, addr, name, *qtype, ex)
	writeDenyAddresses(stdout, cfg, ex.Decision, dest)
	return nil
}

// writeDenyAddresses says which answer addresses the group's
// deny_addresses deny whatever the name (nothing when the name is denied
// anyway or the group lists none), and with dest whether an answer
// holding it is denied.
func writeDenyAddresses(w io.Writer, cfg *config.Config, d policy.Decision, dest netip.Addr) {
	if d.Group == "" || (d.Verdict == policy.Deny && d.Mode == policy.ModeEnforce) {
		return
	}
	denied := "denied (" + d.Action.String() + ")"
	if d.Mode == policy.ModeAudit {
		denied = "would be denied (audit mode: answered and logged)"
	}
	src := fmt.Sprintf("group[%s].deny_addresses in %s", d.Group, cfg.File)
	if len(d.DenyAddresses) > 0 {
		list := make([]string, len(d.DenyAddresses))
		for i, p := range d.DenyAddresses {
			list[i] = p.String()
		}
		fmt.Fprintf(w, "deny:     answers with an address in %s are %s (%s)\n", strings.Join(list, ", "), denied, src)
	}
	if !dest.IsValid() {
		return
	}
	if p, ok := policy.DeniedAddress(d.DenyAddresses, dest); ok {
		fmt.Fprintf(w, "address:  %s is in %s: an answer with it is %s (%s)\n", dest, p, denied, src)
		return
	}
	fmt.Fprintf(w, "address:  %s is in no deny_addresses prefix of group %s\n", dest, d.Group)
}

func writeExplanation(w io.Writer, cfg *config.Config, lists *blocklists.Manager, client netip.Addr, name, qtype string, ex policy.Explanation) {
	d := ex.Decision
	group := d.Group
	if group == "" {
		group = "(none: the client is in no group, the query is REFUSED)"
	}
	verdict := d.Verdict.String()
	if d.Verdict == policy.Deny && d.Mode == policy.ModeAudit {
		verdict = "would_deny (audit mode: the query is answered and logged)"
	}
	fmt.Fprintf(w, "query:    %s %s from %s\n", name, strings.ToUpper(qtype), client)
	fmt.Fprintf(w, "group:    %s\n", group)
	fmt.Fprintf(w, "decision: %s\n", verdict)
	fmt.Fprintf(w, "rule:     %s\n", d.Rule)
	fmt.Fprintf(w, "source:   %s\n", describeSource(cfg, lists, d, name))
	if d.Verdict == policy.Deny && d.Group != "" {
		fmt.Fprintf(w, "answer:   %s\n", d.Action)
	}
	if d.Verdict == policy.Allow {
		if len(d.Ports) == 0 {
			fmt.Fprintf(w, "firewall: answer addresses open on any port\n")
		} else {
			fmt.Fprintf(w, "firewall: answer addresses open on %s\n", formatPorts(d.Ports))
		}
	}
	if len(ex.Matches) > 1 {
		fmt.Fprintf(w, "also matched:\n")
		for _, m := range ex.Matches {
			if m.Rule == d.Rule && m.Source == d.Source {
				continue
			}
			fmt.Fprintf(w, "  %-8s %s (%s)\n", m.Verdict, m.Rule, describeSource(cfg, lists, policy.Decision{Rule: m.Rule, Source: m.Source}, name))
		}
	}
}

// describeSource turns a decision source into a config location or a
// category list file:line.
func describeSource(cfg *config.Config, lists *blocklists.Manager, d policy.Decision, name string) string {
	if cat, ok := strings.CutPrefix(d.Rule, "category:"); ok && lists != nil {
		if hit, found := lists.Where(cat, name); found {
			return fmt.Sprintf("category %s, %s:%d (%s, match %s)", cat, hit.Source, hit.Line, hit.Domain, hit.Match)
		}
		return "category " + cat
	}
	return fmt.Sprintf("%s in %s", d.Source, cfg.File)
}

func formatPorts(ps []policy.PortRange) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		proto := "tcp"
		if p.Proto == policy.ProtoUDP {
			proto = "udp"
		}
		if p.From == p.To {
			parts[i] = fmt.Sprintf("%d/%s", p.From, proto)
		} else {
			parts[i] = fmt.Sprintf("%d-%d/%s", p.From, p.To, proto)
		}
	}
	return strings.Join(parts, ", ")
}

// nftRulesCmd prints the ruleset egressd would install on this kernel.
func nftRulesCmd(args []string, stdout io.Writer) error {
	fs := newFlagSet("nft-rules", stdout)
	path := configFlag(fs)
	runAs := fs.String("user", "", "the user (name or uid) egressd runs as, whose own DNS traffic the rules let pass; default: the user running this command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	spec := firewallSpec(cfg, cfg)
	if *runAs != "" {
		if spec.UID, err = lookupUID(*runAs); err != nil {
			return fmt.Errorf("%w: -user: %v", errUsage, err)
		}
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("%s: %w", cfg.File, err)
	}
	// For this kernel: without conntrack labels the table leaves out the
	// prenat chains, and piping this into nft must not fail there.
	_, err = io.WriteString(stdout, firewall.RenderForKernel(spec))
	return err
}

// reportCmd summarizes query logs and proposes allow rules.
func reportCmd(args []string, stdout io.Writer) error {
	fs := newFlagSet("report", stdout)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	threshold := fs.Int("threshold", 3, "collapse more than N subdomains of one registrable domain into a wildcard")
	path := fs.String("config", "", "the running config: never propose what its deny rules or categories deny, nor for groups whose default is allow")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: want one or more query log files", errUsage)
	}
	opts := report.Options{Threshold: *threshold}
	if *path != "" {
		pol, err := reportPolicy(*path)
		if err != nil {
			return err
		}
		opts.Policy = pol
	}
	rep, err := report.Run(fs.Args(), opts)
	if err != nil {
		return err
	}
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

// reportPolicy is the configuration at path as the report consults it.
func reportPolicy(path string) (report.Policy, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	lists, err := loadLists(context.Background(), cfg, path, nil, logger)
	if err != nil {
		return nil, err
	}
	engine, err := compilePolicy(cfg, lists)
	if err != nil {
		return nil, err
	}
	p := configPolicy{engine: engine, defaultAllow: map[string]bool{}}
	for _, g := range cfg.PolicyGroups() {
		p.defaultAllow[g.Name] = g.DefaultAllow
	}
	return p, nil
}

type configPolicy struct {
	engine       *policy.Engine
	defaultAllow map[string]bool
}

func (p configPolicy) DeniedBy(group, name string) string {
	if d, denied := p.engine.DeniesTarget(group, policy.NormalizeName(name)); denied {
		return d.Rule
	}
	return ""
}

func (p configPolicy) DefaultAllow(group string) bool { return p.defaultAllow[group] }

// lookupUID resolves a user name, or takes a numeric uid as it is.
func lookupUID(name string) (uint32, error) {
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(id), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %s has uid %q", name, u.Uid)
	}
	return uint32(id), nil
}
