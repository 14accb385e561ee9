package netnstest

import (
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Missing says why namespaces with nftables cannot be built here: not
// root, a capability missing (root in a container may lack them), or ip
// or nft not installed. Empty means they can.
func Missing() []string {
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
	return missing
}

var capNames = map[int]string{unix.CAP_NET_ADMIN: "CAP_NET_ADMIN", unix.CAP_SYS_ADMIN: "CAP_SYS_ADMIN"}

// haveCaps reports the first of caps missing from the effective set.
func haveCaps(caps ...int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, c := range caps {
		if data[c/32].Effective&(1<<(uint(c)%32)) == 0 {
			name, ok := capNames[c]
			if !ok {
				name = fmt.Sprintf("capability %d", c)
			}
			return fmt.Errorf("%s missing", name)
		}
	}
	return nil
}
