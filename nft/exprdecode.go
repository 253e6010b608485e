package nft

import (
	"bytes"
	"fmt"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// decodeExprs decodes a rule's NFTA_RULE_EXPRESSIONS into google/nftables
// expressions for liftRule, for the kinds the vocabulary lowers to; any
// other kind makes the rule unreadable. It reads exactly the attributes
// google/nftables' own decoders (expr.Unmarshal) read, into the same fields
// (TestDecodeExprsMatchesLibrary holds it to that), but walks them in place
// (attrs): the library's decoders allocate a slice of attributes per nesting
// level, which for a table of 20,000 rules was most of reading them. Byte
// values alias b; liftRule copies what it keeps.
func decodeExprs(b []byte) ([]expr.Any, error) {
	var out []expr.Any
	list := attrs{b: b}
	for list.next() {
		if list.typ != unix.NFTA_LIST_ELEM {
			continue
		}
		var name, data []byte
		for a := list.nested(); a.next(); {
			switch a.typ {
			case unix.NFTA_EXPR_NAME:
				name = bytes.TrimRight(a.val, "\x00")
			case unix.NFTA_EXPR_DATA:
				data = a.val
			}
			if a.err != nil {
				return nil, a.err
			}
		}
		e, err := decodeExpr(exprName(name), data)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, list.err
}

// exprNames are the kinds decodeExpr knows.
var exprNames = []string{"meta", "payload", "cmp", "bitwise", "ct", "range", "lookup", "counter", "log", "objref", "immediate"}

// exprName returns b as a string, without allocating for the known kinds.
func exprName(b []byte) string {
	for _, n := range exprNames {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

// decodeExpr decodes the data of one expression called name.
func decodeExpr(name string, data []byte) (expr.Any, error) {
	a := attrs{b: data}
	var e expr.Any
	switch name {
	case "meta":
		m := &expr.Meta{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_META_SREG:
				m.Register, m.SourceRegister = a.u32(), true
			case unix.NFTA_META_DREG:
				m.Register = a.u32()
			case unix.NFTA_META_KEY:
				m.Key = expr.MetaKey(a.u32())
			}
		}
		e = m
	case "payload":
		p := &expr.Payload{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_PAYLOAD_DREG:
				p.DestRegister = a.u32()
			case unix.NFTA_PAYLOAD_SREG:
				p.SourceRegister, p.OperationType = a.u32(), expr.PayloadWrite
			case unix.NFTA_PAYLOAD_BASE:
				p.Base = expr.PayloadBase(a.u32())
			case unix.NFTA_PAYLOAD_OFFSET:
				p.Offset = a.u32()
			case unix.NFTA_PAYLOAD_LEN:
				p.Len = a.u32()
			case unix.NFTA_PAYLOAD_CSUM_TYPE:
				p.CsumType = expr.PayloadCsumType(a.u32())
			case unix.NFTA_PAYLOAD_CSUM_OFFSET:
				p.CsumOffset = a.u32()
			case unix.NFTA_PAYLOAD_CSUM_FLAGS:
				p.CsumFlags = a.u32()
			}
		}
		e = p
	case "cmp":
		c := &expr.Cmp{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_CMP_SREG:
				c.Register = a.u32()
			case unix.NFTA_CMP_OP:
				c.Op = expr.CmpOp(a.u32())
			case unix.NFTA_CMP_DATA:
				c.Data = a.firstValue()
			}
		}
		e = c
	case "bitwise":
		w := &expr.Bitwise{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_BITWISE_SREG:
				w.SourceRegister = a.u32()
			case unix.NFTA_BITWISE_DREG:
				w.DestRegister = a.u32()
			case unix.NFTA_BITWISE_LEN:
				w.Len = a.u32()
			case unix.NFTA_BITWISE_MASK:
				w.Mask = a.lastValue()
			case unix.NFTA_BITWISE_XOR:
				w.Xor = a.lastValue()
			}
		}
		e = w
	case "ct":
		c := &expr.Ct{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_CT_KEY:
				c.Key = expr.CtKey(a.u32())
			case unix.NFTA_CT_DREG:
				c.Register = a.u32()
			case unix.NFTA_CT_DIRECTION:
				c.Direction = a.u32()
			}
		}
		e = c
	case "range":
		r := &expr.Range{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_RANGE_OP:
				r.Op = expr.CmpOp(a.u32())
			case unix.NFTA_RANGE_SREG:
				r.Register = a.u32()
			case unix.NFTA_RANGE_FROM_DATA:
				r.FromData = a.firstValue()
			case unix.NFTA_RANGE_TO_DATA:
				r.ToData = a.firstValue()
			}
		}
		e = r
	case "lookup":
		l := &expr.Lookup{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_LOOKUP_SET:
				l.SetName = a.str()
			case unix.NFTA_LOOKUP_SET_ID:
				l.SetID = a.u32()
			case unix.NFTA_LOOKUP_SREG:
				l.SourceRegister = a.u32()
			case unix.NFTA_LOOKUP_DREG:
				l.DestRegister, l.IsDestRegSet = a.u32(), true
			case unix.NFTA_LOOKUP_FLAGS:
				l.Invert = a.u32()&unix.NFT_LOOKUP_F_INV != 0
			}
		}
		e = l
	case "counter":
		c, err := parseCounterData(data) // a counter object's data, the same attributes
		if err != nil {
			return nil, fmt.Errorf("expression %q: %w", name, err)
		}
		e = &expr.Counter{Bytes: c.Bytes, Packets: c.Packets}
	case "log":
		l, err := decodeLog(data)
		if err != nil {
			return nil, fmt.Errorf("expression %q: %w", name, err)
		}
		e = l
	case "objref":
		o := &expr.Objref{}
		for a.next() {
			switch a.typ {
			case unix.NFTA_OBJREF_IMM_TYPE:
				o.Type = int(a.u32())
			case unix.NFTA_OBJREF_IMM_NAME:
				o.Name = a.str()
			}
		}
		e = o
	case "immediate":
		v, err := decodeImmediate(data)
		if err != nil {
			return nil, err
		}
		e = v
	default:
		return nil, fmt.Errorf("unsupported expression %q", name)
	}
	if a.err != nil {
		return nil, fmt.Errorf("expression %q: %w", name, a.err)
	}
	return e, nil
}

// firstValue is the value of an nft_data attribute as the library reads a
// comparison's or range's: NFTA_DATA_VALUE if it is the first attribute
// inside, else nil.
func (a *attrs) firstValue() []byte {
	in := a.nested()
	if in.next() && in.typ == unix.NFTA_DATA_VALUE {
		return in.val
	}
	if in.err != nil {
		a.err, a.b = in.err, nil
	}
	return nil
}

// lastValue is the value of an nft_data attribute as the library reads a
// bitwise mask or xor: the last NFTA_DATA_VALUE inside.
func (a *attrs) lastValue() []byte {
	v, err := dataValue(a.val)
	if err != nil {
		a.err, a.b = err, nil
	}
	return v
}

// decodeLog decodes a log statement: Key records which attributes it has.
func decodeLog(data []byte) (*expr.Log, error) {
	l := &expr.Log{}
	a := attrs{b: data}
	for a.next() {
		l.Key |= 1 << uint32(a.typ)
		switch a.typ {
		case unix.NFTA_LOG_GROUP:
			l.Group = uint16(a.u16())
		case unix.NFTA_LOG_PREFIX:
			l.Data = bytes.TrimSuffix(a.val, []byte{0})
		case unix.NFTA_LOG_SNAPLEN:
			l.Snaplen = a.u32()
		case unix.NFTA_LOG_QTHRESHOLD:
			l.QThreshold = uint16(a.u16())
		case unix.NFTA_LOG_LEVEL:
			l.Level = expr.LogLevel(a.u32())
		case unix.NFTA_LOG_FLAGS:
			l.Flags = expr.LogFlags(a.u32())
		}
	}
	return l, a.err
}

func (a *attrs) u16() uint16 {
	if len(a.val) != 2 {
		a.fail(2)
		return 0
	}
	return uint16(a.val[0])<<8 | uint16(a.val[1])
}

// decodeImmediate decodes an immediate expression as the library does: a
// verdict (an immediate into the verdict register without a value), or else
// the value it loads into a register (*expr.Immediate, which liftRule takes
// only as a lookup key's tag).
func decodeImmediate(data []byte) (expr.Any, error) {
	var (
		reg      uint32
		value    []byte
		verdict  []byte
		haveData bool
	)
	a := attrs{b: data}
	for a.next() {
		switch a.typ {
		case unix.NFTA_IMMEDIATE_DREG:
			reg = a.u32()
		case unix.NFTA_IMMEDIATE_DATA:
			haveData = true
			for in := a.nested(); in.next(); {
				switch in.typ {
				case unix.NFTA_DATA_VALUE:
					value = in.val
				case unix.NFTA_DATA_VERDICT:
					verdict = in.val
				}
				if in.err != nil {
					return nil, fmt.Errorf("immediate: %w", in.err)
				}
			}
		}
	}
	if a.err != nil {
		return nil, fmt.Errorf("immediate: %w", a.err)
	}
	if reg != unix.NFT_REG_VERDICT || len(value) != 0 {
		return &expr.Immediate{Register: reg, Data: value}, nil
	}
	v := &expr.Verdict{}
	if !haveData || verdict == nil {
		return v, nil // verdict code 0 (continue), as the library reads it
	}
	var code bool
	for in := (attrs{b: verdict}); in.next(); {
		switch in.typ {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(in.u32()))
			code = true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = in.str()
		}
		if in.err != nil {
			return nil, fmt.Errorf("verdict: %w", in.err)
		}
	}
	if !code {
		return nil, fmt.Errorf("verdict without a code")
	}
	return v, nil
}
