package cluster

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// ip runs the ip(8) command (iproute2) and returns its error with its output.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs several ip(8) commands inside namespace ns with one process.
func ipBatch(ns string, cmds []string) error {
	c := exec.Command("ip", "-n", ns, "-batch", "-")
	c.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s -batch (%s): %w: %s", ns, strings.Join(cmds, "; "), err, bytes.TrimSpace(out))
	}
	return nil
}

// nsSysctls writes /proc/sys values inside namespace ns; keys use slashes
// ("net/ipv4/ip_forward"). /proc/sys/net shows the namespace of the writing process,
// so the writes run under `ip netns exec`.
func nsSysctls(ns string, kv map[string]string) error {
	var script strings.Builder
	script.WriteString("set -e\n")
	for k, v := range kv {
		fmt.Fprintf(&script, "echo %s > /proc/sys/%s\n", v, k)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", script.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysctls in %s: %w: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// createNetns creates a named network namespace with its loopback up, and registers
// its removal with the janitor.
func createNetns(name string) (remove func(), err error) {
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	remove = defaultJanitor.register(func() { _ = deleteNetns(name) })
	if err := ip("-n", name, "link", "set", "lo", "up"); err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}

func deleteNetns(name string) error {
	return ip("netns", "delete", name)
}

// listenInNetns opens a TCP listener inside namespace ns. A socket belongs to the
// namespace of the thread that created it and keeps it after the thread moves on, so
// the listener can be served from any goroutine.
func listenInNetns(ns, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s in netns %s: %w", addr, ns, err)
	}
	return l, nil
}

// dialInNetns opens a TCP connection from inside namespace ns.
func dialInNetns(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s in netns %s: %w", addr, ns, err)
	}
	return c, nil
}

// inNetns runs f on an OS thread switched into namespace ns. The switch happens on a
// goroutine of its own whose thread is thrown away if it cannot be switched back.
func inNetns(ns string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime ends it with this goroutine.
			ch <- fmt.Errorf("return from netns %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}
