package nft

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/btree"
)

// DefaultTable is the name of the inet table nftwarden owns when none is configured.
const DefaultTable = "nftwarden"

// Hook is a netfilter hook a base chain attaches to.
type Hook string

// The hooks nftwarden uses. Forward sees pod-to-pod traffic (routed CNIs, and bridged
// CNIs with br_netfilter); input sees traffic from pods to their own node; output sees
// traffic from the node to its pods.
const (
	HookForward Hook = "forward"
	HookInput   Hook = "input"
	HookOutput  Hook = "output"
)

// Priorities of the base chains, relative to the standard "filter" priority (0).
// Destination NAT for services runs at -100 (prerouting and output), so every
// priority >= 0 sees the pod address after service DNAT.
const (
	PriorityFilter = 0
)

// BaseChain makes a chain a base chain: attached to a hook with a priority and a
// default policy. Chains without it are regular chains reached by jump, goto or vmap.
type BaseChain struct {
	Hook     Hook
	Priority int
	// Policy is the chain's default verdict: VerdictAccept or VerdictDrop.
	Policy VerdictKind
}

// Chain is one chain of the table with its complete rule list.
type Chain struct {
	Name    string
	Comment string
	Base    *BaseChain
	Rules   []Rule
}

// Rule is a sequence of expressions evaluated left to right; the rule stops at the
// first match expression that does not match. A verdict, when present, is the last
// expression.
type Rule struct {
	Exprs   []Expr
	Comment string
}

// KeyType is the data type of one component of a set key.
type KeyType int

// Key types of the vocabulary. Their names are nft's type names.
const (
	TypeIPv4Addr    KeyType = iota + 1 // ipv4_addr, 4 bytes
	TypeIPv6Addr                       // ipv6_addr, 16 bytes
	TypeInetProto                      // inet_proto, 1 byte
	TypeInetService                    // inet_service, 2 bytes (a port)
	TypeIfname                         // ifname, 16 bytes
	// TypeTag is a 4-byte constant that names a group inside a set shared by
	// many groups: the set's key ends in it, and a Lookup with Tag supplies it
	// (`ip saddr . 0x0000002a @peers-v4`). nft has no type of its own for it;
	// its name is that of a 32-bit host-order integer nft prints in hex
	// ("mark"), in which order TagValue writes it.
	TypeTag
)

// Len is the length in bytes of a value of the type.
func (t KeyType) Len() int {
	switch t {
	case TypeIPv4Addr:
		return 4
	case TypeIPv6Addr:
		return 16
	case TypeInetProto:
		return 1
	case TypeInetService:
		return 2
	case TypeIfname:
		return 16
	case TypeTag:
		return 4
	}
	return 0
}

// String is nft's name for the type.
func (t KeyType) String() string {
	switch t {
	case TypeIPv4Addr:
		return "ipv4_addr"
	case TypeIPv6Addr:
		return "ipv6_addr"
	case TypeInetProto:
		return "inet_proto"
	case TypeInetService:
		return "inet_service"
	case TypeIfname:
		return "ifname"
	case TypeTag:
		return "mark"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// Set is a named set or verdict map of the table. Its key is the concatenation of
// the Key types in order.
type Set struct {
	Name string
	Key  []KeyType
	// Interval makes the set hold ranges (Element.KeyEnd). With more than one key
	// component this is a concatenated range set (nft's pipapo).
	Interval bool
	// VerdictMap makes the set a map whose elements carry a Verdict.
	VerdictMap bool
	Comment    string
	// Elements by ElementID (NewElements, PutElements).
	Elements ElementMap
}

// Value is one component of an element key in network byte order (a tag in
// host byte order: TagValue), exactly as long as its KeyType.
type Value []byte

// Element is one member of a set or one entry of a verdict map.
type Element struct {
	Key []Value
	// KeyEnd is the inclusive upper bound of a range, one Value per key component,
	// only in interval sets; nil means the single key.
	KeyEnd []Value
	// Verdict is the element's verdict in a verdict map (Jump or Goto to a chain,
	// Accept, Drop); nil in plain sets.
	Verdict *Verdict
}

// VerdictKind is what a verdict does.
type VerdictKind int

// Verdict kinds, with nft semantics: accept and drop end evaluation of the hook's
// base chain, jump pushes a return point, goto does not, return pops one.
const (
	VerdictAccept VerdictKind = iota + 1
	VerdictDrop
	VerdictJump
	VerdictGoto
	VerdictReturn
	VerdictContinue
)

// Verdict ends a rule (or is the value of a verdict-map element).
type Verdict struct {
	Kind  VerdictKind
	Chain string // Jump and Goto only
}

// Expr is one expression of a rule. The vocabulary is closed: the types in this
// file are all there are, so the kernel lowering, the renderer and the tracer can
// each handle every case.
type Expr interface{ isExpr() }

// Field is a packet field an expression can read.
type Field int

// Fields of the vocabulary. IP fields imply the matching network family (the
// kernel lowering and the tracer add the "meta nfproto" dependency as nft does).
const (
	FieldNfproto  Field = iota + 1 // meta nfproto: 1 byte, NFPROTO_IPV4 (2) or NFPROTO_IPV6 (10)
	FieldL4Proto                   // meta l4proto: 1 byte IP protocol number
	FieldIPSaddr                   // ip saddr
	FieldIPDaddr                   // ip daddr
	FieldIP6Saddr                  // ip6 saddr
	FieldIP6Daddr                  // ip6 daddr
	FieldTHDport                   // th dport: destination port of TCP, UDP or SCTP
	FieldIifname                   // meta iifname
	FieldOifname                   // meta oifname
)

// Type is the key type a field's value has.
func (f Field) Type() KeyType {
	switch f {
	case FieldNfproto, FieldL4Proto:
		return TypeInetProto
	case FieldIPSaddr, FieldIPDaddr:
		return TypeIPv4Addr
	case FieldIP6Saddr, FieldIP6Daddr:
		return TypeIPv6Addr
	case FieldTHDport:
		return TypeInetService
	case FieldIifname, FieldOifname:
		return TypeIfname
	}
	return 0
}

// CtState is a bit set of conntrack states, with the kernel's bit values.
type CtState uint32

// Conntrack states.
const (
	CtInvalid     CtState = 1 << 0
	CtEstablished CtState = 1 << 1
	CtRelated     CtState = 1 << 2
	CtNew         CtState = 1 << 3
	CtUntracked   CtState = 1 << 6
)

// MatchCtState matches packets whose conntrack state is one of States
// (`ct state established,related`).
type MatchCtState struct{ States CtState }

// TCPFlags is a set of TCP header flags with their bit values in the header's
// flags byte (offset 13). The names are nft's.
type TCPFlags uint8

// TCP flags.
const (
	TCPFin TCPFlags = 1 << 0
	TCPSyn TCPFlags = 1 << 1
	TCPRst TCPFlags = 1 << 2
	TCPPsh TCPFlags = 1 << 3
	TCPAck TCPFlags = 1 << 4
	TCPUrg TCPFlags = 1 << 5
	TCPEcn TCPFlags = 1 << 6 // ECE (ECN-Echo)
	TCPCwr TCPFlags = 1 << 7
)

// TCPStartMask is the mask of the flags that tell a connection's first packet
// from the others: `tcp flags & (fin|syn|rst|ack) == syn` holds for a SYN
// (with or without ECN negotiation or data) and for no other segment.
const TCPStartMask = TCPFin | TCPSyn | TCPRst | TCPAck

// MatchTCPFlags matches TCP packets whose flags, masked with Mask, equal
// Flags, or with Neq differ from them: `tcp flags != syn / fin,syn,rst,ack`
// (nft 1.0.6's way of printing `tcp flags & (fin|syn|rst|ack) != syn`) is
// {Flags: TCPSyn, Mask: TCPStartMask, Neq: true}, true of every TCP segment
// but a connection's first. Packets of other protocols never match, also
// with Neq (nft checks `meta l4proto tcp` first). Mask must not be empty,
// and Flags must lie within it.
type MatchTCPFlags struct {
	Flags, Mask TCPFlags
	Neq         bool
}

func (m MatchTCPFlags) validate() error {
	if m.Mask == 0 || m.Flags&^m.Mask != 0 {
		return fmt.Errorf("tcp flags %#x / %#x: the mask is empty or lacks one of the flags: %w", uint8(m.Flags), uint8(m.Mask), ErrInvalid)
	}
	return nil
}

// matches reports whether a TCP packet with flags f matches.
func (m MatchTCPFlags) matches(f TCPFlags) bool { return (f&m.Mask == m.Flags) != m.Neq }

// Cmp matches when Field equals Value (or differs from it, with Neq).
type Cmp struct {
	Field Field
	Neq   bool
	Value Value
}

// Range matches when Field lies in [From, To] (`th dport 1000-2000`).
type Range struct {
	Field    Field
	From, To Value
}

// Lookup matches when the concatenation of Fields is in Set (`ip saddr @peers`,
// `ip daddr . meta l4proto . th dport @ports`); with Neq when it is not. Set
// may be a verdict map: the lookup then asks only whether the key is in it
// (`ip saddr @ingress-v4`), and the element's verdict is not applied.
//
// Tag, when not nil, is a constant of TypeTag (TagValue) appended to the key
// after Fields: the set's key is then Fields' types followed by TypeTag, and
// the rule asks whether (the packet's fields, this tag) is an element
// (`ip saddr . 0x0000002a @peers-v4`). Many groups share one such set, each
// with its own tag, instead of a set each: the kernel finds a set by a walk
// over the table's set list, so thousands of small sets cost it a quadratic
// walk that one shared set does not. The kernel gets the tag as an immediate
// into the 32-bit register after the fields; nft 1.0.6 lists that constant
// without a type and cannot parse the rule back (Render, Transaction.Format).
type Lookup struct {
	Fields []Field
	Set    string
	Neq    bool
	Tag    Value
}

// VerdictMapLookup looks the concatenation of Fields up in the verdict map Map and
// applies the element's verdict; when the key is absent the rule does not match
// and evaluation continues with the next rule (`ip daddr vmap @ingress4`).
type VerdictMapLookup struct {
	Fields []Field
	Map    string
}

// Counter counts the packets and bytes that reach it. Packets and Bytes are
// what the kernel had counted when a state was read back (a desired state
// leaves them zero; a rule's counter starts at zero whenever its chain's
// rules are replaced); like a CounterObject's they are never compared:
// RuleKey, and so Diff and Reconcile, leave them out.
type Counter struct{ Packets, Bytes uint64 }

// Log logs packets that reach it with a prefix: to the kernel log, or with
// NFLog to the NFLOG group Group (`log prefix "p" group 5`), where a
// userspace reader (nft/nflog) receives them. The prefix is at most
// MaxLogPrefix bytes.
type Log struct {
	Prefix string
	Group  uint16
	NFLog  bool
}

// MaxLogPrefix is the longest log prefix the kernel keeps (NF_LOG_PREFIXLEN
// less its NUL).
const MaxLogPrefix = 127

// CounterRef counts the packets and bytes that reach it in the table's named
// counter object Name (`counter name "x"`).
type CounterRef struct{ Name string }

// LimitRef matches while the table's named limit object Name has tokens
// left (`limit name "x"`); over the limit the rule stops there, as any
// match that does not match. Rules that name one object share its bucket.
// Trace has no clock: there it always matches.
type LimitRef struct{ Name string }

func (MatchCtState) isExpr()     {}
func (MatchTCPFlags) isExpr()    {}
func (Cmp) isExpr()              {}
func (Range) isExpr()            {}
func (Lookup) isExpr()           {}
func (VerdictMapLookup) isExpr() {}
func (Counter) isExpr()          {}
func (Log) isExpr()              {}
func (CounterRef) isExpr()       {}
func (LimitRef) isExpr()         {}
func (Verdict) isExpr()          {}

// Value constructors.

// PackedKey returns a key of copies of vals that share one allocation with
// the slice that holds them, so that reading the key touches one place in
// memory rather than one per value. A batch reads a set's elements in no
// particular order from all over the heap, a cache miss per value; with
// the 100,000-pod node's tagged elements packed this way, loading it
// (BenchmarkKernelEngineProgram) took a median 98 ms of user-mode CPU
// instead of 125 (eight runs alternated). Keys of more than four values or
// 24 bytes are copied plainly.
//
// The room for bytes comes in two sizes so that the most common key, an
// IPv4 address and a tag (8 bytes), takes an object of 64 bytes rather than
// 80: 20% less memory for the largest part of a big node's elements.
func PackedKey(vals ...Value) []Value {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	switch {
	case len(vals) <= 2 && n <= 16:
		p := new(struct {
			vals  [2]Value
			bytes [16]byte
		})
		return packValues(p.vals[:len(vals)], p.bytes[:], vals)
	case len(vals) <= 2 && n <= 24:
		p := new(struct {
			vals  [2]Value
			bytes [24]byte
		})
		return packValues(p.vals[:len(vals)], p.bytes[:], vals)
	case len(vals) <= 4 && n <= 16:
		p := new(struct {
			vals  [4]Value
			bytes [16]byte
		})
		return packValues(p.vals[:len(vals)], p.bytes[:], vals)
	case len(vals) <= 4 && n <= 24:
		p := new(struct {
			vals  [4]Value
			bytes [24]byte
		})
		return packValues(p.vals[:len(vals)], p.bytes[:], vals)
	}
	return packValues(make([]Value, len(vals)), make([]byte, n), vals)
}

// AddrKey is PackedKey(AddrValue(a), rest...) without an allocation for
// the address of its own.
func AddrKey(a netip.Addr, rest ...Value) []Value {
	if len(rest) > 3 {
		return PackedKey(append([]Value{AddrValue(a)}, rest...)...)
	}
	a = a.Unmap()
	var b [16]byte
	var addr Value
	switch {
	case a.Is4():
		b4 := a.As4()
		addr = b[:copy(b[:], b4[:])]
	case a.Is6():
		b = a.As16()
		addr = b[:]
	}
	var vals [4]Value
	vals[0] = addr
	n := 1 + copy(vals[1:], rest)
	return PackedKey(vals[:n]...)
}

// packValues copies vals into bytes and points out at the copies (capped,
// so that an append to one cannot write into the next); it returns out.
func packValues(out []Value, bytes []byte, vals []Value) []Value {
	off := 0
	for i, v := range vals {
		end := off + copy(bytes[off:], v)
		out[i] = Value(bytes[off:end:end])
		off = end
	}
	return out[:len(vals):len(vals)]
}

// AddrValue is the key value of an IPv4 or IPv6 address (IPv4-mapped addresses are
// unmapped first).
func AddrValue(a netip.Addr) Value {
	a = a.Unmap()
	b := a.AsSlice()
	return Value(b)
}

// ProtoValue is the key value of an IP protocol number.
func ProtoValue(p uint8) Value { return Value{p} }

// TagValue is the key value of a tag (TypeTag), in host byte order as nft
// keeps a mark: so `nft list` prints an element's tag as the number it is
// (`198.18.0.5 . 0x0000002a` for tag 42), and an element nft adds from text
// has the bytes the rule compares with.
func TagValue(t uint32) Value { return binary.NativeEndian.AppendUint32(make(Value, 0, 4), t) }

// PortValue is the key value of a port.
func PortValue(p uint16) Value { return Value{byte(p >> 8), byte(p)} }

// IfnameValue is the key value of an interface name (NUL padded to 16 bytes).
func IfnameValue(name string) Value {
	v := make(Value, 16)
	copy(v, name)
	return v
}

// NfprotoIPv4 and NfprotoIPv6 are the values of FieldNfproto.
const (
	NfprotoIPv4 = 2
	NfprotoIPv6 = 10
)

// IP protocol numbers used by policy.
const (
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoSCTP = 132
)

// ElementID is the identity of an element within its set: its key (and range end)
// in nft text. Two elements with the same ID are the same member; a verdict-map
// element's verdict is not part of its identity.
func ElementID(s *Set, e Element) string { return elementID(s.Key, e) }

func elementID(types []KeyType, e Element) string {
	// Built in a buffer on the stack and copied once into a string of its
	// exact size: a growing strings.Builder allocated twice per ID, and IDs
	// are built for every element the engine adds (~200,000 at start-up).
	var buf [96]byte
	b := appendKey(buf[:0], types, e.Key)
	if e.KeyEnd != nil {
		b = append(b, '-')
		b = appendKey(b, types, e.KeyEnd)
	}
	return string(b)
}

func appendKey(b []byte, types []KeyType, vals []Value) []byte {
	for i, v := range vals {
		if i > 0 {
			b = append(b, " . "...)
		}
		var t KeyType
		if i < len(types) {
			t = types[i]
		}
		b = appendValue(b, t, v)
	}
	return b
}

// appendValue appends value v of type t as FormatValue writes it.
func appendValue(b []byte, t KeyType, v Value) []byte {
	// The types of the big sets (addresses, ports, tags) are written as
	// FormatValue writes them, without a string per value.
	switch {
	case (t == TypeIPv4Addr || t == TypeIPv6Addr) && (len(v) == 4 || len(v) == 16):
		a, _ := netip.AddrFromSlice(v)
		return a.AppendTo(b)
	case t == TypeInetService && len(v) == 2:
		return strconv.AppendUint(b, uint64(v[0])<<8|uint64(v[1]), 10)
	case t == TypeTag && len(v) == 4:
		return appendTag(b, binary.NativeEndian.Uint32(v))
	}
	return append(b, FormatValue(t, v)...)
}

// FormatValue renders a value of type t as nft prints it.
func FormatValue(t KeyType, v Value) string {
	switch t {
	case TypeIPv4Addr, TypeIPv6Addr:
		if a, ok := netip.AddrFromSlice(v); ok {
			return a.String()
		}
	case TypeInetProto:
		if len(v) == 1 {
			switch v[0] {
			case ProtoTCP:
				return "tcp"
			case ProtoUDP:
				return "udp"
			case ProtoSCTP:
				return "sctp"
			}
			return fmt.Sprint(v[0])
		}
	case TypeInetService:
		if len(v) == 2 {
			return fmt.Sprint(uint16(v[0])<<8 | uint16(v[1]))
		}
	case TypeIfname:
		return fmt.Sprintf("%q", strings.TrimRight(string(v), "\x00"))
	case TypeTag:
		if len(v) == 4 {
			return string(appendTag(nil, binary.NativeEndian.Uint32(v)))
		}
	}
	return fmt.Sprintf("0x%x", []byte(v))
}

// Object is a named stateful object of the table that rules name
// (CounterRef, LimitRef): exactly one of Counter and Limit is set. Objects
// are not changed in place: a different definition is a different object
// (delete the old one once no rule names it).
type Object struct {
	Name    string
	Comment string
	Counter *CounterObject
	Limit   *LimitObject
}

// CounterObject is a named counter. Packets and Bytes are what the kernel had
// counted when a state was read back; a desired state leaves them zero, and
// they are never compared (Diff, Reconcile, the busy and sameness checks).
type CounterObject struct{ Packets, Bytes uint64 }

// LimitObject is a named token bucket on packets: Rate packets per Unit,
// Burst packets more at once (`limit rate 100/second burst 50 packets`).
type LimitObject struct {
	Rate  uint64
	Unit  LimitUnit
	Burst uint32
}

// LimitUnit is the time unit of a limit's rate.
type LimitUnit int

// Limit units.
const (
	PerSecond LimitUnit = iota + 1
	PerMinute
)

// State is the complete content of the table: what nftwarden wants programmed, or
// what a dataplane read back.
type State struct {
	Chains map[string]*Chain
	Sets   map[string]*Set
	// Objects by name (named counters and limits).
	Objects map[string]*Object
	// jumps counts, per chain, the rules and verdict-map elements that jump
	// or go to it, for the busy check of a chain's deletion (Apply); nil: not
	// counted yet. Apply keeps it once counted; a revert and Clone drop it. A
	// state changed other than by Apply must not have been Applied to before.
	jumps map[string]int
	// ranges orders the elements of each interval set of one component by
	// start, for the overlap check of new elements (checkIntervals); a set
	// without an entry: not ordered yet. Kept and dropped as jumps is.
	ranges map[string]*btree.BTreeG[rangeItem]
	// objectRefs counts, per object, the rules that name it, for the busy
	// check of an object's deletion. Kept and dropped as jumps is.
	objectRefs map[string]int
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Chains: map[string]*Chain{}, Sets: map[string]*Set{}, Objects: map[string]*Object{}}
}

// ChainNames returns the chain names sorted.
func (s *State) ChainNames() []string { return slices.Sorted(maps.Keys(s.Chains)) }

// SetNames returns the set names sorted.
func (s *State) SetNames() []string { return slices.Sorted(maps.Keys(s.Sets)) }

// appendTag appends a tag as nft prints a mark: 0x and eight hex digits.
func appendTag(b []byte, t uint32) []byte {
	const digits = "0123456789abcdef"
	b = append(b, '0', 'x')
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[t>>uint(shift)&0xf])
	}
	return b
}
