package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/egressd/egressd/internal/netnstest"
)

// proc is one program the soak started. Everything it starts is stopped
// by its PID; the PID is also appended to a file so the wrapper script can
// stop leftovers if the soak itself is killed.
type proc struct {
	name    string
	pid     int
	log     string
	done    chan struct{}
	mu      sync.Mutex
	waitErr error
}

// pidFile lists "PID NAME" lines of every program started.
var pidFile string

func startProc(ns netnstest.Namespace, name, logDir, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := ns.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: Ctrl-C reaches the soak only, which then
	// stops the program in order by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	recordPID(p)
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func recordPID(p *proc) {
	if pidFile == "" {
		return
	}
	f, err := os.OpenFile(pidFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%d %s\n", p.pid, p.name)
	f.Close()
}

// running reports whether the process has not exited (nor been reaped).
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return syscall.Kill(p.pid, 0) == nil
	}
}

// exitErr is how the process ended; nil while it runs.
func (p *proc) exitErr() error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.waitErr == nil {
			return errors.New("exited with status 0")
		}
		return p.waitErr
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to grace, then SIGKILL. It reports
// whether the process had to be killed.
func (p *proc) stop(grace time.Duration) (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return true
}

func (p *proc) signal(sig syscall.Signal) error {
	if !p.running() {
		return fmt.Errorf("%s (pid %d) is not running", p.name, p.pid)
	}
	return syscall.Kill(p.pid, sig)
}
