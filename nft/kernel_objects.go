package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Named objects (counters and limits) in the kernel. Their messages are
// built here rather than with google/nftables v0.3.0, whose NamedObj has no
// comment (NFTA_OBJ_USERDATA), and listed with a dump of our own, which
// also reads only the counters when asked (Counters).
//
// The kernel looks objects up by name and type, and answers an add of an
// existing object with success without comparing definitions (it updates
// the few types that can be updated, neither counters nor limits). Kernel
// therefore keeps what objects the table holds (Kernel.objects, listed once
// and then kept by its own batches and every full read) and refuses, as
// Fake does, an add under an existing name with another definition
// (ErrExists) before it sends anything; it also takes from there the type a
// deletion must name.

const (
	// nftaObjUserdata is NFTA_OBJ_USERDATA (linux 5.10), which x/sys lacks.
	nftaObjUserdata = 8
	// udataObjComment is NFTNL_UDATA_OBJ_COMMENT, the comment in an
	// object's userdata as nft writes it.
	udataObjComment userdata.Type = 0
)

// kernelObject is what Kernel remembers of one object of its table: its
// kernel type and, for the kinds of the vocabulary, its definition.
type kernelObject struct {
	typ uint32
	def *Object
}

// objectType is the kernel type of an object of the vocabulary.
func objectType(o *Object) uint32 {
	if o.Limit != nil {
		return unix.NFT_OBJECT_LIMIT
	}
	return unix.NFT_OBJECT_COUNTER
}

// objectData is the NFTA_OBJ_DATA of an object: a new counter at zero, a
// packet limit.
func objectData(o *Object) ([]byte, error) {
	var e expr.Any = &expr.Counter{}
	if l := o.Limit; l != nil {
		e = &expr.Limit{Type: expr.LimitTypePkts, Rate: l.Rate, Unit: expr.LimitTime(l.Unit.seconds()), Burst: l.Burst}
	}
	return expr.MarshalExprData(unix.NFPROTO_INET, e)
}

// objectMessage is a NEWOBJ (with the object's data and comment) or DELOBJ
// message for an object of type typ in table.
func objectMessage(table string, msg uint16, typ uint32, o *Object) (netlink.Message, error) {
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_OBJ_TABLE, Data: []byte(table + "\x00")},
		{Type: unix.NFTA_OBJ_NAME, Data: []byte(o.Name + "\x00")},
		{Type: unix.NFTA_OBJ_TYPE, Data: binaryutil.BigEndian.PutUint32(typ)},
	}
	flags := netlink.Request
	if msg == unix.NFT_MSG_NEWOBJ {
		flags |= netlink.Create
		data, err := objectData(o)
		if err != nil {
			return netlink.Message{}, fmt.Errorf("object %q: %w", o.Name, err)
		}
		attrs = append(attrs, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_OBJ_DATA, Data: data})
		if o.Comment != "" {
			if len(o.Comment) > 128 {
				return netlink.Message{}, fmt.Errorf("object %q: comment longer than 128 bytes: %w", o.Name, ErrInvalid)
			}
			attrs = append(attrs, netlink.Attribute{Type: nftaObjUserdata, Data: userdata.AppendString(nil, udataObjComment, o.Comment)})
		}
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, fmt.Errorf("object %q: %w", o.Name, err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg), Flags: flags},
		Data:   append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, data...),
	}, nil
}

// objectOp lowers an AddObject or DeleteObject operation into its message,
// checking it against what the table holds (seen: the objects as the batch
// left them so far, nil entries deleted).
func (k *Kernel) objectOp(op Op, seen map[string]*kernelObject) (netlink.Message, error) {
	cur, err := k.objectIn(op.Name, seen)
	if err != nil {
		return netlink.Message{}, err
	}
	switch op.Kind {
	case OpAddObject:
		if op.Object == nil {
			return netlink.Message{}, fmt.Errorf("object %q without a definition: %w", op.Name, ErrInvalid)
		}
		if err := op.Object.validate(); err != nil {
			return netlink.Message{}, err
		}
		if cur != nil && (cur.def == nil || !sameObjectDef(cur.def, op.Object)) {
			return netlink.Message{}, fmt.Errorf("%s %q exists with another definition (a changed object needs a new name): %w",
				objectKind(op.Object), op.Name, ErrExists)
		}
		seen[op.Name] = &kernelObject{typ: objectType(op.Object), def: cloneObject(op.Object)}
		return objectMessage(k.table.Name, unix.NFT_MSG_NEWOBJ, objectType(op.Object), op.Object)
	default:
		if cur == nil {
			return netlink.Message{}, fmt.Errorf("object %q: %w", op.Name, ErrNotFound)
		}
		seen[op.Name] = nil
		return objectMessage(k.table.Name, unix.NFT_MSG_DELOBJ, cur.typ, &Object{Name: op.Name})
	}
}

// objectIn returns the object called name as a batch being built left it
// (seen), else as the table holds it, listing the table's objects if this
// Kernel does not know them; nil when there is none.
func (k *Kernel) objectIn(name string, seen map[string]*kernelObject) (*kernelObject, error) {
	if o, ok := seen[name]; ok {
		return o, nil
	}
	if k.objects == nil {
		objs, err := k.dumpObjects(k.rd, 0)
		if err != nil {
			return nil, err
		}
		k.objects = objectCache(objs)
	}
	if o, ok := k.objects[name]; ok {
		return &o, nil
	}
	return nil, nil
}

// objectCache is what Kernel remembers of the objects a listing returned.
func objectCache(objs []rawObject) map[string]kernelObject {
	out := make(map[string]kernelObject, len(objs))
	for _, o := range objs {
		out[o.obj.Name] = kernelObject{typ: o.typ, def: o.known()}
	}
	return out
}

// commitObjects records in the cache what a committed batch did to objects.
func (k *Kernel) commitObjects(seen map[string]*kernelObject) {
	if k.objects == nil {
		return // listed when next needed
	}
	for n, o := range seen {
		if o == nil {
			delete(k.objects, n)
		} else {
			k.objects[n] = *o
		}
	}
}

// rawObject is an object as the kernel lists it: obj has a Counter or a
// Limit only when it is of a kind (and with options) the vocabulary has.
type rawObject struct {
	typ uint32
	obj *Object
}

// known returns the object's definition, nil for a kind nftwarden does not
// use.
func (r rawObject) known() *Object {
	if objectKind(r.obj) == "" {
		return nil
	}
	return r.obj
}

// dumpObjects lists the table's objects through d in one dump, only those of
// type typ unless it is 0 (NFT_OBJECT_UNSPEC). A missing table has none.
func (k *Kernel) dumpObjects(d *dumper, typ uint32) ([]rawObject, error) {
	attrs := k.nameAttr(unix.NFTA_OBJ_TABLE)
	if typ != 0 {
		attrs = append(attrs, netlink.Attribute{Type: unix.NFTA_OBJ_TYPE, Data: binaryutil.BigEndian.PutUint32(typ)})
	}
	var out []rawObject
	err := d.request(unix.NFT_MSG_GETOBJ, byte(k.table.Family), true, attrs, func(mtyp uint16, data []byte) error {
		if mtyp != unix.NFT_MSG_NEWOBJ {
			return nil
		}
		o, err := parseObjectMsg(data)
		if err != nil {
			return fmt.Errorf("nft: table inet %s: %w", k.table.Name, err)
		}
		out = append(out, o)
		return nil
	})
	if err != nil {
		if errors.Is(err, errDumpInterrupted) {
			return nil, err
		}
		return nil, k.wrap("list objects", err)
	}
	return out, nil
}

// parseObjectMsg decodes one object of a listing (data after the nfgenmsg
// header).
func parseObjectMsg(msg []byte) (rawObject, error) {
	r := rawObject{obj: &Object{}}
	var data []byte
	a := attrs{b: msg}
	for a.next() {
		switch a.typ {
		case unix.NFTA_OBJ_NAME:
			r.obj.Name = a.str()
		case unix.NFTA_OBJ_TYPE:
			r.typ = a.u32()
		case unix.NFTA_OBJ_DATA:
			data = a.val
		case nftaObjUserdata:
			if c, ok := userdata.GetString(a.val, udataObjComment); ok {
				r.obj.Comment = c
			}
		}
	}
	if a.err != nil {
		return rawObject{}, fmt.Errorf("object message: %w", a.err)
	}
	switch r.typ {
	case unix.NFT_OBJECT_COUNTER:
		c, err := parseCounterData(data)
		if err != nil {
			return rawObject{}, fmt.Errorf("counter %q: %w", r.obj.Name, err)
		}
		r.obj.Counter = &c
	case unix.NFT_OBJECT_LIMIT:
		l, err := parseLimitData(data)
		if err != nil {
			return rawObject{}, fmt.Errorf("limit %q: %w", r.obj.Name, err)
		}
		r.obj.Limit = l // nil: options the vocabulary does not have
	}
	return r, nil
}

func parseCounterData(data []byte) (CounterObject, error) {
	var c CounterObject
	a := attrs{b: data}
	for a.next() {
		switch a.typ {
		case unix.NFTA_COUNTER_PACKETS:
			c.Packets = a.u64()
		case unix.NFTA_COUNTER_BYTES:
			c.Bytes = a.u64()
		}
	}
	return c, a.err
}

// parseLimitData decodes a limit object's data; nil for a limit the
// vocabulary cannot express (on bytes, inverted, per hour or longer).
func parseLimitData(data []byte) (*LimitObject, error) {
	var (
		l                 LimitObject
		unit, typ, limFlg uint64
	)
	a := attrs{b: data}
	for a.next() {
		switch a.typ {
		case unix.NFTA_LIMIT_RATE:
			l.Rate = a.u64()
		case unix.NFTA_LIMIT_UNIT:
			unit = a.u64()
		case unix.NFTA_LIMIT_BURST:
			l.Burst = a.u32()
		case unix.NFTA_LIMIT_TYPE:
			typ = uint64(a.u32())
		case unix.NFTA_LIMIT_FLAGS:
			limFlg = uint64(a.u32())
		}
	}
	if a.err != nil {
		return nil, a.err
	}
	for _, u := range []LimitUnit{PerSecond, PerMinute} {
		if u.seconds() == unit {
			l.Unit = u
		}
	}
	if l.Unit == 0 || typ != unix.NFT_LIMIT_PKTS || limFlg != 0 {
		return nil, nil
	}
	return &l, nil
}

// readObjects lists the table's objects into st for a full read, and makes
// them what this Kernel knows of its objects. Of two objects with one name
// (the kernel keys them by name and type; nftwarden never makes two), the
// one of a kind the vocabulary has is kept.
func (k *Kernel) readObjects(st *State) error {
	objs, err := k.dumpObjects(k.rd, 0)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if cur := st.Objects[o.obj.Name]; cur == nil || objectKind(cur) == "" {
			st.Objects[o.obj.Name] = o.obj
		}
	}
	k.objects = objectCache(objs)
	for n, o := range st.Objects { // the one kept, for the type of a deletion
		if objectKind(o) != "" {
			k.objects[n] = kernelObject{typ: objectType(o), def: o}
		}
	}
	return nil
}

// Counters implements CounterReader: the values of the named counters, in
// one netlink dump of the table's counter objects alone, on a socket of
// its own. It neither waits for a batch in flight nor holds one up (it
// takes none of the Kernel's locks but that socket's), and it is no full
// read: Untouched stays as it is. Run beside a batch that adds or deletes
// counters, it lists each of them either before or after the batch. A
// missing table has no counters (an empty map).
func (k *Kernel) Counters(ctx context.Context) (map[string]CounterObject, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nft: read counters: %w", err)
	}
	k.countersMu.Lock()
	defer k.countersMu.Unlock()
	if k.countersConn == nil {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns})
		if err != nil {
			return nil, fmt.Errorf("nft: open netlink connection: %w", err)
		}
		k.countersConn, k.countersRd = c, newDumper(c)
	}
	objs, err := k.dumpObjects(k.countersRd, unix.NFT_OBJECT_COUNTER)
	if err != nil {
		// A socket that failed may hold a half-read answer: dial again
		// next time.
		_ = k.countersConn.Close()
		k.countersConn, k.countersRd = nil, nil
		return nil, err
	}
	out := make(map[string]CounterObject, len(objs))
	for _, o := range objs {
		if o.obj.Counter != nil {
			out[o.obj.Name] = *o.obj.Counter
		}
	}
	return out, nil
}

// closeCounters closes the socket of Counters.
func (k *Kernel) closeCounters() error {
	k.countersMu.Lock()
	defer k.countersMu.Unlock()
	if k.countersConn == nil {
		return nil
	}
	err := k.countersConn.Close()
	k.countersConn, k.countersRd = nil, nil
	return err
}
