package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// commandTimeout bounds every external command the harness runs.
const commandTimeout = 20 * time.Second

// requireNetns skips the test unless it can create namespaces and load
// nftables rules; with EGRESSD_REQUIRE_NETNS=1 it fails instead.
func requireNetns(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "not running as root")
	} else if err := haveCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN); err != nil {
		missing = append(missing, err.Error())
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" not in PATH (Debian packages iproute2, nftables)")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "end-to-end test needs network namespaces and nftables: " + strings.Join(missing, "; ")
	if os.Getenv("EGRESSD_REQUIRE_NETNS") == "1" {
		t.Fatal(msg + " (EGRESSD_REQUIRE_NETNS=1)")
	}
	t.Skip(msg)
}

// haveCaps reports the first of caps missing from the effective set:
// root in a container may lack them.
func haveCaps(caps ...int) error {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		hexSet, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hexSet), 16, 64)
		if err != nil {
			return err
		}
		names := map[int]string{unix.CAP_NET_ADMIN: "CAP_NET_ADMIN", unix.CAP_SYS_ADMIN: "CAP_SYS_ADMIN"}
		for _, c := range caps {
			if eff&(1<<c) == 0 {
				return fmt.Errorf("%s missing", names[c])
			}
		}
		return nil
	}
	return fmt.Errorf("no CapEff line in /proc/self/status")
}

// run executes a command and returns its combined output; the error
// carries the command line and output so callers can report it as is.
func run(name string, args ...string) (string, error) {
	return runInput(nil, name, args...)
}

func runInput(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// netns is a named network namespace created for one test.
type netns struct {
	name string
}

// uniqueID keeps namespace names apart across parallel tests and runs.
func uniqueID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newNetns creates "eg-<id>-<role>" with loopback up and deletes it when
// the test ends.
func newNetns(t *testing.T, id, role string) *netns {
	t.Helper()
	ns := &netns{name: fmt.Sprintf("eg-%s-%s", id, role)}
	if _, err := run("ip", "netns", "add", ns.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := run("ip", "netns", "delete", ns.name); err != nil {
			t.Errorf("removing namespace: %v", err)
		}
	})
	ns.mustIP(t, "link", "set", "lo", "up")
	// Without duplicate address detection, link-local addresses are usable
	// as soon as a link is up, so neighbour discovery does not stall the
	// first IPv6 connections.
	ns.mustSysctl(t, "net.ipv6.conf.default.accept_dad=0")
	ns.mustSysctl(t, "net.ipv6.conf.all.accept_dad=0")
	return ns
}

// ip runs `ip -n NS args...`.
func (ns *netns) ip(args ...string) (string, error) {
	return run("ip", append([]string{"-n", ns.name}, args...)...)
}

func (ns *netns) mustIP(t *testing.T, args ...string) {
	t.Helper()
	if _, err := ns.ip(args...); err != nil {
		t.Fatal(err)
	}
}

// exec runs a program inside the namespace.
func (ns *netns) exec(name string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

func (ns *netns) mustSysctl(t *testing.T, setting string) {
	t.Helper()
	if _, err := ns.exec("sysctl", "-q", "-w", setting); err != nil {
		t.Fatal(err)
	}
}

// ruleset is the namespace's whole nftables state, for failure reports.
func (ns *netns) ruleset() string {
	out, err := ns.exec("nft", "list", "ruleset")
	if err != nil {
		return err.Error()
	}
	return out
}

// do runs fn on an OS thread that has entered the namespace, so sockets fn
// creates live there. The sockets keep their namespace afterwards and may
// be used from any goroutine. The thread returns to the scheduler only
// after it is back in its original namespace; if that fails it is left
// locked and the runtime ends it with the goroutine.
func (ns *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns.name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering %s: %w", ns.name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leaving %s: %w", ns.name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
