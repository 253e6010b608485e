package nft

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Render returns the table as `nft list table inet <table>` prints it (nftables
// 1.0.x): the same indentation, keywords, element wrapping and the same
// simplifications nft applies when it decompiles a rule, so that the text can be
// compared with the kernel's listing and read in reviews and golden files.
//
// Objects are printed in a deterministic order (named counters and limits,
// sets, then verdict maps, then chains, each sorted by name; elements sorted
// by key) where nft prints them in kernel order; compare with an
// order-insensitive normalization. Counters print the values the state
// carries: zero in a desired state, what the kernel counted in one read back.
// Names of objects are printed bare in their declaration and quoted where a
// rule names them, as nft does.
//
// What nft does and Render mirrors:
//   - an explicit `meta nfproto ipv4|ipv6` match followed by an ip/ip6 field of the
//     same family is a dependency and is not printed;
//   - a `meta l4proto P` match followed by `th dport` is not printed, and th dport
//     is printed as P's own field: `tcp dport`, `udp dport`, `udplite dport`,
//     `sctp dport`, `dccp dport`, `icmp checksum`, `icmpv6 checksum`, `igmp
//     checksum`, `ah reserved`, `comp cpi`; for other protocols it stays `th dport`;
//     after a tcp flags match th dport prints as `tcp dport` too;
//   - tcp flags matches print in one of nft's four forms (see renderTCPFlags);
//   - interval elements that are exactly one address prefix print as a prefix
//     (`198.18.0.0/16`), other ranges as `a-b`, single-value ranges as the value;
//   - IP protocol numbers print with their /etc/protocols names (Debian netbase);
//   - chain priorities within 10 of raw, mangle, filter or security print as that
//     name plus an offset (`filter + 1`), others as a number;
//   - a lookup's tag prints as nft 1.0.6 prints a constant it cannot give a
//     type (it does not take the type from the set): its bytes as one
//     big-endian number, then `[invalid type]`. On a little-endian host tag
//     42 prints `ip saddr . 0x2a000000 [invalid type] @peers-v4` while the
//     set's element prints `198.18.0.5 . 0x0000002a` (a mark, host order).
//     nft cannot read either form of the rule back (it cannot type a
//     constant in a concatenation); Transaction.Format writes it all the same.
//
// Comments and log prefixes are printed between double quotes as they are; nft
// cannot express a double quote inside them, so callers must not use one.
func Render(table string, s *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	if s == nil {
		s = NewState()
	}
	first := true
	block := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, n := range s.ObjectNames() {
		block()
		renderObject(&b, s.Objects[n])
	}
	names := s.SetNames()
	for _, vmaps := range []bool{false, true} {
		for _, n := range names {
			if set := s.Sets[n]; set.VerdictMap == vmaps {
				block()
				renderSet(&b, set)
			}
		}
	}
	for _, n := range s.ChainNames() {
		block()
		renderChain(&b, s.Chains[n])
	}
	b.WriteString("}\n")
	return b.String()
}

// renderObject prints a named counter or limit block as nft 1.0.6 lists it:
// the comment first, then the counter's values or the limit's rate.
func renderObject(b *strings.Builder, o *Object) {
	kind := objectKind(o)
	if kind == "" {
		fmt.Fprintf(b, "\t# object %s of a kind nftwarden does not use\n", o.Name)
		return
	}
	fmt.Fprintf(b, "\t%s %s {\n", kind, o.Name)
	for _, line := range objectDefinition(o) {
		b.WriteString("\t\t" + line + "\n")
	}
	if o.Counter != nil {
		fmt.Fprintf(b, "\t\tpackets %d bytes %d\n", o.Counter.Packets, o.Counter.Bytes)
	}
	b.WriteString("\t}\n")
}

// objectDefinition is the definition of a named object as nft lists it
// inside its block, one statement per line: the comment, then a limit's
// rate (a counter's values are state, not definition).
func objectDefinition(o *Object) []string {
	var lines []string
	if o.Comment != "" {
		lines = append(lines, "comment "+quote(o.Comment))
	}
	if o.Limit != nil {
		lines = append(lines, limitDefinition(o.Limit))
	}
	return lines
}

// limitDefinition is a limit's rate as nft prints it: the burst only when it
// is not the kernel's default of 5 packets.
func limitDefinition(l *LimitObject) string {
	def := fmt.Sprintf("rate %d/%s", l.Rate, l.Unit)
	if l.Burst != defaultLimitBurst {
		def += fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return def
}

// defaultLimitBurst is the burst the kernel gives a packet limit without one
// (NFT_LIMIT_PKT_BURST_DEFAULT), which nft does not print.
const defaultLimitBurst = 5

// renderValue prints a value as nft does; it differs from FormatValue in naming
// every IP protocol that nft names.
func renderValue(t KeyType, v Value) string {
	if t == TypeInetProto && len(v) == 1 {
		return protoName(v[0])
	}
	return FormatValue(t, v)
}

// protoNames are the names nft prints for IP protocol numbers: the first name of
// each number in /etc/protocols as Debian's netbase ships it (nft resolves them
// with getprotobynumber, so a host with another file prints other names).
var protoNames = map[uint8]string{
	0: "ip", 1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp", 8: "egp",
	9: "igp", 12: "pup", 17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4",
	33: "dccp", 36: "xtp", 37: "ddp", 38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route",
	44: "ipv6-frag", 45: "idrp", 46: "rsvp", 47: "gre", 50: "esp", 51: "ah", 57: "skip",
	58: "ipv6-icmp", 59: "ipv6-nonxt", 60: "ipv6-opts", 73: "rspf", 81: "vmtp",
	88: "eigrp", 89: "ospf", 93: "ax.25", 94: "ipip", 97: "etherip", 98: "encap",
	103: "pim", 108: "ipcomp", 112: "vrrp", 115: "l2tp", 124: "isis", 132: "sctp",
	133: "fc", 135: "mobility-header", 136: "udplite", 137: "mpls-in-ip", 138: "manet",
	139: "hip", 140: "shim6", 141: "wesp", 142: "rohc", 143: "ethernet",
}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// thDportNames is how nft prints the transport header bytes 2-3 (th dport) once
// a `meta l4proto` match tells it the protocol. Protocols not listed print as
// `th dport`.
var thDportNames = map[uint8]string{
	ProtoTCP: "tcp dport", ProtoUDP: "udp dport", ProtoUDPLite: "udplite dport",
	ProtoSCTP: "sctp dport", 33: "dccp dport", 1: "icmp checksum",
	58: "icmpv6 checksum", 2: "igmp checksum", 51: "ah reserved", 108: "comp cpi",
}

// ProtoUDPLite is the IP protocol number of UDP-Lite, which has ports like UDP.
const ProtoUDPLite = 136

// quote puts a string between double quotes as nft prints it: verbatim, without
// escapes (nft has none).
func quote(s string) string { return `"` + s + `"` }

func renderVerdict(v Verdict) string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	case VerdictReturn:
		return "return"
	case VerdictContinue:
		return "continue"
	}
	return fmt.Sprintf("verdict(%d)", int(v.Kind))
}

// stdPriorities are nft's named priorities usable on the filter hooks of an inet
// table, in the order nft tries them.
var stdPriorities = []struct {
	name string
	prio int
}{
	{"raw", -300}, {"mangle", -150}, {"filter", 0}, {"security", 50},
}

// natPriorities are named priorities nft does not print for filter chains on the
// forward, input and output hooks; a priority within reach of one prints as a
// number.
var natPriorities = []int{-100, 100}

func renderPriority(p int) string {
	const reach = 10
	for _, np := range natPriorities {
		if abs(p-np) <= reach {
			return strconv.Itoa(p)
		}
	}
	for _, sp := range stdPriorities {
		off := p - sp.prio
		switch {
		case off == 0:
			return sp.name
		case off > 0 && off <= reach:
			return fmt.Sprintf("%s + %d", sp.name, off)
		case off < 0 && -off <= reach:
			return fmt.Sprintf("%s - %d", sp.name, -off)
		}
	}
	return strconv.Itoa(p)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func renderPolicy(k VerdictKind) string {
	if k == VerdictDrop {
		return "drop"
	}
	return "accept"
}

func renderChain(b *strings.Builder, c *Chain) {
	fmt.Fprintf(b, "\tchain %s {\n", c.Name)
	for _, line := range chainDefinition(c) {
		b.WriteString("\t\t" + line + "\n")
	}
	for _, r := range c.Rules {
		b.WriteString("\t\t")
		b.WriteString(RenderRule(r))
		b.WriteString("\n")
	}
	b.WriteString("\t}\n")
}

// chainDefinition is the definition of a chain as nft lists it inside the
// chain's block, one line each: its comment and, for a base chain, its hook.
func chainDefinition(c *Chain) []string {
	var lines []string
	if c.Comment != "" {
		lines = append(lines, "comment "+quote(c.Comment))
	}
	if c.Base != nil {
		lines = append(lines, fmt.Sprintf("type filter hook %s priority %s; policy %s;",
			c.Base.Hook, renderPriority(c.Base.Priority), renderPolicy(c.Base.Policy)))
	}
	return lines
}

// RenderRule returns one rule as nft lists it (without indentation), applying the
// dependency simplifications described on Render.
func RenderRule(r Rule) string {
	hidden := hiddenDependencies(r.Exprs)
	var (
		parts   []string
		l4proto = -1 // protocol of the last `meta l4proto` match, -1 when none
	)
	fieldName := func(f Field) string {
		if f == FieldTHDport && l4proto >= 0 {
			if n, ok := thDportNames[uint8(l4proto)]; ok {
				return n
			}
		}
		return fieldText(f)
	}
	fieldList := func(fs []Field) string {
		names := make([]string, len(fs))
		for i, f := range fs {
			names[i] = fieldName(f)
		}
		return strings.Join(names, " . ")
	}
	for i, e := range r.Exprs {
		switch e := e.(type) {
		case MatchCtState:
			parts = append(parts, "ct state "+renderCtState(e.States))
		case MatchTCPFlags:
			// After a tcp flags match nft knows the protocol: th dport
			// prints as tcp dport.
			l4proto = ProtoTCP
			parts = append(parts, renderTCPFlags(e))
		case Cmp:
			if e.Field == FieldL4Proto && !e.Neq && len(e.Value) == 1 {
				l4proto = int(e.Value[0])
			}
			if hidden[i] {
				continue
			}
			op := ""
			if e.Neq {
				op = "!= "
			}
			parts = append(parts, fmt.Sprintf("%s %s%s", fieldName(e.Field), op, renderFieldValue(e.Field, e.Value)))
		case Range:
			parts = append(parts, fmt.Sprintf("%s %s-%s", fieldName(e.Field),
				renderFieldValue(e.Field, e.From), renderFieldValue(e.Field, e.To)))
		case Lookup:
			op := ""
			if e.Neq {
				op = "!= "
			}
			key := fieldList(e.Fields)
			if e.Tag != nil {
				key += " . " + renderUntyped(e.Tag)
			}
			parts = append(parts, fmt.Sprintf("%s %s@%s", key, op, e.Set))
		case VerdictMapLookup:
			parts = append(parts, fmt.Sprintf("%s vmap @%s", fieldList(e.Fields), e.Map))
		case Counter:
			parts = append(parts, fmt.Sprintf("counter packets %d bytes %d", e.Packets, e.Bytes))
		case Log:
			parts = append(parts, renderLog(e))
		case CounterRef:
			parts = append(parts, "counter name "+quote(e.Name))
		case LimitRef:
			parts = append(parts, "limit name "+quote(e.Name))
		case Verdict:
			parts = append(parts, renderVerdict(e))
		default:
			parts = append(parts, fmt.Sprintf("# unknown expression %T", e))
		}
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

// renderUntyped prints a constant as nft prints one without a type: the
// bytes as a big-endian number in hex, without leading zeros.
func renderUntyped(v Value) string {
	return fmt.Sprintf("%#x [invalid type]", new(big.Int).SetBytes(v))
}

// renderLog prints a log statement: `log`, then the prefix, then the NFLOG
// group, as nft 1.0.6 orders them (`log prefix "p" group 5`).
func renderLog(l Log) string {
	out := "log"
	if l.Prefix != "" {
		out += " prefix " + quote(l.Prefix)
	}
	if l.NFLog {
		out += " group " + strconv.Itoa(int(l.Group))
	}
	return out
}

// hiddenDependencies marks the protocol matches nft treats as dependencies of a
// later field and therefore does not print: the last `meta nfproto` match before
// an ip (ip6) field of its family, and the last `meta l4proto` match before th
// dport.
func hiddenDependencies(exprs []Expr) map[int]bool {
	hidden := map[int]bool{}
	nfproto, l4proto := -1, -1 // index of the pending dependency match
	use := func(f Field) {
		switch f {
		case FieldIPSaddr, FieldIPDaddr, FieldIP6Saddr, FieldIP6Daddr:
			if nfproto < 0 {
				return
			}
			c := exprs[nfproto].(Cmp)
			v4 := f == FieldIPSaddr || f == FieldIPDaddr
			if (v4 && c.Value[0] == NfprotoIPv4) || (!v4 && c.Value[0] == NfprotoIPv6) {
				hidden[nfproto] = true
				nfproto = -1
			}
		case FieldTHDport:
			if l4proto >= 0 {
				hidden[l4proto] = true
				l4proto = -1
			}
		}
	}
	for i, e := range exprs {
		switch e := e.(type) {
		case Cmp:
			if !e.Neq && len(e.Value) == 1 {
				switch e.Field {
				case FieldNfproto:
					nfproto = i
					continue
				case FieldL4Proto:
					l4proto = i
					continue
				}
			}
			use(e.Field)
		case Range:
			use(e.Field)
		case Lookup:
			for _, f := range e.Fields {
				use(f)
			}
		case VerdictMapLookup:
			for _, f := range e.Fields {
				use(f)
			}
		}
	}
	return hidden
}

func fieldText(f Field) string {
	switch f {
	case FieldNfproto:
		return "meta nfproto"
	case FieldL4Proto:
		return "meta l4proto"
	case FieldIPSaddr:
		return "ip saddr"
	case FieldIPDaddr:
		return "ip daddr"
	case FieldIP6Saddr:
		return "ip6 saddr"
	case FieldIP6Daddr:
		return "ip6 daddr"
	case FieldTHDport:
		return "th dport"
	case FieldIifname:
		return "iifname"
	case FieldOifname:
		return "oifname"
	}
	return fmt.Sprintf("field(%d)", int(f))
}

func renderFieldValue(f Field, v Value) string {
	if f == FieldNfproto && len(v) == 1 {
		switch v[0] {
		case NfprotoIPv4:
			return "ipv4"
		case NfprotoIPv6:
			return "ipv6"
		}
		return strconv.Itoa(int(v[0]))
	}
	return renderValue(f.Type(), v)
}

// tcpFlagNames in the order nft prints them (bit order).
var tcpFlagNames = []string{"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"}

// renderTCPFlags prints a tcp flags match as nft 1.0.6 lists it:
//   - without a mask (all flags kept): `tcp flags == syn` or `!= syn`, the
//     value by name when it is one flag and in hex otherwise (`== 0x12`);
//   - a mask and no flags: `tcp flags syn,ack` (some flag of the mask set)
//     or `tcp flags ! syn,ack` (none set);
//   - a one-flag mask and that flag: `tcp flags & ack == ack` (or `!=`);
//   - otherwise `tcp flags syn / fin,syn,rst,ack` or `tcp flags != syn /
//     fin,syn,rst,ack`, flags and mask by name.
func renderTCPFlags(m MatchTCPFlags) string {
	switch {
	case m.Flags == m.Mask && m.Mask&(m.Mask-1) == 0:
		op := " == "
		if m.Neq {
			op = " != "
		}
		return "tcp flags & " + tcpFlagList(m.Mask) + op + tcpFlagList(m.Flags)
	case m.Mask == allTCPFlags:
		op := "== "
		if m.Neq {
			op = "!= "
		}
		v := fmt.Sprintf("%#x", uint8(m.Flags))
		for i, n := range tcpFlagNames {
			if m.Flags == 1<<i {
				v = n
			}
		}
		return "tcp flags " + op + v
	case m.Flags == 0 && m.Neq:
		return "tcp flags " + tcpFlagList(m.Mask)
	case m.Flags == 0:
		return "tcp flags ! " + tcpFlagList(m.Mask)
	case m.Neq:
		return "tcp flags != " + tcpFlagList(m.Flags) + " / " + tcpFlagList(m.Mask)
	}
	return "tcp flags " + tcpFlagList(m.Flags) + " / " + tcpFlagList(m.Mask)
}

func tcpFlagList(f TCPFlags) string {
	var names []string
	for i, n := range tcpFlagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// ctStateNames in the order nft prints them (bit order).
var ctStateNames = []struct {
	bit  CtState
	name string
}{
	{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"},
	{CtNew, "new"}, {CtUntracked, "untracked"},
}

func renderCtState(s CtState) string {
	var names []string
	for _, n := range ctStateNames {
		if s&n.bit != 0 {
			names = append(names, n.name)
			s &^= n.bit
		}
	}
	if s != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(s)))
	}
	return strings.Join(names, ",")
}
