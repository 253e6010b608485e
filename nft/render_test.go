package nft

// Render tests. The states come from the fixtures in fake_test.go (IP plan
// there) plus renderVocabulary below, which exercises every expression, key type
// and wrapping rule. The golden files in testdata/render are Render's output;
// TestKernelRenderRoundTrip proves them equal to what nft itself prints after
// loading them into a fresh network namespace.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nftwarden/nftwarden/nft/nfttest"
)

// -update is registered by the external tests of this package (kernel_test.go):
// both live in one test binary, where a flag can be registered only once, so it
// is looked up at run time. -update-render does the same for these files alone.
var updateRender = flag.Bool("update-render", false, "rewrite the golden files in testdata/render")

func updateGolden() bool {
	if *updateRender {
		return true
	}
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// renderVocabulary uses every expression of the vocabulary, every key type, the
// dependency forms nft simplifies and enough elements to wrap lines.
func renderVocabulary() *State {
	s := NewState()
	var (
		v4s, v6s, protos, svcs []Element
	)
	for i := 1; i <= 7; i++ {
		v4s = append(v4s, fxElem(fxAddr(fmt.Sprintf("198.18.1.%d", i))))
		v6s = append(v6s, fxElem(fxAddr(fmt.Sprintf("2001:db8::1:%d", i))))
	}
	for _, p := range []uint8{0, 1, 2, 4, 6, 17, 41, 47, 50, 51, 58, 132, 136, 200} {
		protos = append(protos, fxElem(ProtoValue(p)))
	}
	for _, p := range []uint16{22, 53, 80, 443, 8080, 8443, 9090} {
		svcs = append(svcs, fxElem(PortValue(p)))
	}
	svcRanges := []Element{fxRange(PortValue(1), PortValue(1023)), fxRange(PortValue(8000), PortValue(8000)), fxRange(PortValue(30000), PortValue(32767))}
	fxAdd(s,
		fxSet("v4-plain", []KeyType{TypeIPv4Addr}, v4s, fxComment("seven v4 addresses")),
		fxSet("v6-plain", []KeyType{TypeIPv6Addr}, v6s),
		fxSet("protos", []KeyType{TypeInetProto}, protos),
		fxSet("services", []KeyType{TypeInetService}, svcs),
		fxSet("service-ranges", []KeyType{TypeInetService}, svcRanges, fxInterval),
		fxSet("ifnames", []KeyType{TypeIfname}, []Element{fxElem(IfnameValue("eth0")), fxElem(IfnameValue("veth-a1"))}),
		fxSet("v4-intervals", []KeyType{TypeIPv4Addr}, []Element{
			fxPrefix("0.0.0.0/1"), // 0.0.0.0-127.255.255.255
			fxRange(fxAddr("198.18.0.1"), fxAddr("198.18.0.9")),
			fxRange(fxAddr("198.18.0.20"), fxAddr("198.18.0.20")),
			fxPrefix("198.18.2.0/24"),
			fxPrefix("198.18.3.0/24"), // adjacent: nft keeps both
			fxPrefix("198.19.255.255/32"),
		}, fxInterval),
		fxSet("v6-intervals", []KeyType{TypeIPv6Addr}, []Element{
			fxPrefix("2001:db8::/64"),
			fxRange(fxAddr("2001:db8:1::5"), fxAddr("2001:db8:1::9")),
		}, fxInterval),
		fxSet("v4-all", []KeyType{TypeIPv4Addr}, []Element{fxPrefix("0.0.0.0/0")}, fxInterval),
		fxSet("v4-concat-ranges", []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService}, []Element{
			{Key: []Value{fxAddr("198.18.0.0"), ProtoValue(ProtoTCP), PortValue(80)},
				KeyEnd: []Value{fxAddr("198.18.0.255"), ProtoValue(ProtoTCP), PortValue(80)}},
			{Key: []Value{fxAddr("198.18.1.0"), ProtoValue(ProtoUDP), PortValue(1)},
				KeyEnd: []Value{fxAddr("198.18.1.9"), ProtoValue(ProtoUDP), PortValue(2)}},
			{Key: []Value{fxAddr("198.18.2.2"), ProtoValue(ProtoSCTP), PortValue(3)}},
		}, fxInterval),
		fxSet("empty-v6", []KeyType{TypeIPv6Addr}, nil, fxComment("kept when empty")),
		fxSet("vmap-v4", []KeyType{TypeIPv4Addr}, []Element{
			fxVmapElem(fxAddr("198.18.0.1"), fxAccept()),
			fxVmapElem(fxAddr("198.18.0.2"), fxDrop()),
			fxVmapElem(fxAddr("198.18.0.3"), fxJump("leaf")),
			fxVmapElem(fxAddr("198.18.0.4"), fxGoto("leaf")),
			fxVmapElem(fxAddr("198.18.0.5"), Verdict{Kind: VerdictReturn}),
		}, fxVmap, fxComment("dispatch")),
		fxSet("vmap-v6", []KeyType{TypeIPv6Addr}, []Element{
			fxVmapElem(fxAddr("2001:db8::1"), fxGoto("leaf")),
			fxVmapElem(fxAddr("2001:db8::2"), fxAccept()),
		}, fxVmap),
		fxSet("vmap-ports", []KeyType{TypeInetService}, []Element{
			fxVmapElem(PortValue(53), fxAccept()),
		}, fxVmap),
		fxSet("vmap-intervals", []KeyType{TypeIPv4Addr}, []Element{
			{Key: []Value{fxAddr("198.18.8.0")}, KeyEnd: []Value{fxAddr("198.18.8.255")}, Verdict: &Verdict{Kind: VerdictGoto, Chain: "leaf"}},
		}, fxVmap, fxInterval),
		fxSet("ports", []KeyType{TypeInetProto, TypeInetService}, []Element{
			fxPorts(ProtoTCP, 80, 80), fxPorts(ProtoTCP, 8000, 8080), fxPorts(ProtoUDP, 0, 65535), fxPorts(47, 10, 10),
		}, fxInterval),
		fxSet("named-v6", []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService}, []Element{
			fxElem(fxAddr("2001:db8::a"), ProtoValue(ProtoTCP), PortValue(8080)),
			fxElem(fxAddr("2001:db8::b"), ProtoValue(ProtoUDP), PortValue(53)),
		}),
	)
	l4 := func(p uint8) Cmp { return Cmp{Field: FieldL4Proto, Value: ProtoValue(p)} }
	nfproto := func(p uint8) Cmp { return Cmp{Field: FieldNfproto, Value: Value{p}} }
	dport := func(p uint16) Cmp { return Cmp{Field: FieldTHDport, Value: PortValue(p)} }
	fxAddChains(s,
		&Chain{Name: "leaf", Comment: "jump and goto target"},
		&Chain{Name: "base-in", Base: &BaseChain{Hook: HookInput, Priority: 105, Policy: VerdictAccept}},
		&Chain{Name: "base-out", Base: &BaseChain{Hook: HookOutput, Priority: -100, Policy: VerdictAccept}},
		&Chain{Name: "base-raw", Base: &BaseChain{Hook: HookForward, Priority: -295, Policy: VerdictAccept}},
		&Chain{Name: "base-sec", Base: &BaseChain{Hook: HookForward, Priority: 50, Policy: VerdictAccept}},
		&Chain{Name: "base-far", Base: &BaseChain{Hook: HookForward, Priority: 20, Policy: VerdictAccept}},
		&Chain{Name: "base-neg", Base: &BaseChain{Hook: HookForward, Priority: -5, Policy: VerdictDrop}, Comment: "drop policy"},
		&Chain{Name: "rules", Comment: "every expression", Rules: []Rule{
			fxRule(MatchCtState{States: CtEstablished | CtRelated}, fxAccept()),
			fxRule(MatchCtState{States: CtInvalid | CtEstablished | CtRelated | CtNew | CtUntracked}, Verdict{Kind: VerdictReturn}),
			fxRule(MatchCtState{States: CtNew}, Counter{}),
			fxRule(nfproto(NfprotoIPv4), Cmp{Field: FieldIPSaddr, Value: fxAddr("198.18.0.1")},
				Cmp{Field: FieldIPDaddr, Neq: true, Value: fxAddr("198.18.0.2")}, Counter{}, Log{Prefix: "nftw: "}, fxGoto("leaf")),
			fxRule(nfproto(NfprotoIPv6), fxAccept()),
			fxRule(nfproto(NfprotoIPv6), Cmp{Field: FieldIP6Saddr, Value: fxAddr("2001:db8::1")},
				Range{Field: FieldIP6Daddr, From: fxAddr("2001:db8::1"), To: fxAddr("2001:db8::5")}, fxDrop()),
			fxRule(Cmp{Field: FieldIP6Daddr, Neq: true, Value: fxAddr("2001:db8::1")}, fxDrop()),
			fxRule(Cmp{Field: FieldIPSaddr, Value: fxAddr("198.18.0.1")}, nfproto(NfprotoIPv4), fxDrop()),
			fxRule(nfproto(NfprotoIPv4), l4(ProtoTCP), fxAccept()),
			fxRule(l4(ProtoTCP), Cmp{Field: FieldIPSaddr, Value: fxAddr("198.18.0.1")}, dport(80), fxAccept()),
			fxRule(l4(ProtoUDP), dport(53), fxAccept()),
			fxRule(l4(ProtoSCTP), dport(53), fxAccept()),
			fxRule(l4(ProtoUDPLite), dport(53), fxAccept()),
			fxRule(l4(33), dport(1), fxDrop()),
			fxRule(l4(1), dport(1), fxDrop()),
			fxRule(l4(58), dport(1), fxDrop()),
			fxRule(l4(47), dport(1), fxDrop()),
			fxRule(l4(ProtoTCP), Range{Field: FieldTHDport, From: PortValue(1), To: PortValue(2)}, dport(3), fxAccept()),
			fxRule(Cmp{Field: FieldL4Proto, Neq: true, Value: ProtoValue(ProtoTCP)}, dport(53), fxAccept()),
			fxRule(dport(53), fxAccept()),
			fxRule(Cmp{Field: FieldTHDport, Neq: true, Value: PortValue(53)}, Verdict{Kind: VerdictContinue}),
			fxRule(Range{Field: FieldIPSaddr, From: fxAddr("198.18.0.0"), To: fxAddr("198.18.0.255")}, fxAccept()),
			fxRule(l4(58), fxAccept()),
			fxRule(l4(0), fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "v4-plain"}, Lookup{Fields: []Field{FieldL4Proto, FieldTHDport}, Set: "ports"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "v4-plain", Neq: true}, Verdict{Kind: VerdictReturn}),
			fxRule(nfproto(NfprotoIPv4), Lookup{Fields: []Field{FieldIPSaddr}, Set: "v4-all"}, fxAccept()),
			fxRule(nfproto(NfprotoIPv4), Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "v4-concat-ranges"}, fxAccept()),
			fxRule(l4(ProtoTCP), Lookup{Fields: []Field{FieldIP6Daddr, FieldL4Proto, FieldTHDport}, Set: "named-v6"}, fxAccept()),
			fxRule(l4(ProtoTCP), Lookup{Fields: []Field{FieldTHDport}, Set: "services"}, fxAccept()),
			fxRule(l4(ProtoTCP), Lookup{Fields: []Field{FieldTHDport}, Set: "service-ranges", Neq: true}, fxDrop()),
			fxRule(Lookup{Fields: []Field{FieldL4Proto}, Set: "protos"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIifname}, Set: "ifnames"}, Lookup{Fields: []Field{FieldIP6Saddr}, Set: "v6-intervals"}, fxDrop()),
			fxRule(Lookup{Fields: []Field{FieldIP6Saddr}, Set: "v6-plain"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIPSaddr}, Set: "v4-intervals"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIPDaddr, FieldL4Proto, FieldTHDport}, Set: "v4-concat-ranges"}, fxAccept()),
			fxRule(Lookup{Fields: []Field{FieldIP6Saddr}, Set: "empty-v6"}, fxAccept()),
			fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "vmap-v4"}),
			fxRule(nfproto(NfprotoIPv6), VerdictMapLookup{Fields: []Field{FieldIP6Daddr}, Map: "vmap-v6"}),
			fxRule(l4(ProtoUDP), VerdictMapLookup{Fields: []Field{FieldTHDport}, Map: "vmap-ports"}),
			fxRule(VerdictMapLookup{Fields: []Field{FieldIPDaddr}, Map: "vmap-intervals"}),
			{Exprs: []Expr{Cmp{Field: FieldIifname, Value: IfnameValue("eth0")}, Cmp{Field: FieldOifname, Neq: true, Value: IfnameValue("veth1")},
				MatchCtState{States: CtEstablished | CtRelated | CtNew}, Log{Prefix: "x y"}, Verdict{Kind: VerdictContinue}}, Comment: "a rule with a comment"},
			fxRule(MatchCtState{States: CtNew}, MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true},
				Lookup{Fields: []Field{FieldIPSaddr}, Set: "vmap-v4"}, fxDrop()),
			fxRule(MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask}, Lookup{Fields: []Field{FieldIP6Daddr}, Set: "vmap-v6", Neq: true}, fxAccept()),
			fxRule(MatchTCPFlags{Flags: TCPSyn, Mask: 0xff}, fxAccept()),
			fxRule(MatchTCPFlags{Flags: TCPRst, Mask: 0xff, Neq: true}, fxAccept()),
			fxRule(MatchTCPFlags{Flags: TCPSyn | TCPAck, Mask: 0xff}, fxAccept()),
			fxRule(MatchTCPFlags{Mask: 0xff}, fxDrop()),
			fxRule(MatchTCPFlags{Mask: TCPSyn | TCPAck, Neq: true}, fxAccept()),
			fxRule(MatchTCPFlags{Mask: TCPFin | TCPRst}, fxAccept()),
			fxRule(MatchTCPFlags{Flags: TCPEcn | TCPCwr, Mask: TCPPsh | TCPUrg | TCPEcn | TCPCwr, Neq: true}, fxAccept()),
			fxRule(MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true}, dport(22), fxDrop()),
			fxRule(MatchTCPFlags{Flags: TCPAck, Mask: TCPAck | TCPRst}, l4(ProtoTCP), dport(22), fxDrop()),
			fxRule(MatchTCPFlags{Flags: TCPAck, Mask: TCPAck, Neq: true}, fxDrop()),
			fxRule(Log{}, fxJump("leaf")),
			fxRule(Log{Prefix: "a"}, Counter{}),
			fxRule(Counter{}),
			fxRule(CounterRef{Name: "per-policy/in"}, LimitRef{Name: "deny-log-100-200"}, Log{Prefix: "nftw deny in np", Group: 100, NFLog: true}, fxDrop()),
			fxRule(Log{NFLog: true}, LimitRef{Name: "slow"}),
			fxRule(fxDrop()),
		}},
	)
	for _, o := range []Object{
		{Name: "per-policy/in", Comment: "prod/allow-web ingress", Counter: &CounterObject{Packets: 3, Bytes: 180}},
		{Name: "deny-log-100-200", Limit: &LimitObject{Rate: 100, Unit: PerSecond, Burst: 200}},
		{Name: "slow", Comment: "default burst", Limit: &LimitObject{Rate: 6, Unit: PerMinute, Burst: 5}},
	} {
		s.Objects[o.Name] = &o
	}
	return s
}

var renderCases = []struct {
	name  string
	state func() *State
}{
	{"empty", NewState},
	{"skeleton", fxSkeleton},
	{"program", fxProgram},
	{"vocabulary", renderVocabulary},
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Render("nftwarden", tc.state())
			golden := filepath.Join("testdata", "render", tc.name+".nft")
			if want := nfttest.Golden(t, golden, got, updateGolden()); got != want {
				t.Errorf("Render differs from %s:\n%s", golden, lineDiff(want, got))
			}
			if again := Render("nftwarden", tc.state().Clone()); again != got {
				t.Error("Render is not deterministic")
			}
		})
	}
}

func TestRenderRule(t *testing.T) {
	l4 := func(p uint8) Cmp { return Cmp{Field: FieldL4Proto, Value: ProtoValue(p)} }
	dport := Cmp{Field: FieldTHDport, Value: PortValue(80)}
	for _, tc := range []struct {
		name string
		rule Rule
		want string
	}{
		{"ct state", fxRule(MatchCtState{States: CtEstablished | CtRelated}, fxAccept()), "ct state established,related accept"},
		{"vmap", fxRule(VerdictMapLookup{Fields: []Field{FieldIPSaddr}, Map: "egress-v4"}), "ip saddr vmap @egress-v4"},
		{"concat lookup", fxRule(Lookup{Fields: []Field{FieldL4Proto, FieldTHDport}, Set: "ports-x"}), "meta l4proto . th dport @ports-x"},
		{"counter drop", fxRule(Counter{}, fxDrop()), "counter packets 0 bytes 0 drop"},
		{"goto", fxRule(fxGoto("pod-in-x")), "goto pod-in-x"},
		{"tcp dependency", fxRule(l4(ProtoTCP), dport), "tcp dport 80"},
		{"unknown proto dependency", fxRule(l4(250), dport), "th dport 80"},
		{"l4proto without th", fxRule(l4(ProtoTCP), fxAccept()), "meta l4proto tcp accept"},
		{"l4proto neq stays", fxRule(Cmp{Field: FieldL4Proto, Neq: true, Value: ProtoValue(ProtoTCP)}, dport), "meta l4proto != tcp th dport 80"},
		{"nfproto dependency", fxRule(Cmp{Field: FieldNfproto, Value: Value{NfprotoIPv6}}, Lookup{Fields: []Field{FieldIP6Saddr}, Set: "s"}), "ip6 saddr @s"},
		{"nfproto other family stays", fxRule(Cmp{Field: FieldNfproto, Value: Value{NfprotoIPv4}}, fxAccept()), "meta nfproto ipv4 accept"},
		{"neq lookup", fxRule(Lookup{Fields: []Field{FieldIPDaddr}, Set: "s", Neq: true}), "ip daddr != @s"},
		{"ifname", fxRule(Cmp{Field: FieldOifname, Value: IfnameValue("eth0")}), `oifname "eth0"`},
		{"log and comment", Rule{Exprs: []Expr{Log{Prefix: "p "}}, Comment: "c"}, `log prefix "p " comment "c"`},
		{"nflog", fxRule(Log{Prefix: "p", Group: 5, NFLog: true}), `log prefix "p" group 5`},
		{"nflog group 0", fxRule(Log{NFLog: true}), `log group 0`},
		{"named objects", fxRule(CounterRef{Name: "a/b"}, LimitRef{Name: "c:d"}, fxDrop()), `counter name "a/b" limit name "c:d" drop`},
		{"range", fxRule(Range{Field: FieldTHDport, From: PortValue(80), To: PortValue(90)}), "th dport 80-90"},
		{"tcp flags mid-stream", fxRule(MatchCtState{States: CtNew}, MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask, Neq: true},
			Lookup{Fields: []Field{FieldIPSaddr}, Set: "ingress-v4"}, fxDrop()),
			"ct state new tcp flags != syn / fin,syn,rst,ack ip saddr @ingress-v4 drop"},
		{"tcp flags start", fxRule(MatchTCPFlags{Flags: TCPSyn, Mask: TCPStartMask}), "tcp flags syn / fin,syn,rst,ack"},
		{"tcp flags one of", fxRule(MatchTCPFlags{Mask: TCPSyn | TCPAck, Neq: true}), "tcp flags syn,ack"},
		{"tcp flags none of", fxRule(MatchTCPFlags{Mask: TCPSyn | TCPAck}), "tcp flags ! syn,ack"},
		{"tcp flags exactly", fxRule(MatchTCPFlags{Flags: TCPSyn, Mask: 0xff}), "tcp flags == syn"},
		{"tcp flags exactly several", fxRule(MatchTCPFlags{Flags: TCPSyn | TCPAck, Mask: 0xff, Neq: true}), "tcp flags != 0x12"},
		{"tcp flags set the protocol of th", fxRule(MatchTCPFlags{Flags: TCPAck, Mask: TCPAck}, dport), "tcp flags & ack == ack tcp dport 80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RenderRule(tc.rule); got != tc.want {
				t.Errorf("RenderRule = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRenderElement(t *testing.T) {
	v4 := &Set{Key: []KeyType{TypeIPv4Addr}, Interval: true}
	v6 := &Set{Key: []KeyType{TypeIPv6Addr}, Interval: true}
	for _, tc := range []struct {
		set  *Set
		elem Element
		want string
	}{
		{v4, fxPrefix("198.18.0.0/16"), "198.18.0.0/16"},
		{v4, fxPrefix("0.0.0.0/0"), "0.0.0.0/0"},
		{v4, fxPrefix("198.18.0.7/32"), "198.18.0.7"},
		{v4, fxRange(fxAddr("198.18.0.0"), fxAddr("198.18.0.254")), "198.18.0.0-198.18.0.254"},
		{v4, fxRange(fxAddr("198.18.0.1"), fxAddr("198.18.0.2")), "198.18.0.1-198.18.0.2"},
		{v4, fxRange(fxAddr("198.18.0.2"), fxAddr("198.18.0.3")), "198.18.0.2/31"},
		{v6, fxPrefix("2001:db8::/32"), "2001:db8::/32"},
		{v6, fxRange(fxAddr("2001:db8::"), fxAddr("2001:db8::fffe")), "2001:db8::-2001:db8::fffe"},
		{&Set{Key: []KeyType{TypeInetService}, Interval: true}, fxRange(PortValue(0), PortValue(65535)), "0-65535"},
		{&Set{Key: []KeyType{TypeInetProto, TypeInetService}, Interval: true}, fxPorts(ProtoTCP, 80, 80), "tcp . 80"},
		{&Set{Key: []KeyType{TypeInetProto, TypeInetService}, Interval: true}, fxPorts(ProtoUDP, 1, 2), "udp . 1-2"},
		{&Set{Key: []KeyType{TypeIPv4Addr}, VerdictMap: true}, fxVmapElem(fxAddr("198.18.0.1"), fxGoto("c")), "198.18.0.1 : goto c"},
	} {
		if got := renderElement(tc.set, tc.elem); got != tc.want {
			t.Errorf("renderElement(%v) = %q, want %q", tc.elem, got, tc.want)
		}
	}
}

func TestRenderPriority(t *testing.T) {
	for prio, want := range map[int]string{
		0: "filter", 1: "filter + 1", -5: "filter - 5", 10: "filter + 10", 11: "11",
		50: "security", 45: "security - 5", -300: "raw", -150: "mangle", -140: "mangle + 10",
		-100: "-100", -95: "-95", 100: "100", 105: "105", 20: "20",
	} {
		if got := renderPriority(prio); got != want {
			t.Errorf("renderPriority(%d) = %q, want %q", prio, got, want)
		}
	}
}

// TestKernelRenderRoundTrip loads each golden program with `nft -f` into a fresh
// network namespace and checks that `nft list table` prints the same text, up to
// the order of blocks and of elements (nft prints both in kernel order).
func TestKernelRenderRoundTrip(t *testing.T) {
	ns := newRenderNetNS(t)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			table := "nftw-" + tc.name
			rendered := Render(table, tc.state())
			if out, err := nsExec(ns, rendered, "nft", "-f", "-"); err != nil {
				t.Fatalf("nft -f rejected the rendered text: %v\n%s\n%s", err, out, numbered(rendered))
			}
			t.Cleanup(func() {
				if out, err := nsExec(ns, "", "nft", "delete", "table", "inet", table); err != nil {
					t.Errorf("delete table %s: %v\n%s", table, err, out)
				}
			})
			listed, err := nsExec(ns, "", "nft", "list", "table", "inet", table)
			if err != nil {
				t.Fatalf("nft list table: %v\n%s", err, listed)
			}
			want, got := normalizeListing(rendered), normalizeListing(listed)
			if want != got {
				t.Errorf("nft lists the rendered table differently (- render, + nft):\n%s", lineDiff(want, got))
			}
		})
	}
}

// newRenderNetNS creates a network namespace for one test with `ip netns add`,
// deleted when the test ends; it skips the test without CAP_NET_ADMIN.
func newRenderNetNS(t *testing.T) string {
	t.Helper()
	if !hasCapNetAdmin(t) {
		t.Skip("privileged test: needs CAP_NET_ADMIN (run as root) to create a network namespace and load nftables")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("privileged test: %s binary not installed: %v", bin, err)
		}
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "nftw-render-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", name, err, out)
		}
	})
	return name
}

func hasCapNetAdmin(t *testing.T) bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("privileged test: cannot read capabilities: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			const capNetAdmin = 12
			return err == nil && caps&(1<<capNetAdmin) != 0
		}
	}
	return false
}

// nsExec runs a command inside the namespace with stdin, returning its combined
// output.
func nsExec(ns, stdin string, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var counterValuesRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// normalizeListing makes two listings of the same table comparable although nft
// prints blocks and hash-set elements in kernel order: it sorts the blocks of the
// table, and sorts the elements of each set while keeping how many elements each
// line holds (so a wrapping difference still shows). Counter values are zeroed.
// Everything else, whitespace included, is kept.
func normalizeListing(listing string) string {
	lines := strings.Split(strings.TrimRight(listing, "\n"), "\n")
	if len(lines) < 2 {
		return listing
	}
	head, tail := lines[0], lines[len(lines)-1]
	var (
		blocks []string
		cur    []string
	)
	for i := 1; i < len(lines)-1; i++ {
		line := counterValuesRE.ReplaceAllString(lines[i], "counter packets 0 bytes 0")
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "\t\telements = { "):
			// Gather the continuation lines of the element list.
			j := i
			for !strings.HasSuffix(lines[j], " }") && j+1 < len(lines)-1 {
				j++
			}
			cur = append(cur, sortElementLines(lines[i:j+1])...)
			i = j
			continue
		}
		cur = append(cur, line)
		if line == "\t}" {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	if len(cur) > 0 { // unterminated block: keep it visible
		blocks = append(blocks, strings.Join(cur, "\n"))
	}
	sort.Strings(blocks)
	return head + "\n" + strings.Join(blocks, "\n\n") + "\n" + tail + "\n"
}

func sortElementLines(lines []string) []string {
	const first, cont = "\t\telements = { ", "\t\t\t     "
	var (
		items []string
		shape []int
	)
	for i, l := range lines {
		if i == 0 {
			l = strings.TrimPrefix(l, first)
		} else {
			l = strings.TrimPrefix(l, cont)
		}
		l = strings.TrimSuffix(strings.TrimSuffix(l, " }"), ",")
		parts := strings.Split(l, ", ")
		items = append(items, parts...)
		shape = append(shape, len(parts))
	}
	sort.Strings(items)
	out := make([]string, len(lines))
	k := 0
	for i, n := range shape {
		prefix := cont
		if i == 0 {
			prefix = first
		}
		end := ","
		if i == len(shape)-1 {
			end = " }"
		}
		out[i] = prefix + strings.Join(items[k:k+n], ", ") + end
		k += n
	}
	return out
}

// lineDiff shows the lines that differ, numbered, for test failures.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "%4d - %q\n%4d + %q\n", i+1, wl, i+1, gl)
		}
	}
	return b.String()
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%4d %s\n", i+1, l)
	}
	return b.String()
}

func TestNormalizeListing(t *testing.T) {
	a := "table inet t {\n\tset b {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.0.2, 198.18.0.1,\n\t\t\t     198.18.0.3 }\n\t}\n\n\tchain a {\n\t\tcounter packets 5 bytes 300 drop\n\t}\n}\n"
	b := "table inet t {\n\tchain a {\n\t\tcounter packets 0 bytes 0 drop\n\t}\n\n\tset b {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.0.1, 198.18.0.3,\n\t\t\t     198.18.0.2 }\n\t}\n}\n"
	if normalizeListing(a) != normalizeListing(b) {
		t.Fatalf("same content normalizes differently:\n%s", lineDiff(normalizeListing(a), normalizeListing(b)))
	}
	// Wrapping after one element instead of two must still differ.
	c := strings.Replace(b, "198.18.0.1, 198.18.0.3,\n\t\t\t     198.18.0.2", "198.18.0.1,\n\t\t\t     198.18.0.3, 198.18.0.2", 1)
	if normalizeListing(c) == normalizeListing(b) {
		t.Fatal("normalization hides a wrapping difference")
	}
}
