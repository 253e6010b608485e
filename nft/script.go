package nft

import (
	"strconv"
	"strings"
)

// String returns the transaction as an nft script for the default table
// (DefaultTable); see Format.
func (t *Transaction) String() string { return t.Format(DefaultTable) }

// Format returns the transaction as a script for table inet <table> that `nft
// -f` applies, as one atomic batch, with the same effect as Dataplane.Apply:
// `add table` first (the batch creates a missing table), then one command per
// operation, one per line:
//
//	add chain inet T name { comment "…"; type filter hook … priority …; policy …; }
//	flush chain inet T name                      (ReplaceRules, followed by
//	add rule inet T name <rule>                   one add rule per rule)
//	insert rule inet T name <rule>              (InsertRule at position 0,
//	add rule inet T name index P-1 <rule>         else after rule P-1)
//	# delete rule P of chain inet T name: <rule>
//	delete chain inet T name
//	add set|map inet T name { type …; flags interval; comment "…"; }
//	delete set inet T name                       (maps too)
//	add element inet T name { e1, e2 }
//	delete element inet T name { e1, e2 }
//	add counter inet T name { comment "…"; }
//	add limit inet T name { comment "…"; rate 100/second burst 200 packets; }
//	delete counter|limit inet T name
//
// Definitions, rules and elements are written as Render lists them, which nft
// reads back as the same objects. An element's key is written in its set's
// types: those of op.Set (Diff fills it in), else of an AddSet earlier in the
// transaction; without either (a hand-built transaction on a set it does not
// create), each component's type is guessed from its length, which cannot
// tell an ifname from an IPv6 address.
//
// What nft lists it does not always read back as the same bytecode, and so
// neither does a script: names are written bare, and nft cannot read a name
// that is one of its keywords (such as fwd or flags), nor a comment with a
// double quote, nor an object name with a colon; and an explicit `meta l4proto tcp` before a tcp flags match is
// read as the match's own dependency, one protocol match where the batch has
// two (same verdicts); nor (nft 1.0.6) a lookup with a tag, which it lists as
// `ip saddr . 0x2a000000 [invalid type] @peers-v4` (see Render) and cannot
// parse in any spelling: Kernel programs tagged rules through netlink, and a
// script with one is for reading only. nft deletes a rule only by its handle, which a
// transaction does not know (Kernel finds it): a DeleteRule is written as a
// comment, so a script with one does not have Apply's effect.
// TestKernelScriptMatchesApply checks the rest against the nft binary.
func (t *Transaction) Format(table string) string {
	var b strings.Builder
	target := "inet " + table + " "
	b.WriteString("add table inet " + table + "\n")
	created := map[string]*Set{}
	for _, op := range t.opsOrNil() {
		switch op.Kind {
		case OpAddChain:
			def := ""
			if op.Chain != nil {
				def = block(chainDefinition(op.Chain))
			}
			b.WriteString("add chain " + target + op.Name + def + "\n")
		case OpReplaceRules:
			b.WriteString("flush chain " + target + op.Name + "\n")
			if op.Chain != nil {
				for _, r := range op.Chain.Rules {
					b.WriteString("add rule " + target + op.Name + " " + RenderRule(r) + "\n")
				}
			}
		case OpInsertRule:
			rule := ""
			if op.Rule != nil {
				rule = RenderRule(*op.Rule)
			}
			if op.Position == 0 {
				b.WriteString("insert rule " + target + op.Name + " " + rule + "\n")
				continue
			}
			b.WriteString("add rule " + target + op.Name + " index " + strconv.Itoa(op.Position-1) + " " + rule + "\n")
		case OpDeleteRule:
			rule := ""
			if op.Rule != nil {
				rule = ": " + RenderRule(*op.Rule)
			}
			b.WriteString("# delete rule " + strconv.Itoa(op.Position) + " of chain " + target + op.Name + rule + "\n")
		case OpDeleteChain:
			b.WriteString("delete chain " + target + op.Name + "\n")
		case OpAddSet:
			if op.Set == nil {
				b.WriteString("# add set " + op.Name + " without a definition\n")
				continue
			}
			created[op.Name] = op.Set
			b.WriteString("add " + setKind(op.Set) + " " + target + op.Name + block(setDefinition(op.Set)) + "\n")
		case OpDeleteSet:
			b.WriteString("delete set " + target + op.Name + "\n")
		case OpAddElements, OpDeleteElements:
			verb := "add"
			if op.Kind == OpDeleteElements {
				verb = "delete"
			}
			set := op.Set
			if set == nil {
				set = created[op.Name]
			}
			elems := make([]string, len(op.Elements))
			for i, e := range op.Elements {
				s := set
				if s == nil {
					s = &Set{Key: guessKey(e.Key)}
				}
				elems[i] = renderElement(s, e)
			}
			b.WriteString(verb + " element " + target + op.Name + " { " + strings.Join(elems, ", ") + " }\n")
		case OpAddObject, OpDeleteObject:
			kind := ""
			if op.Object != nil {
				kind = objectKind(op.Object)
			}
			if kind == "" {
				b.WriteString("# " + op.Kind.String() + " " + op.Name + " without a definition\n")
				continue
			}
			if op.Kind == OpDeleteObject {
				b.WriteString("delete " + kind + " " + target + op.Name + "\n")
				continue
			}
			b.WriteString("add " + kind + " " + target + op.Name + block(objectDefinition(op.Object)) + "\n")
		default:
			b.WriteString("# " + op.Kind.String() + " " + op.Name + "\n")
		}
	}
	return b.String()
}

// block writes definition statements on one line, each ending in a semicolon,
// between braces; nothing when there are none.
func block(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" {")
	for _, l := range lines {
		b.WriteString(" " + l)
		if !strings.HasSuffix(l, ";") {
			b.WriteString(";")
		}
	}
	b.WriteString(" }")
	return b.String()
}

// guessKey returns the key types of the vocabulary whose lengths match the
// values of key (16 bytes: an IPv6 address).
func guessKey(key []Value) []KeyType {
	types := make([]KeyType, len(key))
	for i, v := range key {
		for _, t := range []KeyType{TypeIPv4Addr, TypeIPv6Addr, TypeInetProto, TypeInetService} {
			if t.Len() == len(v) {
				types[i] = t
				break
			}
		}
	}
	return types
}
