package nft

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rule and chain messages are marshalled here rather than by google/nftables,
// as element messages are (elementmsgs.go).
//
// The library marshals a rule through an attribute slice and a byte slice
// per attribute, nested level by level, and each batch it builds through
// Flush: some 24 MB of garbage and 5-6% of the CPU of programming the
// 100,000-pod node (BenchmarkKernelEngineProgram), a node of tens of
// thousands of rules. These functions write the same bytes
// (TestRuleMessagesMatchTheLibrary) straight into a msgArena, for the kernel
// expressions lowerRule produces; any other expression is an error, never
// something sent differently.

const (
	newRuleType  = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)
	delRuleType  = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELRULE)
	newChainType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWCHAIN)
	delChainType = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELCHAIN)
)

// msgArena hands out the bodies of many small messages from a few large
// chunks, instead of one allocation each.
type msgArena struct{ buf []byte }

const (
	arenaChunk = 256 << 10
	// arenaRoom is the room a message is given in the current chunk; a
	// larger one (no rule comes near) still works, by a copy of the chunk.
	arenaRoom = 8 << 10
)

// begin returns the buffer to append one message's body to. Chunks start
// small and double up to arenaChunk, so that a delta of a few rules (an
// API write's batch) does not allocate and clear a whole chunk.
func (a *msgArena) begin() []byte {
	if cap(a.buf)-len(a.buf) < arenaRoom {
		a.buf = make([]byte, 0, min(arenaChunk, max(2*arenaRoom, 2*cap(a.buf))))
	}
	return a.buf
}

// end takes b, begin's buffer with one message's body appended, and returns
// that body, capped so that appending to it cannot touch the next one.
func (a *msgArena) end(b []byte) []byte {
	start := len(a.buf)
	a.buf = b
	return b[start:len(b):len(b)]
}

// nfgenHeader appends the nfgenmsg header of the table's messages.
func (k *Kernel) nfgenHeader(b []byte) []byte {
	return append(b, byte(k.table.Family), unix.NFNETLINK_V0, 0, 0)
}

// ruleMsg is one NEWRULE message.
type ruleMsg struct {
	chain string
	exprs []expr.Any
	ud    []byte
	// insert: before the chain's first rule (InsertRule), not appended.
	insert bool
	// position: after the rule of this handle (0: none).
	position uint64
	// id is the rule's NFTA_RULE_ID, positionID the ID of the rule of the
	// same batch it follows (0: none).
	id, positionID uint32
	echo           bool
}

// newRuleMessage marshals r as google/nftables' AddRule (InsertRule if
// r.insert) does, then the attributes it lacks: NFTA_RULE_ID and
// NFTA_RULE_POSITION_ID.
func (k *Kernel) newRuleMessage(a *msgArena, r ruleMsg) (netlink.Message, error) {
	b := k.nfgenHeader(a.begin())
	b = appendStringAttr(b, unix.NFTA_RULE_TABLE, k.table.Name)
	b = appendStringAttr(b, unix.NFTA_RULE_CHAIN, r.chain)
	b, list := attrStart(b)
	for _, e := range r.exprs {
		var err error
		if b, err = appendExpr(b, e); err != nil {
			return netlink.Message{}, fmt.Errorf("chain %q: %w", r.chain, err)
		}
	}
	b = attrEnd(b, list, unix.NLA_F_NESTED|unix.NFTA_RULE_EXPRESSIONS)
	if r.ud != nil {
		b = appendBytesAttr(b, unix.NFTA_RULE_USERDATA, r.ud)
	}
	if r.position != 0 {
		b = appendUint64Attr(b, unix.NFTA_RULE_POSITION, r.position)
	}
	if r.id != 0 {
		b = appendUint32Attr(b, unix.NFTA_RULE_ID, r.id)
	}
	if r.positionID != 0 {
		b = appendUint32Attr(b, nftaRulePositionID, r.positionID)
	}
	flags := netlink.Request | netlink.Create
	if !r.insert {
		flags |= unix.NLM_F_APPEND
	}
	if r.echo {
		flags |= netlink.Echo
	}
	return netlink.Message{Header: netlink.Header{Type: newRuleType, Flags: flags}, Data: a.end(b)}, nil
}

// flushChainMessage is google/nftables' FlushChain: a DELRULE of the chain
// without a handle.
func (k *Kernel) flushChainMessage(a *msgArena, chain string) netlink.Message {
	return k.delRuleMessage(a, chain, 0, 0)
}

// delRuleMessage is google/nftables' DelRule of the rule of handle in
// chain, or, handle 0, of the rule that message ID id of the batch adds (the
// library has no such call), or, both 0, of every rule of it (FlushChain).
func (k *Kernel) delRuleMessage(a *msgArena, chain string, handle uint64, id uint32) netlink.Message {
	b := k.nfgenHeader(a.begin())
	b = appendStringAttr(b, unix.NFTA_RULE_TABLE, k.table.Name)
	b = appendStringAttr(b, unix.NFTA_RULE_CHAIN, chain)
	switch {
	case handle != 0:
		b = appendUint64Attr(b, unix.NFTA_RULE_HANDLE, handle)
	case id != 0:
		b = appendUint32Attr(b, unix.NFTA_RULE_ID, id)
	}
	return netlink.Message{Header: netlink.Header{Type: delRuleType, Flags: netlink.Request}, Data: a.end(b)}
}

// newChainMessage is google/nftables' AddChain of c.
func (k *Kernel) newChainMessage(a *msgArena, c *nftables.Chain) netlink.Message {
	b := k.nfgenHeader(a.begin())
	b = appendStringAttr(b, unix.NFTA_CHAIN_TABLE, k.table.Name)
	b = appendStringAttr(b, unix.NFTA_CHAIN_NAME, c.Name)
	if c.Hooknum != nil && c.Priority != nil {
		var hook int
		b, hook = attrStart(b)
		b = appendUint32Attr(b, unix.NFTA_HOOK_HOOKNUM, uint32(*c.Hooknum))
		b = appendUint32Attr(b, unix.NFTA_HOOK_PRIORITY, uint32(*c.Priority))
		if c.Device != "" {
			b = appendStringAttr(b, unix.NFTA_HOOK_DEV, c.Device)
		}
		b = attrEnd(b, hook, unix.NLA_F_NESTED|unix.NFTA_CHAIN_HOOK)
	}
	if c.Policy != nil {
		b = appendUint32Attr(b, unix.NFTA_CHAIN_POLICY, uint32(*c.Policy))
	}
	if c.Type != "" {
		b = appendStringAttr(b, unix.NFTA_CHAIN_TYPE, string(c.Type))
	}
	return netlink.Message{Header: netlink.Header{Type: newChainType, Flags: netlink.Request | netlink.Create}, Data: a.end(b)}
}

// delChainMessage is google/nftables' DelChain.
func (k *Kernel) delChainMessage(a *msgArena, chain string) netlink.Message {
	b := k.nfgenHeader(a.begin())
	b = appendStringAttr(b, unix.NFTA_CHAIN_TABLE, k.table.Name)
	b = appendStringAttr(b, unix.NFTA_CHAIN_NAME, chain)
	return netlink.Message{Header: netlink.Header{Type: delChainType, Flags: netlink.Request}, Data: a.end(b)}
}

// keyedRegister names the attributes of an expression that reads or writes
// one keyed field of the packet or its connection (meta, ct): the key, and
// the register as SREG when the expression writes the field from it, as
// DREG when it loads the field into it.
type keyedRegister struct{ key, sreg, dreg uint16 }

// appendKeyedRegister appends the key and register attributes of a, in
// expr.Marshal's order.
func appendKeyedRegister(b []byte, a keyedRegister, key uint32, source bool, reg uint32) []byte {
	b = appendUint32Attr(b, a.key, key)
	if source {
		return appendUint32Attr(b, a.sreg, reg)
	}
	return appendUint32Attr(b, a.dreg, reg)
}

// appendExpr appends e as one element of a rule's expression list, as
// expr.Marshal writes it (attribute by attribute, in its order).
func appendExpr(b []byte, e expr.Any) ([]byte, error) {
	b, elem := attrStart(b)
	var data int
	switch e := e.(type) {
	case *expr.Meta:
		b, data = exprStart(b, "meta")
		b = appendKeyedRegister(b, keyedRegister{unix.NFTA_META_KEY, unix.NFTA_META_SREG, unix.NFTA_META_DREG},
			uint32(e.Key), e.SourceRegister, e.Register)
	case *expr.Payload:
		b, data = exprStart(b, "payload")
		if e.OperationType == expr.PayloadWrite {
			b = appendUint32Attr(b, unix.NFTA_PAYLOAD_SREG, e.SourceRegister)
		} else {
			b = appendUint32Attr(b, unix.NFTA_PAYLOAD_DREG, e.DestRegister)
		}
		b = appendUint32Attr(b, unix.NFTA_PAYLOAD_BASE, uint32(e.Base))
		b = appendUint32Attr(b, unix.NFTA_PAYLOAD_OFFSET, e.Offset)
		b = appendUint32Attr(b, unix.NFTA_PAYLOAD_LEN, e.Len)
		if e.CsumType > 0 {
			b = appendUint32Attr(b, unix.NFTA_PAYLOAD_CSUM_TYPE, uint32(e.CsumType))
			b = appendUint32Attr(b, unix.NFTA_PAYLOAD_CSUM_OFFSET, e.CsumOffset)
			if e.CsumFlags > 0 {
				b = appendUint32Attr(b, unix.NFTA_PAYLOAD_CSUM_FLAGS, e.CsumFlags)
			}
		}
	case *expr.Cmp:
		b, data = exprStart(b, "cmp")
		b = appendUint32Attr(b, unix.NFTA_CMP_SREG, e.Register)
		b = appendUint32Attr(b, unix.NFTA_CMP_OP, uint32(e.Op))
		b = appendValueAttr(b, unix.NLA_F_NESTED|unix.NFTA_CMP_DATA, e.Data)
	case *expr.Bitwise:
		b, data = exprStart(b, "bitwise")
		b = appendUint32Attr(b, unix.NFTA_BITWISE_SREG, e.SourceRegister)
		b = appendUint32Attr(b, unix.NFTA_BITWISE_DREG, e.DestRegister)
		b = appendUint32Attr(b, unix.NFTA_BITWISE_LEN, e.Len)
		b = appendValueAttr(b, unix.NLA_F_NESTED|unix.NFTA_BITWISE_MASK, e.Mask)
		b = appendValueAttr(b, unix.NLA_F_NESTED|unix.NFTA_BITWISE_XOR, e.Xor)
	case *expr.Lookup:
		b, data = exprStart(b, "lookup")
		if e.SourceRegister != 0 {
			b = appendUint32Attr(b, unix.NFTA_LOOKUP_SREG, e.SourceRegister)
		}
		if e.IsDestRegSet {
			b = appendUint32Attr(b, unix.NFTA_LOOKUP_DREG, e.DestRegister)
		}
		if e.Invert {
			b = appendUint32Attr(b, unix.NFTA_LOOKUP_FLAGS, unix.NFT_LOOKUP_F_INV)
		}
		b = appendStringAttr(b, unix.NFTA_LOOKUP_SET, e.SetName)
		b = appendUint32Attr(b, unix.NFTA_LOOKUP_SET_ID, e.SetID)
	case *expr.Immediate:
		b, data = exprStart(b, "immediate")
		b = appendUint32Attr(b, unix.NFTA_IMMEDIATE_DREG, e.Register)
		b = appendValueAttr(b, unix.NLA_F_NESTED|unix.NFTA_IMMEDIATE_DATA, e.Data)
	case *expr.Verdict:
		b, data = exprStart(b, "immediate")
		b = appendUint32Attr(b, unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT)
		var imm, verdict int
		b, imm = attrStart(b)
		b, verdict = attrStart(b)
		b = appendUint32Attr(b, unix.NFTA_VERDICT_CODE, uint32(e.Kind))
		if e.Chain != "" {
			b = appendStringAttr(b, unix.NFTA_VERDICT_CHAIN, e.Chain)
		}
		b = attrEnd(b, verdict, unix.NLA_F_NESTED|unix.NFTA_DATA_VERDICT)
		b = attrEnd(b, imm, unix.NLA_F_NESTED|unix.NFTA_IMMEDIATE_DATA)
	case *expr.Ct:
		b, data = exprStart(b, "ct")
		b = appendKeyedRegister(b, keyedRegister{unix.NFTA_CT_KEY, unix.NFTA_CT_SREG, unix.NFTA_CT_DREG},
			uint32(e.Key), e.SourceRegister, e.Register)
		switch e.Key {
		case expr.CtKeySRC, expr.CtKeyDST, expr.CtKeyPROTOSRC, expr.CtKeyPROTODST:
			b = appendUint32Attr(b, unix.NFTA_CT_DIRECTION, e.Direction)
		}
	case *expr.Log:
		b, data = exprStart(b, "log")
		if e.Key&(1<<unix.NFTA_LOG_GROUP) != 0 {
			b = appendUint16Attr(b, unix.NFTA_LOG_GROUP, e.Group)
		}
		if e.Key&(1<<unix.NFTA_LOG_PREFIX) != 0 {
			var prefix int
			b, prefix = attrStart(b)
			b = append(append(b, e.Data...), 0)
			b = attrEnd(b, prefix, unix.NFTA_LOG_PREFIX)
		}
		if e.Key&(1<<unix.NFTA_LOG_SNAPLEN) != 0 {
			b = appendUint32Attr(b, unix.NFTA_LOG_SNAPLEN, e.Snaplen)
		}
		if e.Key&(1<<unix.NFTA_LOG_QTHRESHOLD) != 0 {
			b = appendUint16Attr(b, unix.NFTA_LOG_QTHRESHOLD, e.QThreshold)
		}
		if e.Key&(1<<unix.NFTA_LOG_LEVEL) != 0 {
			b = appendUint32Attr(b, unix.NFTA_LOG_LEVEL, uint32(e.Level))
		}
		if e.Key&(1<<unix.NFTA_LOG_FLAGS) != 0 {
			b = appendUint32Attr(b, unix.NFTA_LOG_FLAGS, uint32(e.Flags))
		}
	case *expr.Counter:
		b, data = exprStart(b, "counter")
		b = appendUint64Attr(b, unix.NFTA_COUNTER_BYTES, e.Bytes)
		b = appendUint64Attr(b, unix.NFTA_COUNTER_PACKETS, e.Packets)
	case *expr.Objref:
		b, data = exprStart(b, "objref")
		b = appendUint32Attr(b, unix.NFTA_OBJREF_IMM_TYPE, uint32(e.Type))
		// Not NUL-terminated: google/nftables sends it so, and the kernel
		// accepts it (nla_strscpy stops at the attribute's end).
		var name int
		b, name = attrStart(b)
		b = append(b, e.Name...)
		b = attrEnd(b, name, unix.NFTA_OBJREF_IMM_NAME)
	default:
		return b[:elem], fmt.Errorf("kernel expression %T cannot be marshalled: %w", e, ErrInvalid)
	}
	b = attrEnd(b, data, unix.NLA_F_NESTED|unix.NFTA_EXPR_DATA)
	return attrEnd(b, elem, unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM), nil
}

// exprStart appends an expression's name and starts its data attribute.
func exprStart(b []byte, name string) ([]byte, int) {
	return attrStart(appendStringAttr(b, unix.NFTA_EXPR_NAME, name))
}

// appendBytesAttr appends an attribute holding v.
func appendBytesAttr(b []byte, typ uint16, v []byte) []byte {
	b, start := attrStart(b)
	b = append(b, v...)
	return attrEnd(b, start, typ)
}

// appendUint16Attr appends a big-endian 16-bit attribute.
func appendUint16Attr(b []byte, typ uint16, v uint16) []byte {
	var a [2]byte
	binary.BigEndian.PutUint16(a[:], v)
	return appendBytesAttr(b, typ, a[:])
}

// appendUint64Attr appends a big-endian 64-bit attribute.
func appendUint64Attr(b []byte, typ uint16, v uint64) []byte {
	var a [8]byte
	binary.BigEndian.PutUint64(a[:], v)
	return appendBytesAttr(b, typ, a[:])
}
