package nfttest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamePrefix starts the name of every namespace this package creates.
const NamePrefix = "nftw-nft-"

// NetNS is a named network namespace that lives for one test.
type NetNS struct {
	// Name is the namespace's name under /run/netns.
	Name string
	// FD refers to the namespace; pass it to nft.WithNetNS.
	FD     int
	handle netns.NsHandle
}

// RequireNetAdmin skips the test when the process lacks CAP_NET_ADMIN.
func RequireNetAdmin(t testing.TB) {
	t.Helper()
	ok, err := hasNetAdmin()
	if err != nil {
		t.Skipf("privileged test: cannot read capabilities: %v", err)
	}
	if !ok {
		t.Skip("privileged test: needs CAP_NET_ADMIN (run as root) to create network namespaces and program nftables")
	}
}

func hasNetAdmin() (bool, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, err
			}
			const capNetAdmin = 12
			return caps&(1<<capNetAdmin) != 0, nil
		}
	}
	return false, fmt.Errorf("no CapEff in /proc/self/status")
}

// NewNetNS creates a fresh named network namespace, removed when the test ends.
// It skips the test when the process lacks CAP_NET_ADMIN.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	RequireNetAdmin(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random namespace name: %v", err)
	}
	name := NamePrefix + hex.EncodeToString(b[:])
	h, err := newNamed(name)
	if err != nil {
		t.Fatalf("create network namespace %s: %v", name, err)
	}
	ns := &NetNS{Name: name, FD: int(h), handle: h}
	t.Cleanup(func() {
		_ = ns.handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	return ns
}

// netnsRunDir is where named network namespaces are mounted (iproute2's).
const netnsRunDir = "/run/netns"

var (
	runDirOnce sync.Once
	runDirErr  error
)

// prepareRunDir makes /run/netns a shared mount point, as `ip netns add` does
// before its first namespace. Otherwise the first `ip netns add` of any test
// running beside this package (nft's render tests, the integration suite)
// bind-mounts /run/netns onto itself, hiding the namespaces this package
// mounted there before: they can no longer be unmounted by their path, and
// their tests fail to delete them (EBUSY) and leave them behind.
func prepareRunDir() error {
	if err := os.MkdirAll(netnsRunDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL { // not a mount point yet: make it one, then share it
		if err = unix.Mount(netnsRunDir, netnsRunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", netnsRunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount point: %w", netnsRunDir, err)
	}
	return nil
}

// newNamed creates the namespace on a locked thread and switches that thread
// back before unlocking it, so no other goroutine ever runs inside it.
func newNamed(name string) (netns.NsHandle, error) {
	runDirOnce.Do(func() { runDirErr = prepareRunDir() })
	if runDirErr != nil {
		return 0, runDirErr
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return 0, err
	}
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: keep it locked so the
		// runtime discards it instead of reusing it.
		runtime.LockOSThread()
		_ = h.Close()
		_ = netns.DeleteNamed(name)
		return 0, fmt.Errorf("return to the original namespace: %w", err)
	}
	return h, nil
}

// Run calls f on a locked OS thread inside the namespace (for code that uses
// the current namespace, such as sockets), then returns the thread.
func (ns *NetNS) Run(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns.handle); err != nil {
		return fmt.Errorf("enter %s: %w", ns.Name, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // never reuse a thread stuck in the test namespace
		return fmt.Errorf("leave %s: %w", ns.Name, err)
	}
	return ferr
}

// Exec runs a command inside the namespace (ip netns exec) and returns its
// combined output.
func (ns *NetNS) Exec(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns.Name, err, out)
	}
	return string(out), nil
}

// ListTable returns `nft list table inet <table>` run inside the namespace.
func ListTable(t testing.TB, ns *NetNS, table string) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("the nft binary is needed to list tables")
	}
	out, err := ns.Exec("nft", "list", "table", "inet", table)
	if err != nil {
		t.Fatalf("list table: %v", err)
	}
	return out
}
