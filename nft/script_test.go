package nft

// Transaction.Format, line by line. Fixtures and IP plan: fake_test.go; the
// scripts are fed to the nft binary in kernel_script_test.go.

import (
	"testing"
)

func TestTransactionFormat(t *testing.T) {
	v4 := []KeyType{TypeIPv4Addr}
	ports := []KeyType{TypeInetProto, TypeInetService}
	for _, tc := range []struct {
		name string
		tx   func(tx *Transaction)
		want string // after the add table line
	}{
		{"empty", func(*Transaction) {}, ""},
		{"regular chain", func(tx *Transaction) { tx.AddChain(Chain{Name: "pod-in-web", Comment: "prod/web ingress"}) },
			`add chain inet t pod-in-web { comment "prod/web ingress"; }`},
		{"chain without comment", func(tx *Transaction) { tx.AddChain(Chain{Name: "c"}) }, "add chain inet t c"},
		{"base chain", func(tx *Transaction) {
			tx.AddChain(Chain{Name: "ingress", Base: &BaseChain{Hook: HookForward, Priority: PriorityFilter + 1, Policy: VerdictAccept}})
		}, "add chain inet t ingress { type filter hook forward priority filter + 1; policy accept; }"},
		{"rules", func(tx *Transaction) {
			tx.ReplaceRules("pod-in-web", []Rule{fxRule(fxJump("pol-in-allow-web")), {Exprs: []Expr{Counter{}, fxDrop()}, Comment: "deny"}})
		}, "flush chain inet t pod-in-web\n" +
			"add rule inet t pod-in-web jump pol-in-allow-web\n" +
			`add rule inet t pod-in-web counter packets 0 bytes 0 drop comment "deny"`},
		{"flush only", func(tx *Transaction) { tx.ReplaceRules("c", nil) }, "flush chain inet t c"},
		{"delete chain and set", func(tx *Transaction) { tx.DeleteChain("c"); tx.DeleteSet("ingress-v4") },
			"delete chain inet t c\ndelete set inet t ingress-v4"},
		{"interval set", func(tx *Transaction) {
			tx.AddSet(Set{Name: "ports-web", Key: ports, Interval: true, Comment: "tcp 80"})
		}, `add set inet t ports-web { type inet_proto . inet_service; flags interval; comment "tcp 80"; }`},
		{"verdict map", func(tx *Transaction) { tx.AddSet(Set{Name: "ingress-v4", Key: v4, VerdictMap: true}) },
			"add map inet t ingress-v4 { type ipv4_addr : verdict; }"},
		{"elements of a set made earlier", func(tx *Transaction) {
			tx.AddSet(Set{Name: "ports-web", Key: ports, Interval: true})
			tx.AddElements("ports-web", fxPorts(ProtoTCP, 80, 80), fxPorts(ProtoUDP, 0, 65535))
		}, "add set inet t ports-web { type inet_proto . inet_service; flags interval; }\n" +
			"add element inet t ports-web { tcp . 80, udp . 0-65535 }"},
		{"elements carrying their set's definition", func(tx *Transaction) {
			s := fxSet("cidr-v4-external", v4, nil, fxInterval)
			tx.Ops = append(tx.Ops, elementsOp(OpDeleteElements, s.Name, s, []Element{fxPrefix("198.19.2.0/23")}))
		}, "delete element inet t cidr-v4-external { 198.19.2.0/23 }"},
		{"verdicts", func(tx *Transaction) {
			s := fxSet("ingress-v4", v4, nil, fxVmap)
			tx.Ops = append(tx.Ops, elementsOp(OpAddElements, s.Name, s, []Element{
				fxVmapElem(fxAddr("198.18.0.10"), fxGoto("pod-in-web")), fxVmapElem(fxAddr("198.18.0.30"), fxDrop())}))
		}, "add element inet t ingress-v4 { 198.18.0.10 : goto pod-in-web, 198.18.0.30 : drop }"},
		{"elements of an unknown set: types from lengths", func(tx *Transaction) {
			tx.AddElements("named-v6", fxElem(fxAddr("2001:db8::a"), ProtoValue(ProtoTCP), PortValue(8080)))
			tx.DeleteElements("peer-v4", fxElem(fxAddr("198.18.0.10")))
		}, "add element inet t named-v6 { 2001:db8::a . tcp . 8080 }\ndelete element inet t peer-v4 { 198.18.0.10 }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &Transaction{}
			tc.tx(tx)
			want := "add table inet t\n"
			if tc.want != "" {
				want += tc.want + "\n"
			}
			if got := tx.Format("t"); got != want {
				t.Errorf("Format:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// Diff's element operations carry their set's definition, so String writes
// keys in the set's types even for sets the transaction does not create: an
// interface name is 16 bytes, as long as an IPv6 address.
func TestDiffScriptNamesKeyTypes(t *testing.T) {
	from := NewState()
	fxAdd(from, fxSet("ifaces", []KeyType{TypeIfname}, nil))
	to := from.Clone()
	e := fxElem(IfnameValue("veth0"))
	to.Sets["ifaces"].PutElements(e)
	want := "add table inet nftwarden\nadd element inet nftwarden ifaces { \"veth0\" }\n"
	if got := Diff(from, to, nil).String(); got != want {
		t.Errorf("String:\n%s\nwant:\n%s", got, want)
	}
}
