package cluster

import (
	"context"
	"net"
	"time"
)

// DialAPI opens a TCP connection to addr from inside the node's namespace, as
// the node's daemon connects to the API server (through the node's relay).
// It fits rest.Config.Dial: a client built with it reaches the API server
// by the daemon's path.
func (n *Node) DialAPI(_ context.Context, _, addr string) (net.Conn, error) {
	return dialInNetns(n.Netns, addr, 5*time.Second)
}
