package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// commandTimeout bounds every external command the soak runs.
const commandTimeout = 20 * time.Second

// run executes a command and returns its combined output; the error
// carries the command line and output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// netns is a named network namespace. The zero value stands for the
// namespace the soak itself runs in (loopback mode).
type netns struct {
	name string
}

func (ns netns) String() string {
	if ns.name == "" {
		return "(host)"
	}
	return ns.name
}

// createNetns adds the namespace with loopback up.
func createNetns(name string) (netns, error) {
	if _, err := run("ip", "netns", "add", name); err != nil {
		return netns{}, err
	}
	ns := netns{name: name}
	if _, err := ns.ip("link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}

func (ns netns) delete() error {
	_, err := run("ip", "netns", "delete", ns.name)
	return err
}

// ip runs `ip -n NS args...`.
func (ns netns) ip(args ...string) (string, error) {
	return run("ip", append([]string{"-n", ns.name}, args...)...)
}

// exec runs a program inside the namespace.
func (ns netns) exec(name string, args ...string) (string, error) {
	if ns.name == "" {
		return run(name, args...)
	}
	return run("ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// command builds an exec.Cmd that runs inside the namespace. `ip netns
// exec` execs the program in place, so the PID is the program's own.
func (ns netns) command(bin string, args ...string) *exec.Cmd {
	if ns.name == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns.name, bin}, args...)...)
}

// do runs fn on an OS thread inside the namespace, so the sockets fn
// opens belong to it (and keep belonging to it on any thread). The thread
// is handed back to the scheduler only once it is back in its original
// namespace; if that fails it stays locked and dies with the goroutine.
func (ns netns) do(fn func() error) error {
	if ns.name == "" {
		return fn()
	}
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
