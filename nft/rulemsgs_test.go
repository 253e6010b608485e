package nft

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Unprivileged tests of rulemsgs.go: every rule and chain message Kernel
// marshals is, byte for byte, the one google/nftables marshalled for it
// (rulemsgs_oracle_test.go), for the vocabulary, random rules, rule edits by
// position and every kind of chain; TestKernelRuleMessagesMatchTheLibrary
// (nft_test) adds the golden programs and a synthetic node.

// randomRule is a rule of random vocabulary expressions and comment (the
// addresses in 198.18.0.0/15 and 2001:db8::/32).
func randomRule(r *rand.Rand) Rule {
	fields := []Field{FieldNfproto, FieldL4Proto, FieldIPSaddr, FieldIPDaddr, FieldIP6Saddr, FieldIP6Daddr, FieldTHDport, FieldIifname, FieldOifname}
	value := func(f Field) Value {
		v := make(Value, f.Type().Len())
		for i := range v {
			v[i] = byte(r.IntN(256))
		}
		switch {
		case f == FieldIPSaddr || f == FieldIPDaddr:
			v[0], v[1] = 198, 18+byte(r.IntN(2))
		case f == FieldIP6Saddr || f == FieldIP6Daddr:
			copy(v, []byte{0x20, 0x01, 0x0d, 0xb8})
		case f == FieldNfproto:
			v[0] = []byte{NfprotoIPv4, NfprotoIPv6}[r.IntN(2)]
		case f == FieldIifname || f == FieldOifname:
			clear(v)
			copy(v, fmt.Sprintf("eth%d", r.IntN(100)))
		}
		return v
	}
	someFields := func(n int) []Field {
		out := make([]Field, n)
		for i := range out {
			out[i] = fields[2+r.IntN(len(fields)-4)] // addresses and ports: they fit the registers
		}
		return out
	}
	name := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, r.IntN(100000)) }
	var exprs []Expr
	for range r.IntN(6) {
		switch r.IntN(11) {
		case 0:
			f := fields[r.IntN(len(fields))]
			exprs = append(exprs, Cmp{Field: f, Neq: r.IntN(2) == 0, Value: value(f)})
		case 1:
			f := fields[r.IntN(len(fields))]
			exprs = append(exprs, Range{Field: f, From: value(f), To: value(f)})
		case 2:
			var tag Value
			if r.IntN(2) == 0 {
				tag = TagValue(r.Uint32())
			}
			exprs = append(exprs, Lookup{Fields: someFields(1 + r.IntN(2)), Set: name("set"), Neq: r.IntN(3) == 0, Tag: tag})
		case 3:
			exprs = append(exprs, VerdictMapLookup{Fields: someFields(1 + r.IntN(2)), Map: name("vmap")})
		case 4:
			exprs = append(exprs, MatchCtState{States: CtState(1 + r.IntN(15))})
		case 5:
			mask := TCPFlags(1 + r.IntN(255))
			exprs = append(exprs, MatchTCPFlags{Flags: TCPFlags(r.IntN(256)) & mask, Mask: mask, Neq: r.IntN(2) == 0})
		case 6:
			exprs = append(exprs, Counter{})
		case 7:
			l := Log{Prefix: strings.Repeat("p", r.IntN(MaxLogPrefix+1))}
			if r.IntN(2) == 0 {
				l.NFLog, l.Group = true, uint16(r.IntN(65536))
			}
			exprs = append(exprs, l)
		case 8:
			exprs = append(exprs, CounterRef{Name: name("np/c:")})
		case 9:
			exprs = append(exprs, LimitRef{Name: name("lim")})
		case 10:
			exprs = append(exprs, Cmp{Field: FieldL4Proto, Value: ProtoValue(ProtoTCP)})
		}
	}
	if r.IntN(4) != 0 {
		v := Verdict{Kind: []VerdictKind{VerdictAccept, VerdictDrop, VerdictJump, VerdictGoto, VerdictReturn, VerdictContinue}[r.IntN(6)]}
		if v.Kind == VerdictJump || v.Kind == VerdictGoto {
			v.Chain = name("chain")
		}
		exprs = append(exprs, v)
	}
	var comment string
	if r.IntN(2) == 0 {
		comment = strings.Repeat("c", r.IntN(129))
	}
	return Rule{Exprs: exprs, Comment: comment}
}

// randomRules returns n random rules that lower (and the kernel expression
// types they use).
func randomRules(t *testing.T, seed uint64, n int) ([]Rule, map[string]bool) {
	r := rand.New(rand.NewPCG(seed, 1))
	types := map[string]bool{}
	var rules []Rule
	for len(rules) < n {
		rule := randomRule(r)
		exprs, _, err := lowerRule(rule)
		if err != nil {
			continue
		}
		for _, e := range exprs {
			types[reflect.TypeOf(e).String()] = true
		}
		rules = append(rules, rule)
	}
	if len(rules) < n {
		t.Fatalf("only %d random rules lower", len(rules))
	}
	return rules, types
}

func baseChain(name string, hook Hook, prio int, policy VerdictKind) *Chain {
	return &Chain{Name: name, Base: &BaseChain{Hook: hook, Priority: prio, Policy: policy}}
}

func TestRuleMessagesMatchTheLibrary(t *testing.T) {
	rules, types := randomRules(t, 16, 3000)
	for _, want := range []string{"*expr.Meta", "*expr.Payload", "*expr.Cmp", "*expr.Bitwise", "*expr.Lookup", "*expr.Immediate",
		"*expr.Verdict", "*expr.Ct", "*expr.Log", "*expr.Counter", "*expr.Objref"} {
		if !types[want] {
			t.Errorf("the random rules lower to no %s", want)
		}
	}
	replace := func(chain string, rules ...Rule) Op {
		return Op{Kind: OpReplaceRules, Name: chain, Chain: &Chain{Name: chain, Rules: rules}}
	}
	insert := func(chain string, p int, r Rule) Op {
		return Op{Kind: OpInsertRule, Name: chain, Position: p, Rule: &r}
	}
	del := func(chain string, p int) Op { return Op{Kind: OpDeleteRule, Name: chain, Position: p} }
	edits := []Op{
		{Kind: OpAddChain, Name: "fwd", Chain: baseChain("fwd", HookForward, 0, VerdictAccept)},
		{Kind: OpAddChain, Name: "in", Chain: baseChain("in", HookInput, -150, VerdictDrop)},
		{Kind: OpAddChain, Name: "out", Chain: baseChain("out", HookOutput, 2147483647, VerdictAccept)},
		{Kind: OpAddChain, Name: "regular", Chain: &Chain{Name: "regular", Comment: "ignored by the library"}},
		insert("c", 0, rules[0]), // before the first
		insert("c", 2, rules[1]), // after a known handle
		insert("c", 1, rules[2]), // after a rule of the batch
		del("c", 4),              // by handle
		del("c", 0),              // by ID
		replace("d", rules[3:10]...),
		insert("d", 3, rules[10]),
		del("d", 1),
		{Kind: OpDeleteChain, Name: "e"},
		replace("empty"),
	}
	handles := map[string][]uint64{"c": {10, 11, 12}}
	for _, tc := range []struct {
		name string
		tx   *Transaction
	}{
		{"vocabulary", Diff(nil, renderVocabulary(), nil)},
		{"edits", &Transaction{Ops: edits}},
		{"random rules, echoed", &Transaction{Ops: []Op{replace("r", rules[:500]...)}}},
		// muteMinSize or more: rule IDs only on chains edited later, no echoes
		{"random rules", &Transaction{Ops: append([]Op{replace("r", rules...), replace("s", rules[:10]...)}, edits...)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ruleMessagesMismatch(tc.tx, handles); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestExprAppendersMatchTheLibrary: every branch of appendExpr writes what
// expr.Marshal does, including those lowerRule does not reach.
func TestExprAppendersMatchTheLibrary(t *testing.T) {
	for _, e := range []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 9, SourceRegister: true},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2,
			CsumType: expr.CsumTypeInet, CsumOffset: 16},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2,
			CsumType: expr.CsumTypeInet, CsumOffset: 16, CsumFlags: 1},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 9, Data: []byte{1, 2, 3}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nil},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 2, Len: 3, Mask: []byte{1, 2, 3}, Xor: []byte{4, 5, 6}},
		&expr.Lookup{SetName: "s"},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, Invert: true, SetName: "vmap-x", SetID: 77},
		&expr.Immediate{Register: 9, Data: []byte{1, 2, 3, 4, 5}},
		&expr.Verdict{Kind: expr.VerdictReturn},
		&expr.Verdict{Kind: expr.VerdictGoto, Chain: "abc"},
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 2, SourceRegister: true},
		&expr.Ct{Key: expr.CtKeySRC, Register: 1, Direction: 1},
		&expr.Ct{Key: expr.CtKeyPROTODST, Register: 1},
		&expr.Log{},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_QTHRESHOLD |
			1<<unix.NFTA_LOG_LEVEL | 1<<unix.NFTA_LOG_FLAGS, Group: 3, Data: []byte("pre"), Snaplen: 9, QThreshold: 4, Level: 5, Flags: 6},
		&expr.Counter{},
		&expr.Counter{Bytes: 1 << 40, Packets: 7},
		&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: "np/a:b"},
		&expr.Objref{Type: unix.NFT_OBJECT_LIMIT, Name: "four"},
	} {
		t.Run(fmt.Sprintf("%T", e), func(t *testing.T) {
			want, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendExpr([]byte{0xee}, e)
			if err != nil {
				t.Fatal(err)
			}
			if got[0] != 0xee || !bytes.Equal(got[1+4:], want) {
				t.Errorf("%#v:\n got %x\nwant %x", e, got[1:], want)
			}
		})
	}
	if _, err := appendExpr(nil, &expr.Masq{}); err == nil {
		t.Error("appendExpr marshalled an expression it does not know")
	}
}
