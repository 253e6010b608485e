package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Read implements Dataplane. Rules the vocabulary cannot express (written by
// someone else) read back as a rule without expressions whose comment says
// why, so they never compare equal to a wanted rule and Reconcile replaces them.
// Counters, of rules and named, read back with the values the kernel
// counted (Counter, CounterObject), which Diff never compares; named objects
// of a kind nftwarden does not use read back with neither Counter nor Limit,
// so that Reconcile deletes them or recreates them as wanted.
//
// The listing is consistent: it starts over when the ruleset generation
// changes while it runs, and it dumps a hash set again when the kernel tore
// the dump by resizing the set meanwhile (see readElements). If the set keeps
// resizing through every attempt the last listing may lack elements; Reconcile
// then re-adds them, which is a no-op.
func (k *Kernel) Read(ctx context.Context) (*State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.read(ctx)
}

// readAttempts bounds how often read starts over because the ruleset changed
// while it was listing (someone else committed a batch in between).
const readAttempts = 5

// read is readConsistent that records for Untouched what a full read proves.
// A missing table is a successful read too.
func (k *Kernel) read(ctx context.Context) (*State, error) {
	ticket := k.tamper.readStarting()
	st, err := k.readConsistent(ctx)
	if err != nil && !IsNotFound(err) {
		k.tamper.touch()
		return nil, err
	}
	k.tamper.readDone(ticket)
	return st, err
}

func (k *Kernel) readConsistent(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: read: %w", err)
	}
	if err := k.ready(); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		before, err := k.generation()
		if err != nil {
			return nil, err
		}
		st, err := k.readOnce(ctx)
		interrupted := errors.Is(err, errDumpInterrupted)
		if err != nil && !interrupted {
			return nil, err
		}
		after, err := k.generation()
		if err != nil {
			return nil, err
		}
		if before == after && !interrupted {
			return st, nil
		}
		if attempt == readAttempts {
			return nil, fmt.Errorf("nft: table inet %s changed during %d reads: %w", k.table.Name, attempt, ErrBusy)
		}
	}
}

// readOnce lists the table; the result is consistent only if the generation
// did not change meanwhile.
func (k *Kernel) readOnce(ctx context.Context) (*State, error) {
	fam := byte(k.table.Family)
	err := k.rd.request(unix.NFT_MSG_GETTABLE, fam, false, k.nameAttr(unix.NFTA_TABLE_NAME), func(uint16, []byte) error { return nil })
	if errors.Is(err, unix.ENOENT) {
		k.sets = map[string]setDef{}
		k.objects = map[string]kernelObject{}
		k.knowHandles(map[string][]uint64{})
		return nil, fmt.Errorf("nft: table inet %s: %w", k.table.Name, ErrNotFound)
	}
	if err != nil {
		return nil, k.wrap("list table", err)
	}
	st := NewState()
	if err := k.readChains(st); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: read: %w", err)
	}
	rules, handles, err := k.dumpRules()
	if err != nil {
		return nil, err
	}
	k.knowHandles(handles)
	for name, rs := range rules {
		if c := st.Chains[name]; c != nil {
			c.Rules = rs
		}
	}
	sets, err := k.dumpSets("")
	if err != nil {
		return nil, err
	}
	fresh := map[string]setDef{}
	var er elementReader
	for _, rs := range sets {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nft: read: %w", err)
		}
		s := &Set{Name: rs.name, Key: rs.def.Key, Interval: rs.def.Interval, VerdictMap: rs.def.VerdictMap,
			Comment: rs.comment}
		st.Sets[s.Name] = s
		if rs.def.Key == nil {
			s.Elements = NewElements(s, 0)
			// A set of a kind nftwarden never creates: leave it empty so
			// that Diff recreates it if the name is wanted.
			continue
		}
		fresh[s.Name] = rs.def
		if err := k.readElements(ctx, &er, s, rs.def); err != nil {
			return nil, err
		}
	}
	k.sets = fresh
	if err := k.readObjects(st); err != nil {
		return nil, err
	}
	return st, nil
}

// nameAttr is a request's table name attribute (of type typ), plus the
// name of an object in the table (type typ+1) when one is given.
func (k *Kernel) nameAttr(typ uint16, name ...string) []netlink.Attribute {
	out := []netlink.Attribute{{Type: typ, Data: []byte(k.table.Name + "\x00")}}
	for _, n := range name {
		out = append(out, netlink.Attribute{Type: typ + 1, Data: []byte(n + "\x00")})
	}
	return out
}

// readChains lists the table's chains into st. The kernel dumps the chains
// of every table of the family; the others are skipped.
func (k *Kernel) readChains(st *State) error {
	err := k.rd.request(unix.NFT_MSG_GETCHAIN, byte(k.table.Family), true, nil, func(typ uint16, data []byte) error {
		if typ != unix.NFT_MSG_NEWCHAIN {
			return nil
		}
		c, ours, err := k.parseChainMsg(data)
		if err != nil || !ours {
			return err
		}
		st.Chains[c.Name] = c
		return nil
	})
	if err != nil {
		return k.wrap("list chains", err)
	}
	return nil
}

// parseChainMsg decodes one chain of a listing (data after the nfgenmsg
// header); ours is false for a chain of another table.
func (k *Kernel) parseChainMsg(data []byte) (c *Chain, ours bool, err error) {
	var (
		kc             nftables.Chain
		hook           nftables.ChainHook
		prio           nftables.ChainPriority
		policy         nftables.ChainPolicy
		name, tableNam []byte
	)
	a := attrs{b: data}
	for a.next() {
		switch a.typ {
		case unix.NFTA_CHAIN_TABLE:
			tableNam = a.val
		case unix.NFTA_CHAIN_NAME:
			name = a.val
		case unix.NFTA_CHAIN_TYPE:
			kc.Type = nftables.ChainType(a.str())
		case unix.NFTA_CHAIN_POLICY:
			policy = nftables.ChainPolicy(a.u32())
			kc.Policy = &policy
		case unix.NFTA_CHAIN_HOOK:
			for h := a.nested(); h.next(); {
				switch h.typ {
				case unix.NFTA_HOOK_HOOKNUM:
					hook = nftables.ChainHook(h.u32())
				case unix.NFTA_HOOK_PRIORITY:
					prio = nftables.ChainPriority(h.u32())
				}
				if h.err != nil {
					a.err = h.err
				}
			}
			kc.Hooknum, kc.Priority = &hook, &prio
		}
	}
	if a.err != nil {
		return nil, false, fmt.Errorf("nft: table inet %s: chain message: %w", k.table.Name, a.err)
	}
	if string(bytes.TrimRight(tableNam, "\x00")) != k.table.Name {
		return nil, false, nil
	}
	return &Chain{Name: string(bytes.TrimRight(name, "\x00")), Base: liftBase(&kc)}, true, nil
}

func liftBase(kc *nftables.Chain) *BaseChain {
	if kc.Hooknum == nil {
		return nil
	}
	b := &BaseChain{Hook: Hook(fmt.Sprintf("hook-%d", *kc.Hooknum))}
	for _, h := range hooks {
		if h.kernel == *kc.Hooknum {
			b.Hook = h.ours
		}
	}
	if kc.Type != nftables.ChainTypeFilter {
		b.Hook = Hook(fmt.Sprintf("%s-%s", kc.Type, b.Hook))
	}
	if kc.Priority != nil {
		b.Priority = int(int32(*kc.Priority))
	}
	if kc.Policy != nil {
		switch *kc.Policy {
		case nftables.ChainPolicyAccept:
			b.Policy = VerdictAccept
		case nftables.ChainPolicyDrop:
			b.Policy = VerdictDrop
		}
	}
	return b
}

// rawSet is a set as the kernel describes it. google/nftables v0.3.0 decodes
// the key type of verdict maps as "verdict" and drops set comments, so sets are
// listed with a dump of our own.
type rawSet struct {
	name    string
	comment string
	def     setDef // Key nil: a kind nftwarden does not use
}

// dumpSets lists the table's named sets, or the one set called name.
func (k *Kernel) dumpSets(name string) ([]rawSet, error) {
	attrs := k.nameAttr(unix.NFTA_SET_TABLE)
	if name != "" {
		attrs = k.nameAttr(unix.NFTA_SET_TABLE, name)
	}
	var out []rawSet
	err := k.rd.request(unix.NFT_MSG_GETSET, byte(k.table.Family), name == "", attrs, func(typ uint16, data []byte) error {
		if typ != unix.NFT_MSG_NEWSET {
			return nil
		}
		rs, anonymous, err := parseSetMsg(data)
		if err != nil {
			return fmt.Errorf("nft: table inet %s: %w", k.table.Name, err)
		}
		if !anonymous {
			out = append(out, rs)
		}
		return nil
	})
	if err != nil {
		if name != "" && errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		if errors.Is(err, errDumpInterrupted) {
			return nil, err
		}
		return nil, k.wrap("list sets", err)
	}
	return out, nil
}

// parseSetMsg decodes one set of a listing (data after the nfgenmsg header).
func parseSetMsg(data []byte) (rawSet, bool, error) {
	var rs rawSet
	var flags, keyMagic, keyLen, dataType uint32
	a := attrs{b: data}
	for a.next() {
		switch a.typ {
		case unix.NFTA_SET_NAME:
			rs.name = a.str()
		case unix.NFTA_SET_FLAGS:
			flags = a.u32()
		case unix.NFTA_SET_KEY_TYPE:
			keyMagic = a.u32()
		case unix.NFTA_SET_KEY_LEN:
			keyLen = a.u32()
		case unix.NFTA_SET_DATA_TYPE:
			dataType = a.u32()
		case unix.NFTA_SET_USERDATA:
			if c, ok := userdata.GetString(a.val, userdata.NFTNL_UDATA_SET_COMMENT); ok {
				rs.comment = c
			}
		}
	}
	if a.err != nil {
		return rs, false, fmt.Errorf("set message: %w", a.err)
	}
	rs.def.Interval = flags&unix.NFT_SET_INTERVAL != 0
	rs.def.VerdictMap = flags&unix.NFT_SET_MAP != 0
	key := keyFromMagic(keyMagic)
	known := key != nil && keyLenOf(key) == keyLen &&
		(!rs.def.VerdictMap || dataType == unix.NFT_DATA_VERDICT) &&
		flags&^(unix.NFT_SET_INTERVAL|unix.NFT_SET_MAP|nftables.NFT_SET_CONCAT) == 0
	if known {
		rs.def.Key = key
	}
	return rs, flags&unix.NFT_SET_ANONYMOUS != 0, nil
}

// keyFromMagic decodes nft's key type number: 6 bits per concatenated type.
func keyFromMagic(magic uint32) []KeyType {
	var key []KeyType
	for magic != 0 {
		m := magic & nftables.SetConcatTypeMask
		magic >>= nftables.SetConcatTypeBits
		found := false
		for i := range keyTypes {
			if keyTypes[i].kernel.GetNFTMagic() == m {
				key = append([]KeyType{keyTypes[i].ours}, key...)
				found = true
			}
		}
		if !found {
			return nil
		}
	}
	return key
}

func keyLenOf(key []KeyType) uint32 {
	if len(key) == 1 {
		return uint32(key[0].Len())
	}
	var n uint32
	for _, k := range key {
		n += words(uint32(k.Len())) * 4
	}
	return n
}

// dumpRules lists every rule of the table in one dump, grouped by chain in
// kernel order, with their handles. (google/nftables lists one chain per
// request, which costs a round trip per chain.)
func (k *Kernel) dumpRules() (map[string][]Rule, map[string][]uint64, error) {
	// The kernel lists the rules chain by chain: they go into one slice,
	// cut per run of one chain (each with its capacity, so that appending
	// to one chain's rules never writes over the next's), whose name is
	// decoded once.
	type run struct {
		chain      string
		start, end int
	}
	var (
		runs    []run
		rules   []Rule
		handles []uint64
		dec     ruleDecoder
	)
	err := k.rd.request(unix.NFT_MSG_GETRULE, byte(k.table.Family), true, k.nameAttr(unix.NFTA_RULE_TABLE), func(typ uint16, data []byte) error {
		if typ != unix.NFT_MSG_NEWRULE {
			return nil
		}
		name, handle, r, err := dec.parse(data)
		if err != nil {
			return fmt.Errorf("nft: table inet %s: %w", k.table.Name, err)
		}
		if len(runs) == 0 || string(name) != runs[len(runs)-1].chain {
			runs = append(runs, run{chain: string(name), start: len(rules)})
		}
		rules, handles = append(rules, r), append(handles, handle)
		runs[len(runs)-1].end = len(rules)
		return nil
	})
	if err != nil {
		if errors.Is(err, errDumpInterrupted) {
			return nil, nil, err
		}
		return nil, nil, k.wrap("list rules", err)
	}
	byChain, handlesByChain := make(map[string][]Rule, len(runs)), make(map[string][]uint64, len(runs))
	for _, r := range runs {
		rs, hs := rules[r.start:r.end:r.end], handles[r.start:r.end:r.end]
		if prev, ok := byChain[r.chain]; ok { // a chain listed in two runs: never seen
			rs, hs = append(prev, rs...), append(handlesByChain[r.chain], hs...)
		}
		byChain[r.chain], handlesByChain[r.chain] = rs, hs
	}
	return byChain, handlesByChain, nil
}

// dumpRuleMessages dumps the rules of one chain of the table, each message
// copied out of the receive buffer.
func (k *Kernel) dumpRuleMessages(chain string) ([]netlink.Message, error) {
	var msgs []netlink.Message
	err := k.rd.request(unix.NFT_MSG_GETRULE, byte(k.table.Family), true, k.nameAttr(unix.NFTA_RULE_TABLE, chain), func(typ uint16, data []byte) error {
		if typ == unix.NFT_MSG_NEWRULE {
			msgs = append(msgs, netlink.Message{Data: append([]byte{byte(k.table.Family), unix.NFNETLINK_V0, 0, 0}, data...)})
		}
		return nil
	})
	if err != nil {
		return nil, k.wrap("list rules", err)
	}
	return msgs, nil
}

// ruleDecoder decodes the rules of one listing. A rule whose expressions
// and comment are, byte for byte, those of a rule decoded before gets that
// rule's decoding: many rules of a node repeat (the policies of one peer
// group allow the same ports and jump to the same peer chain, every pod
// chain ends with the same counter and drop), and a Rule is never modified
// in place, so they share it. The memo lives for one listing.
type ruleDecoder struct {
	memo map[string]Rule
	key  []byte
}

// parse decodes one rule message (data after the nfgenmsg header): its
// chain's name (aliasing data), handle and rule, which says why in its
// comment if the vocabulary cannot express it.
func (d *ruleDecoder) parse(data []byte) ([]byte, uint64, Rule, error) {
	var (
		chain   []byte
		handle  uint64
		exprs   []byte
		comment []byte
	)
	a := attrs{b: data}
	for a.next() {
		switch a.typ {
		case unix.NFTA_RULE_CHAIN:
			chain = bytes.TrimRight(a.val, "\x00")
		case unix.NFTA_RULE_HANDLE:
			handle = a.u64()
		case unix.NFTA_RULE_USERDATA:
			comment = a.val
		case unix.NFTA_RULE_EXPRESSIONS:
			exprs = a.val
		}
	}
	if a.err != nil {
		return nil, 0, Rule{}, fmt.Errorf("rule message: %w", a.err)
	}
	d.key = append(binary.AppendUvarint(d.key[:0], uint64(len(comment))), comment...)
	d.key = append(d.key, exprs...)
	if r, ok := d.memo[string(d.key)]; ok {
		return chain, handle, r, nil
	}
	r, err := liftKernelRule(exprs, comment)
	if err != nil {
		// Not kept: the comment names the handle.
		return chain, handle, Rule{Comment: fmt.Sprintf("nftwarden: unreadable rule (handle %d): %v", handle, err)}, nil
	}
	if d.memo == nil {
		d.memo = map[string]Rule{}
	}
	d.memo[string(d.key)] = r
	return chain, handle, r, nil
}

// liftKernelRule is the rule of the vocabulary that a kernel rule's
// expressions and userdata express.
func liftKernelRule(exprs, userData []byte) (Rule, error) {
	var r Rule
	if c, ok := userdata.GetString(userData, userdata.TypeComment); ok {
		r.Comment = c
	}
	kexprs, err := decodeExprs(exprs)
	if err != nil {
		return Rule{}, err
	}
	if r.Exprs, err = liftRule(kexprs); err != nil {
		return Rule{}, err
	}
	// Clipped: rules that share it (ruleDecoder) must not share appends.
	r.Exprs = slices.Clip(r.Exprs)
	return r, nil
}

// generation returns the ruleset generation, which changes with every
// committed batch.
func (k *Kernel) generation() (uint32, error) {
	var gen uint32
	found := false
	err := k.rd.request(unix.NFT_MSG_GETGEN, unix.AF_UNSPEC, false, nil, func(typ uint16, data []byte) error {
		if typ != unix.NFT_MSG_NEWGEN {
			return nil
		}
		for a := (attrs{b: data}); a.next(); {
			if a.typ == unix.NFTA_GEN_ID {
				gen, found = a.u32(), a.err == nil
			}
		}
		return nil
	})
	if err != nil {
		return 0, k.wrap("read generation", err)
	}
	if !found {
		return 0, fmt.Errorf("nft: no generation in the kernel's answer")
	}
	return gen, nil
}

// getgenRequest asks for the ruleset generation (NFT_MSG_GETGEN).
func getgenRequest() netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
}

// genIDOf returns NFTA_GEN_ID of a generation message (the answer to
// GETGEN, or a NEWGEN notification), given its data after the header.
func genIDOf(data []byte) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32(), true
		}
	}
	return 0, false
}
