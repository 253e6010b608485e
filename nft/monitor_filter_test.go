package nft

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/nftwarden/nftwarden/nft/nfttest"
	"golang.org/x/sys/unix"
)

// TestKernelMonitorFilter checks that the monitor's socket filter keeps the
// notifications of the Kernel's own batches out of the socket, also those of
// the socket it opens after a refused batch, and lets others' in.
func TestKernelMonitorFilter(t *testing.T) {
	ns := nfttest.NewNetNS(t)
	k, err := NewKernel(WithTable("filtered"), WithNetNS(ns.FD))
	if err != nil {
		t.Fatalf("NewKernel: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns.FD})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		t.Fatal(err)
	}
	m := &monitor{conn: c, tamper: k.tamper, buf: make([]byte, 64<<10)}
	k.tamper.watchStarted(m)
	if err := m.filter(); err != nil {
		t.Fatalf("filter: %v", err)
	}
	queued := func() bool {
		t.Helper()
		if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		_, err := m.receive()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return false
		}
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		return true
	}
	ctx := context.Background()
	for _, step := range []struct {
		name    string
		do      func()
		arrives bool
	}{
		{"own batch", func() {
			var tx Transaction
			tx.AddSet(Set{Name: "s", Key: []KeyType{TypeIPv4Addr}})
			if err := k.Apply(ctx, &tx); err != nil {
				t.Fatalf("Apply: %v", err)
			}
		}, false},
		{"own batch on the socket opened after a refused one", func() {
			var bad, tx Transaction
			bad.DeleteChain("nope")
			if err := k.Apply(ctx, &bad); err == nil {
				t.Fatal("Apply of a missing chain's deletion succeeded")
			}
			tx.AddElements("s", Element{Key: []Value{{198, 18, 0, 1}}})
			if err := k.Apply(ctx, &tx); err != nil {
				t.Fatalf("Apply: %v", err)
			}
		}, false},
		{"another process's batch", func() {
			if out, err := ns.Exec("nft", "add table inet other"); err != nil {
				t.Fatalf("nft: %v\n%s", err, out)
			}
		}, true},
	} {
		step.do()
		if got := queued(); got != step.arrives {
			t.Errorf("%s: notifications queued = %v, want %v", step.name, got, step.arrives)
		}
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
