package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// nftwarden runs the nftwarden command with args inside the node's namespace and
// returns its standard output; its standard error (logs) goes into the error.
func (n *Node) nftwarden(ctx context.Context, args ...string) (string, error) {
	bin, err := DaemonBinary()
	if err != nil {
		return "", fmt.Errorf("nftwarden binary: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Netns, bin}, args...)...)
	// The daemon's environment: its NFTWARDEN_* settings shape the program too.
	cmd.Env = n.daemonEnviron()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nftwarden %s in %s: %w: %s", strings.Join(args, " "), n.Netns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// DumpKernel returns the node's table as the kernel holds it (`nftwarden dump`, run
// in the node's namespace).
func (n *Node) DumpKernel(ctx context.Context) (string, error) {
	return n.nftwarden(ctx, "dump")
}

// DumpDesired returns the table that the API server's objects compile to for this node
// (`nftwarden dump --desired`, with the daemons' kubeconfig and the node's name). It
// programs nothing.
// The daemons' flags that shape the program (--audit, the log rules, the counters)
// are given to it too.
func (n *Node) DumpDesired(ctx context.Context) (string, error) {
	args := append([]string{"dump", "--desired", "--kubeconfig", n.env.opts.DaemonKubeconfig,
		"--node-name", n.Name, "--timeout", "20s"}, n.programArgs()...)
	return n.nftwarden(ctx, args...)
}

// programArgs are the daemons' flags that shape the program (programFlags), and the
// node's pod CIDRs unless they give them: the daemon reads its Node's spec.podCIDRs
// for first-packet isolation, dump --desired and explain take them only by flag.
func (n *Node) programArgs() []string {
	args := programArgs(n.env.opts.DaemonArgs)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--pod-cidr") }) {
		args = append(args, "--pod-cidr", n.PodCIDRv4().String(), "--pod-cidr", n.PodCIDRv6().String())
	}
	return args
}

// programFlags are the flags of `nftwarden run` that shape the compiled program,
// which `dump --desired` takes as well (daemon/logflags.go, programFlags), with
// whether they take a separate value.
var programFlags = map[string]bool{"--log-denied": false, "--log-allowed": false, "--audit": false,
	"--policy-counters": false, "--log-rate": true, "--log-burst": true, "--log-group": true,
	"--first-packet-isolation": false, "--pod-cidr": true}

// programArgs picks the program's flags (and their values) out of daemon args.
func programArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name, _, inline := strings.Cut(args[i], "=")
		takesValue, ok := programFlags[name]
		if !ok {
			continue
		}
		out = append(out, args[i])
		if takesValue && !inline && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// maxDiffLines bounds the diff in WaitConverged's error: a peer set of thousands of
// pods differs by as many lines.
const maxDiffLines = 80

// WaitConverged polls until the kernel's table (DumpKernel) equals the desired one
// (DumpDesired), chain comments and counter values aside, and fails after bound with the last difference,
// lines of the desired table marked "-" and of the kernel's "+".
func (n *Node) WaitConverged(ctx context.Context, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		desired, derr := n.DumpDesired(ctx)
		kernel, kerr := n.DumpKernel(ctx)
		// The kernel counts traffic; what was programmed counts nothing.
		desired, kernel = withoutChainComments(desired), nfttest.ZeroCounters(withoutChainComments(kernel))
		if derr == nil && kerr == nil && desired == kernel {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if derr != nil {
				return fmt.Errorf("node %s: desired table unknown after %s: %w", n.Name, bound, derr)
			}
			if kerr != nil {
				return fmt.Errorf("node %s: kernel table unreadable after %s: %w", n.Name, bound, kerr)
			}
			return fmt.Errorf("node %s: kernel table still differs from the desired one after %s (-desired +kernel):\n%s",
				n.Name, bound, TableDiff(desired, kernel))
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// withoutChainComments drops the comment line that opens a chain: the kernel does not
// give chain comments back to `nftwarden dump` (daemon/README.md), so only the desired
// listing has them. Set and rule comments stay.
func withoutChainComments(table string) string {
	lines := strings.Split(table, "\n")
	out := make([]string, 0, len(lines))
	for i, l := range lines {
		if i > 0 && strings.HasPrefix(lines[i-1], "\tchain ") && strings.HasPrefix(l, "\t\tcomment ") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TableDiff shows how two nft listings differ, line by line (-want +got), at most
// maxDiffLines lines of it.
func TableDiff(want, got string) string {
	d := cmp.Diff(strings.Split(want, "\n"), strings.Split(got, "\n"))
	lines := strings.Split(d, "\n")
	if len(lines) > maxDiffLines {
		lines = append(lines[:maxDiffLines], fmt.Sprintf("... (%d more lines)", len(lines)-maxDiffLines))
	}
	return strings.Join(lines, "\n")
}
