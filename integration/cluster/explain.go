package cluster

import "context"

// Explain runs `nftwarden explain` with args inside the node's namespace, with
// the daemons' kubeconfig and the node's name (which --trace reads the table
// of), and returns its standard output.
func (n *Node) Explain(ctx context.Context, args ...string) (string, error) {
	base := append([]string{"explain", "--kubeconfig", n.env.opts.DaemonKubeconfig,
		"--node-name", n.Name, "--timeout", "20s"}, n.programArgs()...)
	return n.nftwarden(ctx, append(base, args...)...)
}
