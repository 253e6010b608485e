package cluster

import (
	"io"
	"net"
	"sync"
	"time"
)

// relay forwards TCP connections accepted inside a node namespace to the API server in
// the machine's namespace. It lets the daemon in the node namespace use the same
// kubeconfig (https://127.0.0.1:<port>) as the tests, without giving the machine's
// namespace any address or route in the test ranges.
type relay struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	// cut makes the relay close every connection, open or new (CutAPI).
	cut bool
}

func startRelay(ns, listenAddr, target string) (*relay, error) {
	l, err := listenInNetns(ns, listenAddr)
	if err != nil {
		return nil, err
	}
	r := &relay{l: l, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.forward(c)
	}
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.cut {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) forward(in net.Conn) {
	defer r.wg.Done()
	r.mu.Lock()
	cut := r.cut
	r.mu.Unlock()
	if cut {
		in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	if !r.track(in) || !r.track(out) {
		in.Close()
		out.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	// One direction ended: the connection is over for HTTP/2; close both.
	in.Close()
	out.Close()
	<-done
	r.mu.Lock()
	delete(r.conns, in)
	delete(r.conns, out)
	r.mu.Unlock()
}

// setCut starts or ends a cut: while it lasts, open connections are closed and new
// ones closed as soon as accepted.
func (r *relay) setCut(cut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = cut
	if cut {
		for c := range r.conns {
			c.Close()
		}
	}
}

// close stops accepting, cuts every open connection and waits for the goroutines.
func (r *relay) close() {
	r.l.Close()
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
