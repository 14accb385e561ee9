package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os/exec"
)

// Namespace is a named network namespace. The zero value stands for the
// namespace the calling process runs in: commands and Do run in place.
type Namespace struct {
	Name string
}

// Create adds the namespace and brings its loopback up. When only the
// second step fails the namespace exists: the returned value has its name
// so the caller can delete it.
func Create(name string) (Namespace, error) {
	if _, err := Run("ip", "netns", "add", name); err != nil {
		return Namespace{}, err
	}
	ns := Namespace{Name: name}
	if _, err := ns.IP("link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}

// Delete removes the namespace.
func (ns Namespace) Delete() error {
	_, err := Run("ip", "netns", "delete", ns.Name)
	return err
}

func (ns Namespace) String() string {
	if ns.Name == "" {
		return "(host)"
	}
	return ns.Name
}

// IP runs `ip -n NS args...`.
func (ns Namespace) IP(args ...string) (string, error) {
	return Run("ip", append([]string{"-n", ns.Name}, args...)...)
}

// Exec runs a program inside the namespace.
func (ns Namespace) Exec(name string, args ...string) (string, error) {
	return ns.ExecInput(nil, name, args...)
}

// ExecInput is Exec with stdin fed from the given bytes (none when nil).
func (ns Namespace) ExecInput(stdin []byte, name string, args ...string) (string, error) {
	if ns.Name == "" {
		return RunInput(stdin, name, args...)
	}
	return RunInput(stdin, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command builds an unstarted exec.Cmd that runs inside the namespace.
// `ip netns exec` execs the program in place, so the PID is the program's
// own.
func (ns Namespace) Command(bin string, args ...string) *exec.Cmd {
	if ns.Name == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
}

// Veth connects two namespaces with a veth pair and brings both ends up.
func Veth(a Namespace, aName string, b Namespace, bName string) error {
	if _, err := a.IP("link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name); err != nil {
		return err
	}
	if _, err := a.IP("link", "set", aName, "up"); err != nil {
		return err
	}
	_, err := b.IP("link", "set", bName, "up")
	return err
}

// AddAddrs assigns address prefixes to a device. IPv6 ones skip duplicate
// address detection so they are usable at once.
func (ns Namespace) AddAddrs(dev string, prefixes ...string) error {
	for _, p := range prefixes {
		args := []string{"addr", "add", p, "dev", dev}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return err
		}
		if pfx.Addr().Is6() {
			args = append(args, "nodad")
		}
		if _, err := ns.IP(args...); err != nil {
			return err
		}
	}
	return nil
}

// RandomID is six hex digits that keep the namespace names of parallel
// tests and runs apart.
func RandomID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the program instead
	return hex.EncodeToString(b)
}
