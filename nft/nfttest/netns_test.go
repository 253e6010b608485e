package nfttest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNetNSBesideIPNetnsAdd creates a namespace, then one with `ip netns add`
// (as nft's render tests and the integration suite do, possibly at the same
// time in another package), and relies on the first one's cleanup: on a
// machine where /run/netns was not a mount point yet, ip's bind mount of it
// used to hide the first namespace, whose deletion then failed with EBUSY.
func TestNetNSBesideIPNetnsAdd(t *testing.T) {
	ns := NewNetNS(t)
	if !isMountPoint(t, netnsRunDir) {
		t.Fatalf("%s is not a mount point after NewNetNS: a later `ip netns add` would hide %s", netnsRunDir, ns.Name)
	}
	name := NamePrefix + "ipadd-probe"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v\n%s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		t.Errorf("ip netns delete %s: %v\n%s", name, err, out)
	}
	if _, err := os.Stat(netnsRunDir + "/" + ns.Name); err != nil {
		t.Fatalf("namespace %s no longer visible after ip netns add: %v", ns.Name, err)
	}
}

func isMountPoint(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
