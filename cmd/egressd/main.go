// Command egressd is an egress-enforcing DNS resolver: it answers only what
// policy allows and opens the firewall only to the addresses it answered.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `egressd: an egress-enforcing DNS resolver

Usage:
  egressd [serve] [-config FILE]        serve DNS (embedded default config without -config)
  egressd agent -config FILE            apply the approvals other egressd nodes publish
                                        ([fleet] enforce) to this host's firewall; no DNS
  egressd check -config FILE            validate a config and its lists
  egressd explain -config FILE [-client IP] [-type A] [-address IP] NAME
                                        show how a query would be decided
  egressd nft-rules -config FILE        print the nftables ruleset egressd installs
  egressd why -config FILE -client IP DEST[:PORT[/PROTO]]
                                        ask the running egressd why packets to DEST are
                                        dropped (needs firewall.drop_events "nflog" or "both")
  egressd report [-json] [-threshold N] [-config FILE] LOGFILE...
                                        summarize query logs and propose allow rules
                                        (never what FILE's deny rules or categories deny)
  egressd version                       print the version

Signals (serve, agent): SIGHUP reloads the config and lists and reopens the query
log file; SIGTERM and SIGINT shut down gracefully.
`

// errUsage marks errors whose message is a usage problem (exit code 2).
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serveCmd(args, stderr)
	case "agent":
		err = agentCmd(args, stderr)
	case "check":
		err = checkCmd(args, stdout)
	case "explain":
		err = explainCmd(args, stdout)
	case "nft-rules":
		err = nftRulesCmd(args, stdout)
	case "why":
		err = whyCmd(args, stdout)
	case "report":
		err = reportCmd(args, stdout)
	case "version":
		fmt.Fprintln(stdout, "egressd", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "egressd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "egressd %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintln(stderr, err)
		return 1
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("egressd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configFlag declares the -config flag every config-reading command takes.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config file (default: the embedded example config, configs/default.toml)")
}
