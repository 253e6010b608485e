package nft

import (
	"bytes"
	"fmt"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// This file lowers rules to google/nftables expression lists and lifts kernel
// expression lists back (sets and their elements: setdef.go). Both directions go
// through the same tables (fieldDefs, verdictKinds, keyTypes) so that they cannot drift apart,
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

// register32 is the kernel's own number of a data register: the index of its
// (first) 32-bit word, whichever name it was given. The kernel keeps only
// this, and dumps a register that starts a 128-bit one under the 128-bit
// name (NFT_REG32_04 comes back as NFT_REG_2).
func register32(reg uint32) uint32 {
	if reg >= unix.NFT_REG_1 && reg <= unix.NFT_REG_4 {
		return (reg - unix.NFT_REG_1) * 4
	}
	return reg - unix.NFT_REG32_00
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
	return b.loadKey(fields, nil)
}

// loadKey is loadFields for a lookup key: the fields, then, when tag is not
// nil, the tag in the 32-bit register after them, loaded by an immediate (as
// nft loads a constant of a concatenation), so that one lookup from the
// first register reads both.
func (b *ruleBuilder) loadKey(fields []Field, tag Value) (uint32, error) {
	if len(fields) == 0 {
		return 0, fmt.Errorf("expression without fields: %w", ErrInvalid)
	}
	if tag != nil && len(tag) != TypeTag.Len() {
		return 0, fmt.Errorf("tag %x is %d bytes, want %d: %w", []byte(tag), len(tag), TypeTag.Len(), ErrInvalid)
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
	// One field alone is loaded into register 1 too: concatRegister(0).
	var word uint32
	for _, d := range defs {
		b.out = append(b.out, d.load(concatRegister(word)))
		word += words(d.len)
	}
	if tag != nil {
		b.out = append(b.out, &expr.Immediate{Register: concatRegister(word), Data: bytes.Clone(tag)})
		word += words(uint32(len(tag)))
	}
	if word > concatWords {
		return 0, fmt.Errorf("concatenation of %d bytes does not fit the registers: %w", 4*word, ErrInvalid)
	}
	return unix.NFT_REG_1, nil
}

// concatWords is how many 32-bit registers a concatenation may fill
// (NFT_REG32_00 to NFT_REG32_15).
const concatWords = 16

func checkValue(f Field, v Value) error {
	if want := f.Type().Len(); len(v) != want {
		return fmt.Errorf("value %x for a field of %d bytes: %w", []byte(v), want, ErrInvalid)
	}
	return nil
}

func (b *ruleBuilder) addCtState(e MatchCtState) error {
	if e.States == 0 {
		return fmt.Errorf("ct state match without states: %w", ErrInvalid)
	}
	// The state is a host-endian 32-bit bit set: ct state & mask != 0.
	b.out = append(b.out,
		&expr.Ct{Key: expr.CtKeySTATE, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(uint32(e.States)), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: make([]byte, 4)})
	return nil
}

func (b *ruleBuilder) addTCPFlags(e MatchTCPFlags) error {
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
	return nil
}

func (b *ruleBuilder) add(e Expr) error {
	switch e := e.(type) {
	case MatchCtState:
		return b.addCtState(e)
	case MatchTCPFlags:
		return b.addTCPFlags(e)
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
		reg, err := b.loadKey(e.Fields, e.Tag)
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
		// A new rule's counter starts at zero, whatever a read gave it.
		b.out = append(b.out, &expr.Counter{})
	case Log:
		l, err := lowerLog(e)
		if err != nil {
			return err
		}
		b.out = append(b.out, l)
	case CounterRef, LimitRef:
		name, counter, _ := objectRef(e)
		if name == "" {
			return fmt.Errorf("%T without a name: %w", e, ErrInvalid)
		}
		typ := unix.NFT_OBJECT_LIMIT
		if counter {
			typ = unix.NFT_OBJECT_COUNTER
		}
		b.out = append(b.out, &expr.Objref{Type: typ, Name: name})
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

// lowerLog is a log statement as nft 1.0.6 sends it: the prefix, if any,
// and for NFLOG the group (no level: the kernel fills in warning for the
// kernel log, and NFLOG has none).
func lowerLog(e Log) (*expr.Log, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	l := &expr.Log{}
	if e.Prefix != "" {
		l.Key |= 1 << unix.NFTA_LOG_PREFIX
		l.Data = []byte(e.Prefix)
	}
	if e.NFLog {
		l.Key |= 1 << unix.NFTA_LOG_GROUP
		l.Group = e.Group
	}
	return l, nil
}

// liftLog is the inverse of lowerLog. The kernel reports the default level
// (warning) it filled in for the kernel log; any other option makes the
// statement one the vocabulary does not have.
func liftLog(e *expr.Log) (Log, error) {
	const (
		prefix = 1 << unix.NFTA_LOG_PREFIX
		group  = 1 << unix.NFTA_LOG_GROUP
		level  = 1 << unix.NFTA_LOG_LEVEL
		flags  = 1 << unix.NFTA_LOG_FLAGS
	)
	known := uint32(prefix | level | flags)
	if e.Key&group != 0 {
		known = prefix | group
	}
	if e.Key&^known != 0 || (e.Key&level != 0 && e.Level != expr.LogLevelWarning) || e.Flags != 0 {
		return Log{}, fmt.Errorf("unsupported log options %#x level %d flags %#x", e.Key, e.Level, e.Flags)
	}
	return Log{Prefix: string(e.Data), Group: e.Group, NFLog: e.Key&group != 0}, nil
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
	// tag is a value an immediate loaded after the fields, which only the
	// lookup that comes next may read (Lookup.Tag).
	tag Value
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
		if _, ok := e.(*expr.Lookup); l.tag != nil && !ok {
			return nil, fmt.Errorf("value %x loaded by an immediate is not read by a lookup", []byte(l.tag))
		}
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
			if err := l.cmp(e); err != nil {
				return nil, err
			}
		case *expr.Range:
			if len(l.loads) != 1 || e.Op != expr.CmpOpEq {
				return nil, fmt.Errorf("unsupported range expression")
			}
			l.emit(Range{Field: l.loads[0], From: Value(bytes.Clone(e.FromData)), To: Value(bytes.Clone(e.ToData))})
		case *expr.Immediate:
			if err := l.immediate(e); err != nil {
				return nil, err
			}
		case *expr.Lookup:
			if err := l.lookup(e); err != nil {
				return nil, err
			}
		case *expr.Counter:
			l.emit(Counter{Packets: e.Packets, Bytes: e.Bytes})
		case *expr.Log:
			lg, err := liftLog(e)
			if err != nil {
				return nil, err
			}
			l.emit(lg)
		case *expr.Objref:
			switch e.Type {
			case unix.NFT_OBJECT_COUNTER:
				l.emit(CounterRef{Name: e.Name})
			case unix.NFT_OBJECT_LIMIT:
				l.emit(LimitRef{Name: e.Name})
			default:
				return nil, fmt.Errorf("unsupported reference to an object of type %d", e.Type)
			}
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
	if len(l.loads) > 0 || l.tag != nil || l.ct || l.tcpFlags || l.rangeFrom != nil {
		return nil, fmt.Errorf("rule ends with an incomplete expression")
	}
	return l.out, nil
}

// cmp lifts a comparison: the end of a ct state or tcp flags match, or of a
// comparison or range of the one loaded field.
func (l *ruleLifter) cmp(e *expr.Cmp) error {
	switch {
	case l.ct:
		if e.Op != expr.CmpOpNeq || len(l.ctMask) != 4 || !bytes.Equal(e.Data, make([]byte, 4)) {
			return fmt.Errorf("unsupported ct state comparison")
		}
		l.emit(MatchCtState{States: CtState(binaryutil.NativeEndian.Uint32(l.ctMask))})
		l.ct, l.ctMask = false, nil
	case l.tcpFlags:
		m, err := liftTCPFlags(e, l.tcpFlagsMask)
		if err != nil {
			return err
		}
		l.emit(m)
		l.tcpFlags, l.tcpFlagsMask = false, nil
	case len(l.loads) != 1:
		return fmt.Errorf("comparison of %d loaded fields", len(l.loads))
	case e.Op == expr.CmpOpEq || e.Op == expr.CmpOpNeq:
		l.emit(Cmp{Field: l.loads[0], Neq: e.Op == expr.CmpOpNeq, Value: Value(bytes.Clone(e.Data))})
	case e.Op == expr.CmpOpGte && l.rangeFrom == nil:
		l.rangeFrom = Value(bytes.Clone(e.Data))
	case e.Op == expr.CmpOpLte && l.rangeFrom != nil:
		l.emit(Range{Field: l.loads[0], From: l.rangeFrom, To: Value(bytes.Clone(e.Data))})
		l.rangeFrom = nil
	default:
		return fmt.Errorf("unsupported comparison %d", e.Op)
	}
	return nil
}

// immediate lifts the load of a constant: the tag of a lookup key, in the
// 32-bit register right after the loaded fields (loadKey). Any other
// immediate value is not in the vocabulary.
func (l *ruleLifter) immediate(e *expr.Immediate) error {
	var word uint32
	for _, f := range l.loads {
		d, _ := lookupField(f) // loads holds only fields fieldOfLoad found
		word += words(d.len)
	}
	if len(l.loads) == 0 || l.ct || l.tcpFlags || l.rangeFrom != nil ||
		register32(e.Register) != word || len(e.Data) != TypeTag.Len() {
		return fmt.Errorf("unsupported immediate of %d bytes into register %d", len(e.Data), e.Register)
	}
	l.tag = Value(bytes.Clone(e.Data))
	return nil
}

// lookup lifts a set lookup or a verdict-map lookup of the loaded fields
// (and tag).
func (l *ruleLifter) lookup(e *expr.Lookup) error {
	if len(l.loads) == 0 {
		return fmt.Errorf("lookup in %q without loaded fields", e.SetName)
	}
	tag := l.tag
	l.tag = nil
	switch {
	case tag != nil && (e.IsDestRegSet || register32(e.SourceRegister) != 0):
		return fmt.Errorf("unsupported tagged lookup in %q from register %d", e.SetName, e.SourceRegister)
	case e.IsDestRegSet && e.DestRegister == unix.NFT_REG_VERDICT && !e.Invert:
		l.emit(VerdictMapLookup{Fields: l.loads, Map: e.SetName})
	case !e.IsDestRegSet:
		l.emit(Lookup{Fields: l.loads, Set: e.SetName, Neq: e.Invert, Tag: tag})
	default:
		return fmt.Errorf("unsupported map lookup in %q", e.SetName)
	}
	return nil
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
