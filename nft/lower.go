package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file lowers the vocabulary to google/nftables expression lists and set
// elements, and lifts kernel expression lists back. Both directions go through the
// same tables (fieldDefs, verdictKinds, keyTypes) so that they cannot drift apart,
// and the lowering mirrors what nft 1.0 emits for the same rule text, so that
// `nft list` prints our rules as if nft had written them.

// fieldDef says how the kernel loads one Field into a register.
type fieldDef struct {
	field Field
	// family is the NFPROTO the field implies (0: none). nft adds a
	// "meta nfproto <family>" check before such loads in inet tables.
	family byte
	// meta key for meta loads; payload base/offset/len otherwise.
	payload bool
	meta    expr.MetaKey
	base    expr.PayloadBase
	offset  uint32
	len     uint32
}

var fieldDefs = []fieldDef{
	{field: FieldNfproto, meta: expr.MetaKeyNFPROTO, len: 1},
	{field: FieldL4Proto, meta: expr.MetaKeyL4PROTO, len: 1},
	{field: FieldIifname, meta: expr.MetaKeyIIFNAME, len: 16},
	{field: FieldOifname, meta: expr.MetaKeyOIFNAME, len: 16},
	{field: FieldIPSaddr, family: NfprotoIPv4, payload: true, base: expr.PayloadBaseNetworkHeader, offset: 12, len: 4},
	{field: FieldIPDaddr, family: NfprotoIPv4, payload: true, base: expr.PayloadBaseNetworkHeader, offset: 16, len: 4},
	{field: FieldIP6Saddr, family: NfprotoIPv6, payload: true, base: expr.PayloadBaseNetworkHeader, offset: 8, len: 16},
	{field: FieldIP6Daddr, family: NfprotoIPv6, payload: true, base: expr.PayloadBaseNetworkHeader, offset: 24, len: 16},
	{field: FieldTHDport, payload: true, base: expr.PayloadBaseTransportHeader, offset: 2, len: 2},
}

func lookupField(f Field) (fieldDef, bool) {
	for _, d := range fieldDefs {
		if d.field == f {
			return d, true
		}
	}
	return fieldDef{}, false
}

func (d fieldDef) load(reg uint32) expr.Any {
	if d.payload {
		return &expr.Payload{DestRegister: reg, Base: d.base, Offset: d.offset, Len: d.len}
	}
	return &expr.Meta{Key: d.meta, Register: reg}
}

// fieldOfLoad is the inverse of fieldDef.load.
func fieldOfLoad(e expr.Any) (Field, bool) {
	for _, d := range fieldDefs {
		switch e := e.(type) {
		case *expr.Meta:
			if !d.payload && !e.SourceRegister && e.Key == d.meta {
				return d.field, true
			}
		case *expr.Payload:
			if d.payload && e.OperationType == expr.PayloadLoad && e.Base == d.base && e.Offset == d.offset && e.Len == d.len {
				return d.field, true
			}
		}
	}
	return 0, false
}

// Registers as nft allocates them: a single value goes to the 128-bit register 1;
// a concatenation fills consecutive 32-bit registers starting with the first word
// of register 1 (NFT_REG32_00 aliases it), each field rounded up to 4 bytes.
func concatRegister(word uint32) uint32 {
	if word == 0 {
		return unix.NFT_REG_1
	}
	return unix.NFT_REG32_00 + word
}

// words is the number of 32-bit registers a value of n bytes occupies.
func words(n uint32) uint32 { return (n + 3) / 4 }

var verdictKinds = []struct {
	ours   VerdictKind
	kernel expr.VerdictKind
}{
	{VerdictAccept, expr.VerdictAccept},
	{VerdictDrop, expr.VerdictDrop},
	{VerdictJump, expr.VerdictJump},
	{VerdictGoto, expr.VerdictGoto},
	{VerdictReturn, expr.VerdictReturn},
	{VerdictContinue, expr.VerdictContinue},
}

func lowerVerdict(v Verdict) (*expr.Verdict, error) {
	for _, k := range verdictKinds {
		if k.ours == v.Kind {
			jumps := v.Kind == VerdictJump || v.Kind == VerdictGoto
			if jumps != (v.Chain != "") {
				return nil, fmt.Errorf("verdict %d with chain %q: %w", v.Kind, v.Chain, ErrInvalid)
			}
			return &expr.Verdict{Kind: k.kernel, Chain: v.Chain}, nil
		}
	}
	return nil, fmt.Errorf("unknown verdict kind %d: %w", v.Kind, ErrInvalid)
}

func liftVerdict(v expr.Verdict) (Verdict, error) {
	for _, k := range verdictKinds {
		if k.kernel == v.Kind {
			return Verdict{Kind: k.ours, Chain: v.Chain}, nil
		}
	}
	return Verdict{}, fmt.Errorf("unsupported verdict code %d", v.Kind)
}

// ruleBuilder is the one place that turns vocabulary expressions into kernel
// expressions.
type ruleBuilder struct {
	out []expr.Any
	// deps records the families whose implicit "meta nfproto" check this rule
	// already carries (nft emits it once per family per rule).
	deps map[byte]bool
	// tcpDep records that the rule carries the implicit "meta l4proto tcp"
	// check of a tcp flags match (also once per rule).
	tcpDep bool
}

// tcpFlagsLoad loads the flags byte of the TCP header, as nft does for
// `tcp flags`.
var tcpFlagsLoad = expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1}

func isTCPFlagsLoad(p *expr.Payload) bool {
	return p.OperationType == expr.PayloadLoad && p.Base == tcpFlagsLoad.Base &&
		p.Offset == tcpFlagsLoad.Offset && p.Len == tcpFlagsLoad.Len
}

// allTCPFlags is a mask that keeps every flag: nft compares the flags byte
// without a bitwise step then (`tcp flags == syn`).
const allTCPFlags = TCPFlags(0xff)

// loadFields emits the implicit family checks and the loads of fields into
// consecutive registers, and returns the register holding the (first) value.
func (b *ruleBuilder) loadFields(fields []Field) (uint32, error) {
	if len(fields) == 0 {
		return 0, fmt.Errorf("expression without fields: %w", ErrInvalid)
	}
	defs := make([]fieldDef, len(fields))
	for i, f := range fields {
		d, ok := lookupField(f)
		if !ok {
			return 0, fmt.Errorf("unknown field %d: %w", f, ErrInvalid)
		}
		defs[i] = d
	}
	for _, d := range defs {
		if d.family != 0 && !b.deps[d.family] {
			if b.deps == nil {
				b.deps = map[byte]bool{}
			}
			b.deps[d.family] = true
			b.out = append(b.out,
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{d.family}})
		}
	}
	if len(defs) == 1 {
		b.out = append(b.out, defs[0].load(unix.NFT_REG_1))
		return unix.NFT_REG_1, nil
	}
	var word uint32
	for _, d := range defs {
		b.out = append(b.out, d.load(concatRegister(word)))
		word += words(d.len)
	}
	if word > 16 {
		return 0, fmt.Errorf("concatenation of %d bytes does not fit the registers: %w", 4*word, ErrInvalid)
	}
	return unix.NFT_REG_1, nil
}

func checkValue(f Field, v Value) error {
	if want := f.Type().Len(); len(v) != want {
		return fmt.Errorf("value %x for a field of %d bytes: %w", []byte(v), want, ErrInvalid)
	}
	return nil
}

func (b *ruleBuilder) add(e Expr) error {
	switch e := e.(type) {
	case MatchCtState:
		if e.States == 0 {
			return fmt.Errorf("ct state match without states: %w", ErrInvalid)
		}
		// The state is a host-endian 32-bit bit set: ct state & mask != 0.
		b.out = append(b.out,
			&expr.Ct{Key: expr.CtKeySTATE, Register: unix.NFT_REG_1},
			&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(uint32(e.States)), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: make([]byte, 4)})
	case MatchTCPFlags:
		if err := e.validate(); err != nil {
			return err
		}
		if !b.tcpDep {
			b.tcpDep = true
			b.out = append(b.out,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{ProtoTCP}})
		}
		load := tcpFlagsLoad
		b.out = append(b.out, &load)
		if e.Mask != allTCPFlags {
			b.out = append(b.out, &expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 1,
				Mask: []byte{byte(e.Mask)}, Xor: []byte{0}})
		}
		op := expr.CmpOpEq
		if e.Neq {
			op = expr.CmpOpNeq
		}
		b.out = append(b.out, &expr.Cmp{Op: op, Register: unix.NFT_REG_1, Data: []byte{byte(e.Flags)}})
	case Cmp:
		if err := checkValue(e.Field, e.Value); err != nil {
			return err
		}
		reg, err := b.loadFields([]Field{e.Field})
		if err != nil {
			return err
		}
		op := expr.CmpOpEq
		if e.Neq {
			op = expr.CmpOpNeq
		}
		b.out = append(b.out, &expr.Cmp{Op: op, Register: reg, Data: bytes.Clone(e.Value)})
	case Range:
		if err := checkValue(e.Field, e.From); err != nil {
			return err
		}
		if err := checkValue(e.Field, e.To); err != nil {
			return err
		}
		reg, err := b.loadFields([]Field{e.Field})
		if err != nil {
			return err
		}
		// nft writes a range as two comparisons; so do we.
		b.out = append(b.out,
			&expr.Cmp{Op: expr.CmpOpGte, Register: reg, Data: bytes.Clone(e.From)},
			&expr.Cmp{Op: expr.CmpOpLte, Register: reg, Data: bytes.Clone(e.To)})
	case Lookup:
		if e.Set == "" {
			return fmt.Errorf("lookup without a set: %w", ErrInvalid)
		}
		reg, err := b.loadFields(e.Fields)
		if err != nil {
			return err
		}
		b.out = append(b.out, &expr.Lookup{SourceRegister: reg, SetName: e.Set, Invert: e.Neq})
	case VerdictMapLookup:
		if e.Map == "" {
			return fmt.Errorf("vmap lookup without a map: %w", ErrInvalid)
		}
		reg, err := b.loadFields(e.Fields)
		if err != nil {
			return err
		}
		b.out = append(b.out, &expr.Lookup{SourceRegister: reg, SetName: e.Map,
			DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true})
	case Counter:
		b.out = append(b.out, &expr.Counter{})
	case Log:
		l := &expr.Log{}
		if e.Prefix != "" {
			l.Key = 1 << unix.NFTA_LOG_PREFIX
			l.Data = []byte(e.Prefix)
		}
		b.out = append(b.out, l)
	case Verdict:
		v, err := lowerVerdict(e)
		if err != nil {
			return err
		}
		b.out = append(b.out, v)
	default:
		return fmt.Errorf("expression %T is not in the vocabulary: %w", e, ErrInvalid)
	}
	return nil
}

// lowerRule returns the kernel expressions and userdata (comment) of a rule.
func lowerRule(r Rule) ([]expr.Any, []byte, error) {
	var b ruleBuilder
	for i, e := range r.Exprs {
		if _, ok := e.(Verdict); ok && i != len(r.Exprs)-1 {
			return nil, nil, fmt.Errorf("verdict is not the last expression: %w", ErrInvalid)
		}
		if err := b.add(e); err != nil {
			return nil, nil, err
		}
	}
	var ud []byte
	if r.Comment != "" {
		if len(r.Comment) > 128 {
			return nil, nil, fmt.Errorf("rule comment longer than 128 bytes: %w", ErrInvalid)
		}
		ud = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
	}
	return b.out, ud, nil
}

// ruleLifter turns a kernel expression list back into the vocabulary. It
// accepts exactly the shapes ruleBuilder produces (and nft produces for the
// same rules).
type ruleLifter struct {
	out   []Expr
	loads []Field
	// ct state match in progress: a ct load, then a bitwise mask.
	ct     bool
	ctMask []byte
	// tcp flags match in progress: the load of the flags byte, then an
	// optional bitwise mask (nil: every flag).
	tcpFlags     bool
	tcpFlagsMask []byte
	// a "cmp gte" waiting for its "cmp lte".
	rangeFrom Value
	// index in out of a "meta nfproto" check that may be the implicit
	// dependency of the next expression, and its family; or of a "meta
	// l4proto tcp" check that may be the dependency of a tcp flags match
	// (candTCP).
	cand       int
	candFamily byte
	candTCP    bool
	deps       map[byte]bool
	tcpDep     bool
}

func (l *ruleLifter) emit(e Expr) {
	if l.cand >= 0 {
		_, flags := e.(MatchTCPFlags)
		switch {
		case l.candTCP && flags && !l.tcpDep:
			l.out = l.out[:l.cand]
			l.tcpDep = true
		case !l.candTCP && usesFamily(e, l.candFamily) && !l.deps[l.candFamily]:
			l.out = l.out[:l.cand]
			if l.deps == nil {
				l.deps = map[byte]bool{}
			}
			l.deps[l.candFamily] = true
		}
		l.cand = -1
	}
	if c, ok := e.(Cmp); ok && !c.Neq && len(c.Value) == 1 {
		switch {
		case c.Field == FieldNfproto && (c.Value[0] == NfprotoIPv4 || c.Value[0] == NfprotoIPv6):
			l.cand, l.candFamily, l.candTCP = len(l.out), c.Value[0], false
		case c.Field == FieldL4Proto && c.Value[0] == ProtoTCP:
			l.cand, l.candTCP = len(l.out), true
		}
	}
	l.out = append(l.out, e)
	l.loads = nil
}

func usesFamily(e Expr, family byte) bool {
	var fields []Field
	switch e := e.(type) {
	case Cmp:
		fields = []Field{e.Field}
	case Range:
		fields = []Field{e.Field}
	case Lookup:
		fields = e.Fields
	case VerdictMapLookup:
		fields = e.Fields
	}
	for _, f := range fields {
		if d, ok := lookupField(f); ok && d.family == family {
			return true
		}
	}
	return false
}

func liftRule(exprs []expr.Any) ([]Expr, error) {
	l := ruleLifter{cand: -1}
	for _, e := range exprs {
		if f, ok := fieldOfLoad(e); ok {
			l.loads = append(l.loads, f)
			continue
		}
		switch e := e.(type) {
		case *expr.Ct:
			if e.Key != expr.CtKeySTATE || e.SourceRegister {
				return nil, fmt.Errorf("unsupported ct key %d", e.Key)
			}
			l.ct = true
		case *expr.Payload:
			if !isTCPFlagsLoad(e) || l.ct || l.tcpFlags || len(l.loads) > 0 {
				return nil, fmt.Errorf("unsupported payload load at base %d offset %d", e.Base, e.Offset)
			}
			l.tcpFlags = true
		case *expr.Bitwise:
			switch {
			case l.ct && e.Len == 4 && bytes.Equal(e.Xor, make([]byte, 4)):
				l.ctMask = e.Mask
			case l.tcpFlags && l.tcpFlagsMask == nil && e.Len == 1 && len(e.Mask) == 1 && bytes.Equal(e.Xor, []byte{0}):
				l.tcpFlagsMask = e.Mask
			default:
				return nil, fmt.Errorf("unsupported bitwise expression")
			}
		case *expr.Cmp:
			switch {
			case l.ct:
				if e.Op != expr.CmpOpNeq || len(l.ctMask) != 4 || !bytes.Equal(e.Data, make([]byte, 4)) {
					return nil, fmt.Errorf("unsupported ct state comparison")
				}
				l.emit(MatchCtState{States: CtState(binaryutil.NativeEndian.Uint32(l.ctMask))})
				l.ct, l.ctMask = false, nil
			case l.tcpFlags:
				m, err := liftTCPFlags(e, l.tcpFlagsMask)
				if err != nil {
					return nil, err
				}
				l.emit(m)
				l.tcpFlags, l.tcpFlagsMask = false, nil
			case len(l.loads) != 1:
				return nil, fmt.Errorf("comparison of %d loaded fields", len(l.loads))
			case e.Op == expr.CmpOpEq || e.Op == expr.CmpOpNeq:
				l.emit(Cmp{Field: l.loads[0], Neq: e.Op == expr.CmpOpNeq, Value: Value(bytes.Clone(e.Data))})
			case e.Op == expr.CmpOpGte && l.rangeFrom == nil:
				l.rangeFrom = Value(bytes.Clone(e.Data))
			case e.Op == expr.CmpOpLte && l.rangeFrom != nil:
				l.emit(Range{Field: l.loads[0], From: l.rangeFrom, To: Value(bytes.Clone(e.Data))})
				l.rangeFrom = nil
			default:
				return nil, fmt.Errorf("unsupported comparison %d", e.Op)
			}
		case *expr.Range:
			if len(l.loads) != 1 || e.Op != expr.CmpOpEq {
				return nil, fmt.Errorf("unsupported range expression")
			}
			l.emit(Range{Field: l.loads[0], From: Value(bytes.Clone(e.FromData)), To: Value(bytes.Clone(e.ToData))})
		case *expr.Lookup:
			if len(l.loads) == 0 {
				return nil, fmt.Errorf("lookup in %q without loaded fields", e.SetName)
			}
			fields := l.loads
			switch {
			case e.IsDestRegSet && e.DestRegister == unix.NFT_REG_VERDICT && !e.Invert:
				l.emit(VerdictMapLookup{Fields: fields, Map: e.SetName})
			case !e.IsDestRegSet:
				l.emit(Lookup{Fields: fields, Set: e.SetName, Neq: e.Invert})
			default:
				return nil, fmt.Errorf("unsupported map lookup in %q", e.SetName)
			}
		case *expr.Counter:
			l.emit(Counter{})
		case *expr.Log:
			// The kernel reports the default level (warning) it filled in.
			known := uint32(1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_LEVEL | 1<<unix.NFTA_LOG_FLAGS)
			if e.Key&^known != 0 || (e.Key&(1<<unix.NFTA_LOG_LEVEL) != 0 && e.Level != expr.LogLevelWarning) || e.Flags != 0 {
				return nil, fmt.Errorf("unsupported log options %#x level %d flags %#x", e.Key, e.Level, e.Flags)
			}
			l.emit(Log{Prefix: string(e.Data)})
		case *expr.Verdict:
			v, err := liftVerdict(*e)
			if err != nil {
				return nil, err
			}
			l.emit(v)
		default:
			return nil, fmt.Errorf("unsupported expression %T", e)
		}
	}
	if len(l.loads) > 0 || l.ct || l.tcpFlags || l.rangeFrom != nil {
		return nil, fmt.Errorf("rule ends with an incomplete expression")
	}
	return l.out, nil
}

// liftTCPFlags is the tcp flags match of a comparison of the flags byte,
// masked with mask (nil: not masked).
func liftTCPFlags(c *expr.Cmp, mask []byte) (MatchTCPFlags, error) {
	m := MatchTCPFlags{Mask: allTCPFlags, Neq: c.Op == expr.CmpOpNeq}
	if mask != nil {
		m.Mask = TCPFlags(mask[0])
	}
	if len(c.Data) != 1 || (c.Op != expr.CmpOpEq && c.Op != expr.CmpOpNeq) {
		return MatchTCPFlags{}, fmt.Errorf("unsupported tcp flags comparison")
	}
	m.Flags = TCPFlags(c.Data[0])
	if err := m.validate(); err != nil {
		return MatchTCPFlags{}, err
	}
	return m, nil
}

// Sets.

var keyTypes = []struct {
	ours   KeyType
	kernel nftables.SetDatatype
}{
	{TypeIPv4Addr, nftables.TypeIPAddr},
	{TypeIPv6Addr, nftables.TypeIP6Addr},
	{TypeInetProto, nftables.TypeInetProto},
	{TypeInetService, nftables.TypeInetService},
	{TypeIfname, nftables.TypeIFName},
}

// kernelKeyType is the (possibly concatenated) kernel type of a set key.
func kernelKeyType(key []KeyType) (nftables.SetDatatype, error) {
	if len(key) == 0 {
		return nftables.SetDatatype{}, fmt.Errorf("set without a key: %w", ErrInvalid)
	}
	types := make([]nftables.SetDatatype, len(key))
	for i, k := range key {
		found := false
		for _, t := range keyTypes {
			if t.ours == k {
				types[i], found = t.kernel, true
			}
		}
		if !found {
			return nftables.SetDatatype{}, fmt.Errorf("unknown key type %d: %w", k, ErrInvalid)
		}
	}
	if len(types) == 1 {
		return types[0], nil
	}
	t, err := nftables.ConcatSetType(types...)
	if err != nil {
		return nftables.SetDatatype{}, fmt.Errorf("set key %v: %v: %w", key, err, ErrInvalid)
	}
	return t, nil
}

// setDef is what element encoding needs to know about a set.
type setDef struct {
	Key        []KeyType
	Interval   bool
	VerdictMap bool
}

func defOf(s *Set) setDef {
	return setDef{Key: s.Key, Interval: s.Interval, VerdictMap: s.VerdictMap}
}

// concat reports whether the set's key is a concatenation.
func (d setDef) concat() bool { return len(d.Key) > 1 }

// kernelSet builds the google/nftables definition of a set.
func kernelSet(t *nftables.Table, s *Set) (*nftables.Set, error) {
	if s.Name == "" {
		return nil, fmt.Errorf("set without a name: %w", ErrInvalid)
	}
	kt, err := kernelKeyType(s.Key)
	if err != nil {
		return nil, fmt.Errorf("set %q: %w", s.Name, err)
	}
	ks := &nftables.Set{
		Table:    t,
		Name:     s.Name,
		KeyType:  kt,
		Interval: s.Interval,
		// Like nft, flag only interval concatenations (the pipapo backend);
		// it makes google/nftables send the per-field lengths the kernel needs.
		Concatenation: s.Interval && len(s.Key) > 1,
		Comment:       s.Comment,
	}
	if s.VerdictMap {
		ks.IsMap = true
		ks.DataType = nftables.TypeVerdict
	}
	// nft prints a set's elements in the key byte order recorded in the set's
	// userdata, as nft itself records it: interface names are host-order
	// strings (without the record nft lists them as ""), the rest big endian.
	if len(s.Key) == 1 {
		ks.KeyByteOrder = binaryutil.BigEndian
		if s.Key[0] == TypeIfname {
			ks.KeyByteOrder = binaryutil.NativeEndian
		}
	}
	return ks, nil
}

// keyBytes is the kernel encoding of a key: the value itself, or for a
// concatenation each component padded to a multiple of 4 bytes.
func (d setDef) keyBytes(vals []Value) ([]byte, error) {
	if len(vals) != len(d.Key) {
		return nil, fmt.Errorf("key has %d components, set has %d: %w", len(vals), len(d.Key), ErrInvalid)
	}
	var out []byte
	for i, v := range vals {
		if len(v) != d.Key[i].Len() {
			return nil, fmt.Errorf("key component %d is %d bytes, want %d: %w", i, len(v), d.Key[i].Len(), ErrInvalid)
		}
		out = append(out, v...)
		if d.concat() {
			out = append(out, make([]byte, int(words(uint32(len(v)))*4)-len(v))...)
		}
	}
	return out, nil
}

// splitKey is the inverse of keyBytes.
func (d setDef) splitKey(b []byte) ([]Value, error) {
	vals := make([]Value, len(d.Key))
	off := 0
	for i, k := range d.Key {
		n := k.Len()
		if off+n > len(b) {
			return nil, fmt.Errorf("key %x too short for %v", b, d.Key)
		}
		vals[i] = Value(bytes.Clone(b[off : off+n]))
		off += n
		if d.concat() {
			off = int(words(uint32(off)) * 4)
		}
	}
	if off != len(b) {
		return nil, fmt.Errorf("key %x too long for %v", b, d.Key)
	}
	return vals, nil
}

// encodeElements turns elements into kernel set elements. Plain and hashed
// concatenated sets take the key; concatenated interval sets (pipapo) take key
// and inclusive key end; single-field interval sets (rbtree) take a start
// element and an end element one past the range, flagged as interval end,
// except when the range runs to the top of the key space.
func (d setDef) encodeElements(elems []Element) ([]nftables.SetElement, error) {
	out := make([]nftables.SetElement, 0, len(elems))
	for _, e := range elems {
		key, err := d.keyBytes(e.Key)
		if err != nil {
			return nil, err
		}
		var vd *expr.Verdict
		if d.VerdictMap != (e.Verdict != nil) {
			return nil, fmt.Errorf("element %x: verdict presence does not match the set kind: %w", key, ErrInvalid)
		}
		if e.Verdict != nil {
			if vd, err = lowerVerdict(*e.Verdict); err != nil {
				return nil, err
			}
		}
		if !d.Interval {
			if e.KeyEnd != nil {
				return nil, fmt.Errorf("range in a set without intervals: %w", ErrInvalid)
			}
			out = append(out, nftables.SetElement{Key: key, VerdictData: vd})
			continue
		}
		end := key
		if e.KeyEnd != nil {
			if end, err = d.keyBytes(e.KeyEnd); err != nil {
				return nil, err
			}
			if bytes.Compare(key, end) > 0 {
				return nil, fmt.Errorf("range %x-%x ends before it starts: %w", key, end, ErrInvalid)
			}
		}
		if d.concat() {
			out = append(out, nftables.SetElement{Key: key, KeyEnd: end, VerdictData: vd})
			continue
		}
		out = append(out, nftables.SetElement{Key: key, VerdictData: vd})
		if next, ok := increment(end); ok {
			out = append(out, nftables.SetElement{Key: next, IntervalEnd: true})
		}
	}
	return out, nil
}

// increment returns b+1 as a big-endian number, and false when b is all ones.
func increment(b []byte) ([]byte, bool) {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

// decrement returns b-1 (b must not be zero).
func decrement(b []byte) []byte {
	out := bytes.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]--
		if out[i] != 0xff {
			break
		}
	}
	return out
}

func allOnes(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }

// elemSize estimates the netlink size of an encoded element, to keep each
// element-list attribute under the 64 KiB a netlink attribute length can say.
func elemSize(e nftables.SetElement) int {
	attr := func(n int) int { return 4 + (n+3)&^3 }
	n := attr(attr(len(e.Key))) + 4
	if e.KeyEnd != nil {
		n += attr(attr(len(e.KeyEnd)))
	}
	if e.IntervalEnd {
		n += attr(4)
	}
	if e.VerdictData != nil {
		n += attr(attr(attr(4) + attr(len(e.VerdictData.Chain)+1)))
	}
	return n
}

// chunkElements splits encoded elements into calls of at most maxElems
// elements and maxBytes bytes. A rbtree range's start and end stay together.
func chunkElements(elems []nftables.SetElement, maxElems, maxBytes int) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	start, size := 0, 0
	for i, e := range elems {
		s := elemSize(e)
		if i > start && !e.IntervalEnd && (i-start >= maxElems || size+s > maxBytes) {
			out = append(out, elems[start:i])
			start, size = i, 0
		}
		size += s
	}
	if start < len(elems) {
		out = append(out, elems[start:])
	}
	return out
}

// decodeElements rebuilds elements from what the kernel lists.
func (d setDef) decodeElements(kes []nftables.SetElement) ([]Element, error) {
	out := make([]Element, 0, len(kes))
	if !d.Interval || d.concat() {
		for _, ke := range kes {
			key, err := d.splitKey(ke.Key)
			if err != nil {
				return nil, err
			}
			e := Element{Key: key}
			if d.Interval && len(ke.KeyEnd) > 0 && !bytes.Equal(ke.KeyEnd, ke.Key) {
				if e.KeyEnd, err = d.splitKey(ke.KeyEnd); err != nil {
					return nil, err
				}
			}
			if d.VerdictMap {
				v, err := decodeVerdictData(ke.Val)
				if err != nil {
					return nil, fmt.Errorf("element %x: %w", ke.Key, err)
				}
				e.Verdict = &v
			}
			out = append(out, e)
		}
		return out, nil
	}
	// rbtree: sort by key, ends before starts at the same key (a range may end
	// exactly where the next starts), then pair each start with the next end.
	sorted := make([]nftables.SetElement, len(kes))
	copy(sorted, kes)
	sortElements(sorted)
	var open *nftables.SetElement
	closeRange := func(end []byte) error {
		key, err := d.splitKey(open.Key)
		if err != nil {
			return err
		}
		e := Element{Key: key}
		if !bytes.Equal(end, open.Key) {
			if e.KeyEnd, err = d.splitKey(end); err != nil {
				return err
			}
		}
		if d.VerdictMap {
			v, err := decodeVerdictData(open.Val)
			if err != nil {
				return fmt.Errorf("element %x: %w", open.Key, err)
			}
			e.Verdict = &v
		}
		out = append(out, e)
		open = nil
		return nil
	}
	for i := range sorted {
		ke := &sorted[i]
		if ke.IntervalEnd {
			if open != nil {
				if err := closeRange(decrement(ke.Key)); err != nil {
					return nil, err
				}
			}
			// An end without a start is the "range ends before 0" marker
			// older nft versions add; it holds nothing.
			continue
		}
		if open != nil {
			// Two starts in a row: the first range is open-ended up to the
			// next start (the kernel never does this; be lenient).
			if err := closeRange(decrement(ke.Key)); err != nil {
				return nil, err
			}
		}
		open = ke
	}
	if open != nil {
		if err := closeRange(allOnes(len(open.Key))); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func sortElements(s []nftables.SetElement) {
	less := func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.IntervalEnd == b.IntervalEnd:
			return 0
		case a.IntervalEnd:
			return -1
		}
		return 1
	}
	slices.SortFunc(s, less)
}

// decodeVerdictData parses the NFTA_DATA_VERDICT attributes google/nftables
// leaves in SetElement.Val for verdict maps.
func decodeVerdictData(b []byte) (Verdict, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Verdict{}, fmt.Errorf("verdict data: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var v expr.Verdict
	var haveCode bool
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
			haveCode = true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return Verdict{}, fmt.Errorf("verdict data: %w", err)
	}
	if !haveCode {
		return Verdict{}, fmt.Errorf("verdict data without a verdict code")
	}
	return liftVerdict(v)
}
