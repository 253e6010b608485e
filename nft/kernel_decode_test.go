package nft_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/nftwarden/nftwarden/nft"
)

// foreignRules are rules another program could put into our table: shapes
// the vocabulary has, written by nft, and many it has not (they must read
// back as unreadable rules, never as something else).
const foreignRules = `add chain inet nftwarden-test stray
add set inet nftwarden-test stray-set { type ipv4_addr; flags interval; }
add map inet nftwarden-test stray-map { type ipv4_addr : verdict; }
add rule inet nftwarden-test stray tcp dport 22 counter drop
add rule inet nftwarden-test stray tcp dport != 1000-2000 accept
add rule inet nftwarden-test stray ip saddr 10.0.0.0/8 accept
add rule inet nftwarden-test stray ip saddr != @stray-set drop
add rule inet nftwarden-test stray ip daddr vmap @stray-map
add rule inet nftwarden-test stray ct state established,related accept
add rule inet nftwarden-test stray ct direction original accept
add rule inet nftwarden-test stray tcp flags & (syn | ack) == syn drop
add rule inet nftwarden-test stray meta mark 0x10 accept
add rule inet nftwarden-test stray meta mark set 0x20
add rule inet nftwarden-test stray ip dscp set 10
add rule inet nftwarden-test stray limit rate 10/second accept
add rule inet nftwarden-test stray log prefix "x " level info flags tcp sequence
add rule inet nftwarden-test stray log group 3 snaplen 100 queue-threshold 5
add rule inet nftwarden-test stray reject with icmpx admin-prohibited
add rule inet nftwarden-test stray meta l4proto . th dport { tcp . 80, udp . 53 } accept
add rule inet nftwarden-test stray iifname "eth*" return
add rule inet nftwarden-test stray goto pol-in-misc
add rule inet nftwarden-test stray quota 100 mbytes drop
add rule inet nftwarden-test stray continue comment "just so"`

// TestKernelDecodeMatchesLibrary holds Kernel's own decoding of rule
// expressions to google/nftables' decoders: for every rule of the golden
// programs and of foreign rules written by nft, as the kernel lists them,
// both give the same expressions, or both fail. Every prefix of each
// expression list decodes without a panic.
func TestKernelDecodeMatchesLibrary(t *testing.T) {
	rules := 0
	for _, tc := range goldenPrograms {
		t.Run(tc.name, func(t *testing.T) {
			ns, k := newKernel(t)
			applyState(t, k, tc.state())
			if tc.name == "program" {
				nftScript(t, ns, foreignRules)
			}
			st, err := k.Read(context.Background())
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			for name := range st.Chains {
				exprs, err := k.RuleExpressions(name)
				if err != nil {
					t.Fatalf("list rules of %s: %v", name, err)
				}
				for i, b := range exprs {
					rules++
					ours, lib, oursErr, libErr := nft.DecodeExprs(b)
					if (oursErr != nil) != (libErr != nil) || !reflect.DeepEqual(ours, lib) {
						t.Errorf("chain %s rule %d:\nours    %s (%v)\nlibrary %s (%v)", name, i, showExprs(ours), oursErr, showExprs(lib), libErr)
					}
					for n := range b {
						_, _, _, _ = nft.DecodeExprs(b[:n])
					}
				}
			}
		})
	}
	if rules < 80 {
		t.Errorf("only %d rules compared", rules)
	}
}

func showExprs(exprs []expr.Any) string {
	parts := make([]string, len(exprs))
	for i, e := range exprs {
		parts[i] = fmt.Sprintf("%T%+v", e, e)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestKernelReadSharedRules reads chains whose rules repeat byte for byte,
// or differ only by their comment, the way a node's policy chains do, and
// then the same after an outsider changed one of the copies: every chain
// reads back as itself.
func TestKernelReadSharedRules(t *testing.T) {
	ns, k := newKernel(t)
	tcp := nft.Cmp{Field: nft.FieldL4Proto, Value: nft.ProtoValue(nft.ProtoTCP)}
	rule := func(comment string) nft.Rule {
		return nft.Rule{Comment: comment, Exprs: []nft.Expr{tcp, nft.Cmp{Field: nft.FieldTHDport, Value: nft.PortValue(80)}, accept()}}
	}
	want := nft.NewState()
	for _, c := range []struct {
		name  string
		rules []nft.Rule
	}{
		{"a", []nft.Rule{rule(""), rule("")}},
		{"b", []nft.Rule{rule(""), rule("")}},
		{"c", []nft.Rule{rule("c"), rule("")}},
	} {
		addChain(want, nft.Chain{Name: c.name, Rules: c.rules})
	}
	applyState(t, k, want)
	assertConverged(t, k, want)
	nftScript(t, ns, "add rule inet "+testTable+" b tcp dport 81 accept")
	got := readState(t, k)
	if n := len(got.Chains["b"].Rules); n != 3 {
		t.Fatalf("chain b reads back with %d rules, want 3", n)
	}
	for _, c := range []string{"a", "c"} {
		if !reflect.DeepEqual(got.Chains[c].Rules, want.Chains[c].Rules) {
			t.Errorf("chain %s reads back as %v, want %v", c, got.Chains[c].Rules, want.Chains[c].Rules)
		}
	}
	if tx, err := k.Reconcile(context.Background(), want); err != nil || tx.Size() != 1 {
		t.Fatalf("Reconcile: %v, %v; want the one added rule deleted", tx, err)
	}
	assertConverged(t, k, want)
}
