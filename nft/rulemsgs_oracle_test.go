package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The oracle of rulemsgs.go: the rule and chain messages of a transaction as
// Kernel built them with google/nftables before it marshalled them itself
// (the library's AddChain, FlushChain, AddRule, InsertRule, DelRule and
// DelChain, its acknowledge and echo flags cleared, then the rule IDs and
// position IDs the library lacks appended with netlink.MarshalAttributes).

// libraryRuleMessages returns the NEWCHAIN, DELCHAIN, NEWRULE and DELRULE
// messages google/nftables marshals for tx, in batch order, with rule IDs
// counted from ruleIDs as it is.
func (k *Kernel) libraryRuleMessages(tx *Transaction) ([]netlink.Message, error) {
	var captured []netlink.Message
	cc, err := newBuilder(&captured)
	if err != nil {
		return nil, err
	}
	// flush marshals what the calls queued on cc, as Kernel.queue did.
	flush := func() ([]netlink.Message, error) {
		captured = captured[:0]
		if err := cc.Flush(); err != nil {
			return nil, err
		}
		msgs := captured[1 : len(captured)-1]
		for i := range msgs {
			msgs[i].Header.Flags &^= netlink.Acknowledge | netlink.Echo
		}
		return append([]netlink.Message(nil), msgs...), nil
	}
	// withAttrs appends attrs and asks for an echo, as appendAttrs did.
	withAttrs := func(m *netlink.Message, attrs []netlink.Attribute, echo bool) error {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return err
		}
		m.Data = append(m.Data, b...)
		if echo {
			m.Header.Flags |= netlink.Echo
		}
		return nil
	}
	id32 := func(typ uint16, id uint32) netlink.Attribute {
		return netlink.Attribute{Type: typ, Data: binary.BigEndian.AppendUint32(nil, id)}
	}
	rb := newRuleBatch(tx)
	ops := tx.opsOrNil()
	var out []netlink.Message
	for _, i := range busySetsFirst(ops) {
		op := ops[i]
		c := &nftables.Chain{Name: op.Name, Table: k.table}
		switch op.Kind {
		case OpAddChain:
			kc, err := k.kernelChain(op.Chain)
			if err != nil {
				return nil, err
			}
			cc.AddChain(kc)
		case OpDeleteChain:
			rb.deletedChain(op.Name)
			cc.DelChain(c)
		case OpReplaceRules:
			cc.FlushChain(c)
			for _, r := range op.Chain.Rules {
				exprs, ud, err := lowerRule(r)
				if err != nil {
					return nil, err
				}
				cc.AddRule(&nftables.Rule{Table: k.table, Chain: c, Exprs: exprs, UserData: ud})
			}
			msgs, err := flush()
			if err != nil {
				return nil, err
			}
			if ids := rb.replacedEntries(op.Name, len(op.Chain.Rules)); ids != nil {
				for j := range ids {
					if err := withAttrs(&msgs[1+j], []netlink.Attribute{id32(unix.NFTA_RULE_ID, ids[j])}, rb.echoAll); err != nil {
						return nil, err
					}
				}
			}
			out = append(out, msgs...)
			continue
		case OpDeleteRule:
			entries, err := k.chainEntries(rb, op.Name)
			if err != nil {
				return nil, err
			}
			e := entries[op.Position]
			rb.entries[op.Name] = append(entries[:op.Position:op.Position], entries[op.Position+1:]...)
			if e.handle == 0 {
				out = append(out, oracleDeleteRuleByID(k, op.Name, e.id))
				continue
			}
			if err := cc.DelRule(&nftables.Rule{Table: k.table, Chain: c, Handle: e.handle}); err != nil {
				return nil, err
			}
		case OpInsertRule:
			entries, err := k.chainEntries(rb, op.Name)
			if err != nil {
				return nil, err
			}
			exprs, ud, err := lowerRule(*op.Rule)
			if err != nil {
				return nil, err
			}
			p := op.Position
			id := ruleIDs.Add(1)
			r := &nftables.Rule{Table: k.table, Chain: c, Exprs: exprs, UserData: ud}
			extra := []netlink.Attribute{id32(unix.NFTA_RULE_ID, id)}
			switch {
			case p == 0:
				cc.InsertRule(r)
			case entries[p-1].handle != 0:
				r.Position = entries[p-1].handle
				cc.AddRule(r)
			default:
				extra = append(extra, id32(nftaRulePositionID, entries[p-1].id))
				cc.AddRule(r)
			}
			rb.entries[op.Name] = append(entries[:p:p], append([]ruleEntry{{id: id}}, entries[p:]...)...)
			msgs, err := flush()
			if err != nil {
				return nil, err
			}
			if err := withAttrs(&msgs[0], extra, true); err != nil {
				return nil, err
			}
			out = append(out, msgs...)
			continue
		default:
			continue
		}
		msgs, err := flush()
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// ruleMessagesMismatch builds tx as Kernel does and as the oracle does,
// from the same rule IDs, and describes the first rule or chain message
// that differs (nil: none does). handles are the rule handles Kernel is
// taken to know.
func ruleMessagesMismatch(tx *Transaction, handles map[string][]uint64) error {
	k := &Kernel{table: &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet}, sets: map[string]setDef{}, objects: map[string]kernelObject{}, tamper: newTamperLog()}
	k.knowHandles(handles)
	start := ruleIDs.Load()
	q, err := k.build(tx)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	var got []netlink.Message
	for _, s := range q.steps {
		for _, m := range s.raw {
			switch uint16(m.Header.Type) &^ (unix.NFNL_SUBSYS_NFTABLES << 8) {
			case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
				got = append(got, m)
			}
		}
	}
	k.knowHandles(handles)
	ruleIDs.Store(start)
	want, err := k.libraryRuleMessages(tx)
	if err != nil {
		return fmt.Errorf("library: %w", err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d rule and chain messages, the library %d", len(got), len(want))
	}
	for i := range got {
		// Only type and flags: length, sequence and port are sendOnce's.
		if got[i].Header.Type != want[i].Header.Type || got[i].Header.Flags != want[i].Header.Flags {
			return fmt.Errorf("message %d (%s): header %+v, the library's %+v", i, describeMessage(want[i]), got[i].Header, want[i].Header)
		}
		if !bytes.Equal(got[i].Data, want[i].Data) {
			return fmt.Errorf("message %d (%s):\n got %x\nwant %x", i, describeMessage(want[i]), got[i].Data, want[i].Data)
		}
	}
	if len(got) == 0 && tx.Size() > 0 {
		for _, op := range tx.opsOrNil() {
			if op.Kind == OpReplaceRules || op.Kind == OpAddChain {
				return fmt.Errorf("no rule or chain message compared")
			}
		}
	}
	return nil
}

// oracleDeleteRuleByID is the old path's message deleting the rule that message ID id of the
// batch adds to chain.
func oracleDeleteRuleByID(k *Kernel, chain string, id uint32) netlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, k.table.Name)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	ae.Bytes(unix.NFTA_RULE_ID, binary.BigEndian.AppendUint32(nil, id))
	data, _ := ae.Encode() // fixed attributes: cannot fail
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELRULE), Flags: netlink.Request},
		Data:   append([]byte{byte(k.table.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	}
}
