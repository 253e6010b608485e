package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Packet is what Trace needs to know about a packet: the hook it traverses and
// the fields the vocabulary reads.
type Packet struct {
	Hook     Hook
	Src, Dst netip.Addr
	// Proto is the IP protocol number (ProtoTCP, ProtoUDP, ...). Only TCP, UDP,
	// UDP-Lite and SCTP packets have a destination port: Dport is ignored for
	// other protocols, and th dport does not match them (see Trace).
	Proto uint8
	Dport uint16
	// Ct is the packet's conntrack state, one bit of CtState; zero means CtNew.
	Ct CtState
	// TCPFlags are the flags of a TCP packet. Zero means the flags the
	// conntrack state implies: a SYN for a new connection, an ACK for any
	// other packet. To trace a segment from the middle of a stream that
	// conntrack picks up as new (its entry was deleted or lost), give Ct
	// zero (or CtNew) and TCPFlags TCPAck (or TCPAck|TCPPsh with data).
	TCPFlags TCPFlags
	// Iifname and Oifname are the input and output interfaces; "" means the
	// packet has none (an output packet has no input interface), so iifname
	// (oifname) matches do not match it.
	Iifname, Oifname string
	// Len is the packet's length in bytes (IP header included), what a
	// counter adds to its bytes (Fake.Trace); zero counts no bytes.
	Len int
}

// TraceResult is the outcome of a Trace.
type TraceResult struct {
	// Verdict is VerdictAccept or VerdictDrop.
	Verdict VerdictKind
	// Path lists the steps in order, for humans: each base chain entered, each
	// rule that matched (chain, rule index, rule text, comment) and how each base
	// chain ended.
	Path []string
	// Logged lists the log statements the packet reached, in order: a log
	// statement logs as soon as the packet reaches it, also when a later
	// match of its rule does not match.
	Logged []Log
	// Counted names the named counters (CounterRef) the packet reached, in
	// order, once per statement reached.
	Counted []string
}

// LoggedWith reports whether the packet reached a log statement with
// prefix (to NFLOG or to the kernel log).
func (r TraceResult) LoggedWith(prefix string) bool {
	return slices.ContainsFunc(r.Logged, func(l Log) bool { return l.Prefix == prefix })
}

// Accepted reports whether the packet got through.
func (r TraceResult) Accepted() bool { return r.Verdict == VerdictAccept }

func (r TraceResult) String() string {
	v := "drop"
	if r.Accepted() {
		v = "accept"
	}
	return v + ":\n  " + strings.Join(r.Path, "\n  ")
}

// maxJumpDepth is the kernel's jump stack size (NFT_JUMP_STACK_SIZE): a jump
// beyond it drops the packet.
const maxJumpDepth = 16

// maxGotos bounds the gotos one trace follows, so that a goto loop (which
// the kernel refuses to load, but a hand-made State can hold) ends. Jumps are
// bounded by maxJumpDepth, and without loops rules run at most once each.
const maxGotos = 1 << 12

// Trace follows the packet through the table as the kernel would and returns the
// verdict, reading the current table (a missing table accepts everything).
// Like the kernel it counts the packet (one packet, p.Len bytes) in each
// named counter it reaches, so that a test sees Read and Counters move;
// counting is no change to the table (Untouched stays as it is).
func (f *Fake) Trace(p Packet) TraceResult {
	// Apply changes the state in place: the trace runs under the lock, and
	// sees the table before or after a transaction, never a part of it.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		return TraceResult{Verdict: VerdictAccept, Path: []string{"table does not exist: accept"}}
	}
	r := Trace(f.state, p)
	for _, n := range r.Counted {
		// The state holds its own copies of objects (State.Apply, Clone).
		if o := f.state.Objects[n]; o != nil && o.Counter != nil {
			o.Counter.Packets++
			o.Counter.Bytes += uint64(max(p.Len, 0))
		}
	}
	return r
}

// Trace evaluates a packet against a state with the semantics of nftables:
//   - every base chain on the packet's hook runs, in priority order (equal
//     priorities by chain name; the kernel orders those by registration);
//     accept ends only the current base chain, drop ends everything, and a base
//     chain that runs to its end (or returns) applies its policy;
//   - a rule matches when all its match expressions match; a field the packet
//     does not have (ip fields of an IPv6 packet, ip6 fields of an IPv4 packet,
//     th dport of a protocol without ports, an absent interface) makes the
//     expression fail, also with !=;
//   - th dport exists only for TCP, UDP, UDP-Lite and SCTP. (nft's th reads
//     bytes 2-3 of any transport header, e.g. the ICMP checksum; policy never
//     matches ports of other protocols, so the tracer does not model that.)
//   - ct state matches when the packet's state is one of the listed bits;
//   - tcp flags matches only TCP packets (also with !=), comparing their
//     flags under the mask (see Packet.TCPFlags for the flags a packet has);
//   - a lookup in an interval set matches when the key lies in a range (ends
//     inclusive); in a concatenated interval set each component is compared with
//     its own range;
//   - a verdict-map lookup whose key is absent does not match, and the next rule
//     runs; otherwise the element's verdict applies;
//   - jump pushes a return point, goto does not, return pops one (return in a
//     base chain applies the policy), continue goes on with the next rule, and
//     the end of a regular chain returns;
//   - counter and log statements do not change the verdict; the log
//     statements and named counters a packet reaches are listed in the
//     result (Logged, Counted), also in a rule that then does not match;
//   - a named limit (LimitRef) always matches: the tracer has no clock, so
//     it traces every packet as one within the rate;
//   - a jump deeper than the kernel's stack (16) drops the packet.
func Trace(s *State, p Packet) TraceResult {
	t := tracer{s: s, p: p}
	if p.Ct == 0 {
		t.p.Ct = CtNew
	}
	if p.TCPFlags == 0 {
		t.p.TCPFlags = TCPAck
		if t.p.Ct == CtNew {
			t.p.TCPFlags = TCPSyn
		}
	}
	t.p.Src, t.p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	var bases []*Chain
	for _, c := range s.Chains {
		if c.Base != nil && c.Base.Hook == p.Hook {
			bases = append(bases, c)
		}
	}
	sort.Slice(bases, func(i, j int) bool {
		if bases[i].Base.Priority != bases[j].Base.Priority {
			return bases[i].Base.Priority < bases[j].Base.Priority
		}
		return bases[i].Name < bases[j].Name
	})
	if len(bases) == 0 {
		t.logf("no base chain on hook %s: accept", p.Hook)
		return TraceResult{Verdict: VerdictAccept, Path: t.path}
	}
	verdict := VerdictAccept
	for _, base := range bases {
		if t.runBase(base) == VerdictDrop {
			verdict = VerdictDrop
			break
		}
	}
	return TraceResult{Verdict: verdict, Path: t.path, Logged: t.logged, Counted: t.counted}
}

type tracer struct {
	s       *State
	p       Packet
	path    []string
	gotos   int
	logged  []Log
	counted []string
}

func (t *tracer) logf(format string, args ...any) {
	t.path = append(t.path, fmt.Sprintf(format, args...))
}

type frame struct {
	chain *Chain
	rule  int
}

// runBase runs one base chain and returns VerdictAccept or VerdictDrop.
func (t *tracer) runBase(base *Chain) VerdictKind {
	t.logf("%s: base chain %s (priority %d, policy %s)", base.Base.Hook, base.Name, base.Base.Priority, renderPolicy(base.Base.Policy))
	policy := func(why string) VerdictKind {
		k := base.Base.Policy
		if k != VerdictDrop {
			k = VerdictAccept
		}
		t.logf("%s: %s, policy %s", base.Name, why, renderPolicy(k))
		return k
	}
	cur := frame{chain: base}
	var stack []frame
	for {
		if cur.rule >= len(cur.chain.Rules) {
			if len(stack) == 0 {
				return policy("end of base chain")
			}
			t.logf("%s: end of chain, return to %s", cur.chain.Name, stack[len(stack)-1].chain.Name)
			cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
			continue
		}
		r := cur.chain.Rules[cur.rule]
		matched, v, via := t.evalRule(r)
		if !matched {
			cur.rule++
			continue
		}
		t.logf("%s[%d]: %s%s", cur.chain.Name, cur.rule, RenderRule(r), via)
		cur.rule++
		if v == nil {
			continue
		}
		switch v.Kind {
		case VerdictAccept:
			t.logf("%s: accept", base.Name)
			return VerdictAccept
		case VerdictDrop:
			t.logf("%s: drop", base.Name)
			return VerdictDrop
		case VerdictContinue:
		case VerdictReturn:
			if len(stack) == 0 {
				return policy("return from base chain")
			}
			cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
		case VerdictJump, VerdictGoto:
			target := t.s.Chains[v.Chain]
			if target == nil {
				// Fake and the kernel refuse such a state; a hand-made one can hold it.
				t.logf("%s: %s to missing chain %q: drop", cur.chain.Name, renderVerdict(*v), v.Chain)
				return VerdictDrop
			}
			if v.Kind == VerdictGoto {
				if t.gotos++; t.gotos > maxGotos {
					t.logf("%s: more than %d gotos (goto loop?): drop", cur.chain.Name, maxGotos)
					return VerdictDrop
				}
			}
			if v.Kind == VerdictJump {
				if len(stack) >= maxJumpDepth {
					t.logf("%s: jump stack overflow: drop", cur.chain.Name)
					return VerdictDrop
				}
				stack = append(stack, cur)
			}
			cur = frame{chain: target}
		default:
			t.logf("%s: unknown verdict %d: drop", cur.chain.Name, v.Kind)
			return VerdictDrop
		}
	}
}

// evalRule reports whether every match of the rule matched and, if so, the
// verdict it ends with (nil for none). via describes a verdict-map hit.
func (t *tracer) evalRule(r Rule) (bool, *Verdict, string) {
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case MatchCtState:
			if t.p.Ct&e.States == 0 {
				return false, nil, ""
			}
		case MatchTCPFlags:
			if t.p.Proto != ProtoTCP || !e.matches(t.p.TCPFlags) {
				return false, nil, ""
			}
		case Cmp:
			v, ok := t.field(e.Field)
			if !ok || bytes.Equal(v, e.Value) == e.Neq {
				return false, nil, ""
			}
		case Range:
			v, ok := t.field(e.Field)
			if !ok || bytes.Compare(v, e.From) < 0 || bytes.Compare(v, e.To) > 0 {
				return false, nil, ""
			}
		case Lookup:
			key, ok := t.key(e.Fields)
			if !ok {
				return false, nil, ""
			}
			if e.Tag != nil {
				// The kernel's key: the fields, then the tag (loadKey).
				key = append(key, e.Tag)
			}
			_, found := lookup(t.s.Sets[e.Set], key)
			if found == e.Neq {
				return false, nil, ""
			}
		case VerdictMapLookup:
			key, ok := t.key(e.Fields)
			if !ok {
				return false, nil, ""
			}
			el, found := lookup(t.s.Sets[e.Map], key)
			if !found || el.Verdict == nil {
				return false, nil, ""
			}
			v := *el.Verdict
			return true, &v, " -> " + renderVerdict(v)
		case Log:
			t.logged = append(t.logged, e)
		case CounterRef:
			t.counted = append(t.counted, e.Name)
		case Counter, LimitRef:
		case Verdict:
			v := e
			return true, &v, ""
		}
	}
	return true, nil, ""
}

// field returns the packet's value of a field, or false when the packet has no
// such field.
func (t *tracer) field(f Field) (Value, bool) {
	p := &t.p
	v4 := p.Src.Is4()
	switch f {
	case FieldNfproto:
		if v4 {
			return Value{NfprotoIPv4}, true
		}
		return Value{NfprotoIPv6}, true
	case FieldL4Proto:
		return ProtoValue(p.Proto), true
	case FieldIPSaddr:
		return addrField(p.Src, v4, true)
	case FieldIPDaddr:
		return addrField(p.Dst, v4, true)
	case FieldIP6Saddr:
		return addrField(p.Src, v4, false)
	case FieldIP6Daddr:
		return addrField(p.Dst, v4, false)
	case FieldTHDport:
		switch p.Proto {
		case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP:
			return PortValue(p.Dport), true
		}
		return nil, false
	case FieldIifname:
		if p.Iifname == "" {
			return nil, false
		}
		return IfnameValue(p.Iifname), true
	case FieldOifname:
		if p.Oifname == "" {
			return nil, false
		}
		return IfnameValue(p.Oifname), true
	}
	return nil, false
}

// addrField is an address field of family want4 (true: ip, false: ip6) of a
// packet whose family is pkt4; the packet's family is its source address's.
func addrField(a netip.Addr, pkt4, want4 bool) (Value, bool) {
	if pkt4 != want4 || !a.IsValid() || a.Is4() != want4 {
		return nil, false
	}
	return AddrValue(a), true
}

func (t *tracer) key(fields []Field) ([]Value, bool) {
	key := make([]Value, len(fields))
	for i, f := range fields {
		v, ok := t.field(f)
		if !ok {
			return nil, false
		}
		key[i] = v
	}
	return key, true
}

// lookup finds the element of set that contains key: equal components in a
// plain set, each component within its element's range in an interval set.
func lookup(set *Set, key []Value) (Element, bool) {
	if set == nil || len(key) != len(set.Key) {
		return Element{}, false
	}
	if !set.Interval {
		return set.Elements.Lookup(Element{Key: key})
	}
	for e := range set.Elements.Values() {
		if elementContains(e, key) {
			return e, true
		}
	}
	return Element{}, false
}

func elementContains(e Element, key []Value) bool {
	if len(e.Key) != len(key) {
		return false
	}
	for i, v := range key {
		end := e.Key[i]
		if e.KeyEnd != nil && i < len(e.KeyEnd) {
			end = e.KeyEnd[i]
		}
		if bytes.Compare(v, e.Key[i]) < 0 || bytes.Compare(v, end) > 0 {
			return false
		}
	}
	return true
}
