package netnstest

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the namespace, so sockets fn
// creates live there. The sockets keep their namespace afterwards and may
// be used from any goroutine. The thread returns to the scheduler only
// after it is back in its original namespace; if that fails it is left
// locked and the runtime ends it with the goroutine. The zero Namespace
// runs fn in place.
func (ns Namespace) Do(fn func() error) error {
	if ns.Name == "" {
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
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering %s: %w", ns.Name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Still locked: the goroutine ends, and the runtime with it
			// ends the thread rather than reuse it in the wrong namespace.
			errc <- fmt.Errorf("leaving %s: %w", ns.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
