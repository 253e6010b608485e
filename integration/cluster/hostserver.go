package cluster

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// StartHostServer runs a podagent in the node's own network namespace, as
// the server of a hostNetwork pod would run: it serves the given ports on
// every address of the node (its underlay addresses among them), so that
// pods can probe a node's address (ClusterNetworkPolicy nodes peers). Its
// answers name it "host/<node>". The returned function stops it (also safe
// after the environment is closed); the janitor stops it on SIGINT.
func (n *Node) StartHostServer(ports ...Port) (stop func(), err error) {
	var tcp, udp, sctp []string
	for _, p := range ports {
		s := strconv.Itoa(int(p.Port))
		switch p.Protocol {
		case "UDP":
			udp = append(udp, s)
		case "SCTP":
			sctp = append(sctp, s)
		default:
			tcp = append(tcp, s)
		}
	}
	a, err := startAgent(n.env.agentBin, n.Netns, "host/"+n.Name, filepath.Join(n.env.Dir, "hostserver-"+n.Name+".log"), tcp, udp, sctp)
	if err != nil {
		return nil, fmt.Errorf("host server on %s: %w", n.Name, err)
	}
	return a.stop, nil
}
