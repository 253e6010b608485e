package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

var daemonOnce = sync.OnceValues(BuildDaemon)

// DaemonBinary builds the nftwarden command once per process (go build ./daemon/cmd/nftwarden
// in the repository root) and returns its path; NFTW_DAEMON overrides it with a prebuilt binary.
func DaemonBinary() (string, error) {
	if p := os.Getenv("NFTW_DAEMON"); p != "" {
		return p, nil
	}
	return daemonOnce()
}

// daemonHealthAddr is where each daemon serves /readyz, inside its node namespace.
const daemonHealthAddr = "127.0.0.1:9640"

// StartDaemons starts the nftwarden daemon in every node namespace and waits until each
// reports ready (its first full reconcile has programmed the table).
func (e *Env) StartDaemons() error {
	for _, n := range e.Nodes {
		if err := n.StartDaemon(); err != nil {
			return err
		}
	}
	for _, n := range e.Nodes {
		if err := n.WaitDaemonReady(60 * time.Second); err != nil {
			return err
		}
	}
	return nil
}

// daemonHTTPClient talks to the daemon's health and metrics address, which listens
// inside the node namespace.
func (n *Node) daemonHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialInNetns(n.Netns, addr, timeout)
		}},
	}
}

// DaemonGet fetches path (e.g. "/metrics") from the daemon's health and metrics
// address inside the node namespace and returns the body of a 200 answer.
func (n *Node) DaemonGet(ctx context.Context, path string) ([]byte, error) {
	hc := n.daemonHTTPClient(10 * time.Second)
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+daemonHealthAddr+path, nil)
	if err != nil {
		return nil, fmt.Errorf("daemon request %s: %w", path, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("daemon of %s: GET %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("daemon of %s: read %s: %w", n.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("daemon of %s: GET %s: %s", n.Name, path, resp.Status)
	}
	return body, nil
}

// DaemonPID is the process ID of the node's running daemon, or 0 if none runs. `ip
// netns exec` replaces itself with the daemon, so this is the daemon's own PID (for
// /proc/PID/status in memory benchmarks).
func (n *Node) DaemonPID() int {
	if n.daemon == nil {
		return 0
	}
	if done, _ := n.daemon.exited(); done {
		return 0
	}
	return n.daemon.cmd.Process.Pid
}

// WaitDaemonReady polls the daemon's /readyz inside the node namespace until it answers
// 200, the daemon ends, or bound passes.
func (n *Node) WaitDaemonReady(bound time.Duration) error {
	hc := n.daemonHTTPClient(2 * time.Second)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(bound)
	last := "no answer"
	for {
		if err := n.DaemonExited(); err != nil {
			return err
		}
		resp, err := hc.Get("http://" + daemonHealthAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon of %s not ready after %s (last answer: %s); last lines of %s:\n%s",
				n.Name, bound, last, n.DaemonLog(), tailFile(n.DaemonLog(), 30))
		}
		// Often enough that restart tests can measure the time to ready.
		time.Sleep(50 * time.Millisecond)
	}
}

// StartDaemon runs `nftwarden run --kubeconfig K --node-name N` inside the node's
// namespace, with its output in DaemonLog(). This is the one place that knows how the
// daemon is started.
func (n *Node) StartDaemon() error {
	if n.daemon != nil {
		if done, _ := n.daemon.exited(); !done {
			return fmt.Errorf("daemon of %s already runs", n.Name)
		}
	}
	bin, err := DaemonBinary()
	if err != nil {
		return fmt.Errorf("nftwarden binary: %w", err)
	}
	argv := append([]string{"ip", "netns", "exec", n.Netns, bin, "run",
		"--kubeconfig", n.env.opts.DaemonKubeconfig, "--node-name", n.Name,
		"--metrics-address", daemonHealthAddr}, n.env.opts.DaemonArgs...)
	appendLine(n.DaemonLog(), fmt.Sprintf("=== %s %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " ")))
	n.daemon, err = startProcess("nftwarden daemon of "+n.Name, n.DaemonLog(), argv, n.daemonEnviron())
	return err
}

// daemonEnviron is the environment of the node's daemon: the test process's, then
// Options.DaemonEnv, then SetDaemonEnv's.
func (n *Node) daemonEnviron() []string {
	// Every daemon serves the chained CNI plugin on a socket of its own (CNISocket),
	// not on the node-wide default path that the daemons of all nodes would share;
	// a test can still turn it off with "NFTWARDEN_CNI_SOCKET=" in DaemonEnv.
	env := append(os.Environ(), "NFTWARDEN_CNI_SOCKET="+n.CNISocket())
	return append(append(env, n.env.opts.DaemonEnv...), n.daemonEnv...)
}

// SetDaemonEnv sets environment variables ("KEY=value") for this node's daemon, added
// after Options.DaemonEnv, e.g. the POD_NAME and POD_NAMESPACE a DaemonSet pod gets
// from the downward API. It applies from the next StartDaemon.
func (n *Node) SetDaemonEnv(env ...string) { n.daemonEnv = slices.Clone(env) }

// appendLine adds a line to a log file; a log that cannot be written is not an error
// worth failing a test for (the process start reports its own).
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}

// StopDaemon stops the node's daemon (SIGTERM, then SIGKILL after 10 s).
func (n *Node) StopDaemon() {
	if n.daemon != nil {
		n.daemon.stop(10 * time.Second)
	}
}

// KillDaemon ends the node's daemon with SIGKILL, by its PID, as `kill -9` does (no
// shutdown code runs; a netlink batch it was sending is cut off), and waits until it
// has ended.
func (n *Node) KillDaemon() error {
	if n.daemon == nil {
		return fmt.Errorf("daemon of %s was never started", n.Name)
	}
	return n.daemon.killNow()
}

// DaemonLog is the path of the file that receives the daemon's stdout and stderr.
func (n *Node) DaemonLog() string {
	return filepath.Join(n.env.Dir, "nftwarden-"+n.Name+".log")
}

// DaemonExited reports an error if the daemon has ended, with the end of its log.
func (n *Node) DaemonExited() error {
	if n.daemon == nil {
		return nil
	}
	return n.daemon.exitError()
}

// Exec runs a command inside the node's namespace and returns its combined output.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Netns}, argv...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), n.Netns, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Diagnostics describes the environment for a failure report: per node, whether its
// daemon runs, the end of its log, and the nftables ruleset of its namespace (listed
// with the nft tool, which only the tests use).
func (e *Env) Diagnostics(ctx context.Context) string {
	var b strings.Builder
	for _, n := range e.Nodes {
		fmt.Fprintf(&b, "===== node %s (netns %s, %s, %s)\n", n.Name, n.Netns, n.IPv4, n.IPv6)
		if n.daemon == nil {
			b.WriteString("daemon: not started\n")
		} else {
			if err := n.daemon.exitError(); err != nil {
				fmt.Fprintf(&b, "daemon: %v\n", err)
			} else {
				fmt.Fprintf(&b, "daemon: running; last lines of %s:\n%s\n", n.DaemonLog(), n.daemon.tail(40))
			}
		}
		out, err := n.Exec(ctx, "nft", "list", "ruleset")
		if err != nil {
			fmt.Fprintf(&b, "nft list ruleset: %v\n", err)
		} else {
			fmt.Fprintf(&b, "nft list ruleset:\n%s\n", out)
		}
	}
	apiOnly := 0
	for _, p := range e.Pods() {
		if p.APIOnly() {
			apiOnly++
			continue
		}
		fmt.Fprintf(&b, "pod %s on %s: %s %s (netns %s)\n", p, p.Node.Name, p.IPv4, p.IPv6, p.Netns)
	}
	if apiOnly > 0 {
		fmt.Fprintf(&b, "and %d API-only pods\n", apiOnly)
	}
	return b.String()
}
