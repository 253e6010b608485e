package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Read implements Dataplane. Rules the vocabulary cannot express (written by
// someone else) read back as a rule without expressions whose comment says
// why, so they never compare equal to a wanted rule and Reconcile replaces them.
func (k *Kernel) Read(ctx context.Context) (*State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.read(ctx)
}

func (k *Kernel) read(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: read: %w", err)
	}
	if err := k.ready(); err != nil {
		return nil, err
	}
	if _, err := k.conn.ListTableOfFamily(k.table.Name, k.table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			k.sets = map[string]setDef{}
			return nil, fmt.Errorf("nft: table inet %s: %w", k.table.Name, ErrNotFound)
		}
		return nil, k.wrap("list table", err)
	}
	st := NewState()
	chains, err := k.conn.ListChainsOfTableFamily(k.table.Family)
	if err != nil {
		return nil, k.wrap("list chains", err)
	}
	for _, kc := range chains {
		if kc.Table == nil || kc.Table.Name != k.table.Name {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nft: read: %w", err)
		}
		c := &Chain{Name: kc.Name, Base: liftBase(kc)}
		rules, err := k.conn.GetRules(k.table, kc)
		if err != nil {
			return nil, k.wrap(fmt.Sprintf("list rules of chain %q", kc.Name), err)
		}
		for _, kr := range rules {
			c.Rules = append(c.Rules, liftKernelRule(kr))
		}
		st.Chains[c.Name] = c
	}
	sets, err := k.dumpSets("")
	if err != nil {
		return nil, err
	}
	fresh := map[string]setDef{}
	for _, rs := range sets {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nft: read: %w", err)
		}
		s := &Set{Name: rs.name, Key: rs.def.Key, Interval: rs.def.Interval, VerdictMap: rs.def.VerdictMap,
			Comment: rs.comment, Elements: map[string]Element{}}
		st.Sets[s.Name] = s
		if rs.def.Key == nil {
			// A set of a kind nftwarden never creates: leave it empty so
			// that Diff recreates it if the name is wanted.
			continue
		}
		fresh[s.Name] = rs.def
		kes, err := k.conn.GetSetElements(&nftables.Set{Table: k.table, Name: s.Name})
		if err != nil {
			return nil, k.wrap(fmt.Sprintf("list elements of set %q", s.Name), err)
		}
		elems, err := rs.def.decodeElements(kes)
		if err != nil {
			return nil, fmt.Errorf("nft: table inet %s: set %q: %w", k.table.Name, s.Name, err)
		}
		for _, e := range elems {
			s.Elements[ElementID(s, e)] = e
		}
	}
	k.sets = fresh
	return st, nil
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

func liftKernelRule(kr *nftables.Rule) Rule {
	var r Rule
	if c, ok := userdata.GetString(kr.UserData, userdata.TypeComment); ok {
		r.Comment = c
	}
	exprs, err := liftRule(kr.Exprs)
	if err != nil {
		return Rule{Comment: fmt.Sprintf("nftwarden: unreadable rule (handle %d): %v", kr.Handle, err)}
	}
	r.Exprs = exprs
	return r
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
	attrs := []netlink.Attribute{{Type: unix.NFTA_SET_TABLE, Data: []byte(k.table.Name + "\x00")}}
	flags := netlink.Request | netlink.Dump
	if name != "" {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_SET_NAME, Data: []byte(name + "\x00")})
		flags = netlink.Request
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("nft: list sets: %w", err)
	}
	msgs, err := k.reader.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSET),
			Flags: flags,
		},
		Data: append([]byte{byte(k.table.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	})
	if err != nil {
		if name != "" && errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, k.wrap("list sets", err)
	}
	var out []rawSet
	for _, m := range msgs {
		rs, anonymous, err := parseSetMsg(m)
		if err != nil {
			return nil, fmt.Errorf("nft: table inet %s: %w", k.table.Name, err)
		}
		if !anonymous {
			out = append(out, rs)
		}
	}
	return out, nil
}

func parseSetMsg(m netlink.Message) (rawSet, bool, error) {
	var rs rawSet
	if len(m.Data) < 4 {
		return rs, false, fmt.Errorf("short set message")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return rs, false, fmt.Errorf("set message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var flags, keyMagic, keyLen, dataType uint32
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_NAME:
			rs.name = ad.String()
		case unix.NFTA_SET_FLAGS:
			flags = ad.Uint32()
		case unix.NFTA_SET_KEY_TYPE:
			keyMagic = ad.Uint32()
		case unix.NFTA_SET_KEY_LEN:
			keyLen = ad.Uint32()
		case unix.NFTA_SET_DATA_TYPE:
			dataType = ad.Uint32()
		case unix.NFTA_SET_USERDATA:
			if c, ok := userdata.GetString(ad.Bytes(), userdata.NFTNL_UDATA_SET_COMMENT); ok {
				rs.comment = c
			}
		}
	}
	if err := ad.Err(); err != nil {
		return rs, false, fmt.Errorf("set message: %w", err)
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
