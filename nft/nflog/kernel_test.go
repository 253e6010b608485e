package nflog_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nftwarden/nftwarden/nft/nflog"
	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// IP plan: one routed node namespace with two pods,
//
//	a  198.18.0.2  2001:db8::2     the client
//	b  198.18.1.3  2001:db8:1::3   the server
//
// The node's forward chain logs to group testGroup every UDP datagram (and
// drops it, as a deny rule does), and the SYN of every TCP connection to 8080
// (and lets it pass, as the flow log does).
const (
	testGroup  = 7
	denyPrefix = "nftw deny in np"
	flowPrefix = "nftw allow - flow"
	udpPort    = 9000
	tcpPort    = 8080
)

type testNode struct {
	node *nfttest.NetNS
	a, b *nfttest.Pod
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	n := &testNode{
		node: nfttest.NewNetNS(t),
		a:    &nfttest.Pod{Name: "a", V4: netip.MustParseAddr("198.18.0.2"), V6: netip.MustParseAddr("2001:db8::2")},
		b:    &nfttest.Pod{Name: "b", V4: netip.MustParseAddr("198.18.1.3"), V6: netip.MustParseAddr("2001:db8:1::3")},
	}
	nfttest.WirePods(t, n.node, false, n.a, n.b)
	programLogRules(t, n.node)
	return n
}

// programLogRules writes the test's table in the node namespace with
// google/nftables (the nft package's own Log lowering is not used, so that
// this package is tested on its own):
//
//	table inet nflogtest {
//	  chain forward {
//	    type filter hook forward priority filter; policy accept;
//	    meta l4proto udp log prefix "nftw deny in np" group 7 drop
//	    tcp dport 8080 tcp flags & (syn | ack) == syn log prefix "nftw allow - flow" group 7
//	  }
//	}
func programLogRules(t *testing.T, node *nfttest.NetNS) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(node.FD))
	if err != nil {
		t.Fatalf("nftables connection: %v", err)
	}
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "nflogtest"})
	accept := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	logTo := func(prefix string) expr.Any {
		return &expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Group: testGroup, Data: []byte(prefix)}
	}
	l4proto := func(p byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		}
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: chain,
		Exprs: append(l4proto(unix.IPPROTO_UDP), logTo(denyPrefix), &expr.Verdict{Kind: expr.VerdictDrop})})
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: append(l4proto(unix.IPPROTO_TCP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(tcpPort)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		logTo(flowPrefix),
	)})
	if err := c.Flush(); err != nil {
		t.Fatalf("program the log rules in %s: %v", node.Name, err)
	}
}

// startReader opens the group in the node namespace and runs it until the
// test ends.
func startReader(t *testing.T, node *nfttest.NetNS, cfg nflog.Config) *nflog.Reader {
	t.Helper()
	cfg.Group, cfg.NetNS = testGroup, node.FD
	r, err := nflog.Open(cfg)
	if err != nil {
		t.Fatalf("open group %d: %v", testGroup, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func run(t *testing.T, r *nflog.Reader) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// sendUDP sends n datagrams from one socket of pod p to dst and returns the
// socket's port.
func sendUDP(t *testing.T, p *nfttest.Pod, dst netip.AddrPort, n int) uint16 {
	t.Helper()
	var port uint16
	if err := p.NS.Run(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		port = uint16(c.LocalAddr().(*net.UDPAddr).Port)
		for i := range n {
			if _, err := c.Write([]byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("send udp from %s to %v: %v", p.Name, dst, err)
	}
	return port
}

// collect takes n events, failing after a deadline, then checks that no
// further event comes within quiet.
func collect(t *testing.T, r *nflog.Reader, n int, quiet time.Duration) []nflog.Event {
	t.Helper()
	var got []nflog.Event
	deadline := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case ev := <-r.Events():
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("got %d events, want %d: %+v (stats %+v)", len(got), n, got, r.Stats())
		}
	}
	select {
	case ev := <-r.Events():
		t.Fatalf("an event beyond the %d expected: %+v", n, ev)
	case <-time.After(quiet):
	}
	return got
}

func TestKernelReaderEventPerPacket(t *testing.T) {
	n := newTestNode(t)
	r := startReader(t, n.node, nflog.Config{FlushTimeout: 10 * time.Millisecond})
	run(t, r)
	const datagrams = 5
	for _, family := range []struct {
		name     string
		fam      nflog.Family
		src, dst netip.Addr
	}{
		{"ipv4", nflog.IPv4, n.a.V4, n.b.V4},
		{"ipv6", nflog.IPv6, n.a.V6, n.b.V6},
	} {
		t.Run(family.name+"/udp denied", func(t *testing.T) {
			sport := sendUDP(t, n.a, netip.AddrPortFrom(family.dst, udpPort), datagrams)
			for i, ev := range collect(t, r, datagrams, 200*time.Millisecond) {
				want := nflog.Event{Time: ev.Time, Prefix: denyPrefix, Family: family.fam, Src: family.src, Dst: family.dst,
					Protocol: nflog.ProtocolUDP, SrcPort: sport, DstPort: udpPort, Length: ev.Length}
				if ev != want {
					t.Errorf("event %d: %+v, want %+v", i, ev, want)
				}
				if wantLen := udpLength(family.fam, len(fmt.Sprint(i))); ev.Length != wantLen {
					t.Errorf("event %d: length %d, want %d", i, ev.Length, wantLen)
				}
				if age := time.Since(ev.Time); age < 0 || age > 5*time.Second {
					t.Errorf("event %d: time %v is %v from now", i, ev.Time, age)
				}
			}
		})
		t.Run(family.name+"/tcp flow", func(t *testing.T) {
			client, server := nfttest.MustConnect(t, n.a, n.b, netip.AddrPortFrom(family.dst, tcpPort))
			if _, err := client.Write([]byte("hello")); err != nil {
				t.Fatalf("write on the logged connection: %v", err)
			}
			if err := nfttest.ReceiveWithin(server, "hello", nfttest.ProbeTimeout); err != nil {
				t.Fatalf("receive on the logged connection: %v", err)
			}
			sport := uint16(client.LocalAddr().(*net.TCPAddr).Port)
			ev := collect(t, r, 1, 200*time.Millisecond)[0]
			want := nflog.Event{Time: ev.Time, Prefix: flowPrefix, Family: family.fam, Src: family.src, Dst: family.dst,
				Protocol: nflog.ProtocolTCP, SrcPort: sport, DstPort: tcpPort, Length: ev.Length}
			if ev != want {
				t.Errorf("event %+v, want %+v", ev, want)
			}
		})
	}
	if s := r.Stats(); s.Lost != 0 || s.QueueFull != 0 || s.Overruns != 0 || s.Malformed != 0 || s.Received != 2*(datagrams+1) {
		t.Errorf("stats %+v, want %d received and nothing lost", s, 2*(datagrams+1))
	}
}

// udpLength is the IP length of a datagram with n bytes of payload.
func udpLength(f nflog.Family, n int) int {
	if f == nflog.IPv4 {
		return 20 + 8 + n
	}
	return 40 + 8 + n
}

// A burst that overflows the socket buffer while nobody reads is lost in the
// kernel, never blocks the packets (they are dropped by the rule as ever),
// and is counted exactly once a later packet shows the gap.
func TestKernelReaderCountsOverruns(t *testing.T) {
	n := newTestNode(t)
	// The smallest buffer the kernel grants (it doubles the request and
	// keeps a floor of a few KiB): a few dozen messages.
	r := startReader(t, n.node, nflog.Config{ReadBuffer: 1, QueueThreshold: 1, QueueSize: 1 << 16})
	const burst = 3000
	if err := nfttest.SprayUDP(n.a, n.b.V4, burst); err != nil {
		t.Fatalf("burst: %v", err)
	}
	run(t, r)
	// A marker sent after the burst reveals the gap once it arrives. Until
	// the reader has emptied the socket, the kernel keeps it congested and
	// drops what comes: send markers until one gets through.
	sent := burst
	deadline := time.After(5 * time.Second)
	for arrived := false; !arrived; {
		marker := sendUDP(t, n.a, netip.AddrPortFrom(n.b.V4, udpPort), 1)
		sent++
		wait := time.After(200 * time.Millisecond)
		for waiting := true; waiting && !arrived; {
			select {
			case ev := <-r.Events():
				arrived = ev.SrcPort == marker
			case <-wait:
				waiting = false
			case <-deadline:
				t.Fatalf("no marker datagram's event came (stats %+v)", r.Stats())
			}
		}
	}
	s := r.Stats()
	t.Logf("burst of %d datagrams and %d markers: %+v", burst, sent-burst, s)
	if s.Overruns == 0 || s.Lost == 0 {
		t.Errorf("stats %+v: want overruns and lost events after a burst of %d into a tiny buffer", s, burst)
	}
	if total := s.Received + s.QueueFull + s.Lost; total != uint64(sent) {
		t.Errorf("stats %+v: received+queue full+lost = %d, want every logged packet (%d)", s, total, sent)
	}
}

// One group has one reader in a namespace.
func TestKernelReaderGroupTaken(t *testing.T) {
	node := nfttest.NewNetNS(t)
	startReader(t, node, nflog.Config{})
	if r, err := nflog.Open(nflog.Config{Group: testGroup, NetNS: node.FD}); err == nil {
		r.Close()
		t.Fatal("a second reader of the same group: no error")
	} else {
		t.Logf("second reader: %v", err)
	}
}

// Close releases the group at once, also right after Open (with -race this
// also checks Close against go-nflog's goroutines starting).
func TestKernelReaderCloseReleasesGroup(t *testing.T) {
	node := nfttest.NewNetNS(t)
	for i := range 100 {
		r, err := nflog.Open(nflog.Config{Group: testGroup, NetNS: node.FD})
		if err != nil {
			t.Fatalf("open %d of the group after closing the one before: %v", i, err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
}
