package daemon

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// errNoNetAdmin is returned by commands that program or read nftables when the
// process lacks CAP_NET_ADMIN.
var errNoNetAdmin = errors.New("CAP_NET_ADMIN is required to read or program nftables: run as root, " +
	"or grant the capability (systemd: AmbientCapabilities=CAP_NET_ADMIN; " +
	"Kubernetes: securityContext.capabilities.add: [NET_ADMIN])")

// hasNetAdmin reports whether CAP_NET_ADMIN is in the effective set. It is a
// variable so that tests can pretend not to have it.
var hasNetAdmin = func() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3 uses two 32-bit words
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("read process capabilities: %w", err)
	}
	const c = unix.CAP_NET_ADMIN
	return data[c/32].Effective&(1<<(c%32)) != 0, nil
}

// requireNetAdmin fails with errNoNetAdmin when the capability is missing.
func requireNetAdmin() error {
	ok, err := hasNetAdmin()
	if err != nil {
		return err
	}
	if !ok {
		return errNoNetAdmin
	}
	return nil
}
