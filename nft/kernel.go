package nft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Kernel programs one inet table in the kernel over netlink (google/nftables),
// without the nft binary. Every Apply is one atomic nf_tables batch.
//
// google/nftables marshals every message; Kernel sends batches on its own
// netlink socket without per-message acknowledgements (see batch.go), and
// reads listings on another with its own decoding (dump.go, kernel_read.go):
// the library's decodes lossily in places and allocates heavily. It remembers the definitions of the sets it created
// or read, because element operations need a set's key layout; on a miss it
// asks the kernel once. After a failed batch it reconnects, so no stale answer
// or half-built batch survives.
//
// Errors wrap the errno the kernel answered and one of the sentinels (ENOENT
// ErrNotFound, EEXIST ErrExists, EBUSY ErrBusy, EINVAL and EOPNOTSUPP
// ErrInvalid), and an *OpError naming the transaction operation whose message
// the kernel refused (or that could not be lowered).
//
// Cost to know: the kernel finds a set by name with a linear walk over the
// table's sets (oldest first), for every new set, rule lookup and element
// message, so with thousands of sets that walk is a large part of
// programming a whole node; Kernel therefore creates the sets a batch refers
// to most first, and element messages of a set the same batch creates name
// it by its batch ID instead (setid.go), which skips the walk. A one-element
// change stays well under a millisecond.
//
// Named counters and limits (kernel_objects.go) go in the same atomic
// batches as everything else; Kernel remembers which objects the table holds
// to refuse a changed definition under an old name (the kernel would keep
// the old one silently). Counters reads the named counters' values in one
// dump without waiting for a batch in flight.
//
// Rules inserted or deleted by position (InsertRule, DeleteRule) are sent by
// the handles of their neighbours or their own, which Kernel keeps per chain
// (kernel_rules.go): like a caller's record of what it programmed, they are
// trusted until a batch fails or the change monitor reports a foreign change.
//
// WatchChanges reports changes others make to the table (monitor.go), and
// Untouched says when nobody did since the last full read (untouched.go).
//
// Known limit of google/nftables v0.3.0: chain comments are not sent (the
// library has no chain userdata), so Read returns chains without comments;
// Diff does not compare chain comments, so this causes no churn.
type Kernel struct {
	mu      sync.Mutex
	table   *nftables.Table
	netns   int
	reader  *netlink.Conn // listings, through rd
	rd      *dumper
	batches *netlink.Conn // sends batches, reads only their errors
	recvBuf []byte
	seq     uint32 // last sequence number used on batches
	// builder marshals batches into captured; it never touches a socket.
	builder  *nftables.Conn
	captured []netlink.Message
	sets     map[string]setDef
	// handles are the handles of the rules of the chains, in order, where
	// known (kernel_rules.go); handlesEpoch is the tamper log's epoch when
	// they were last all known good.
	handles      map[string][]uint64
	handlesEpoch uint64
	// objects are the named objects of the table (kernel_objects.go); nil:
	// not listed yet.
	objects map[string]kernelObject
	bufSize int
	// tamper records what may have changed the table behind this Kernel's
	// back (see Untouched); monitorBuf is the change monitor's receive
	// buffer.
	tamper     *tamperLog
	monitorBuf int
	// bufLimit bounds the batch socket buffers, and so the largest batch
	// (tests lower it).
	bufLimit int
	// mutedHook, for tests, runs before a batch sent with the monitors
	// unsubscribed (mute.go).
	mutedHook func()
	// countersConn is the socket of Counters, which countersMu guards
	// instead of mu, so that reading counters never waits for a batch.
	countersMu   sync.Mutex
	countersConn *netlink.Conn
	countersRd   *dumper
}

var (
	_ Dataplane     = (*Kernel)(nil)
	_ CounterReader = (*Kernel)(nil)
)

// KernelOption configures NewKernel.
type KernelOption func(*Kernel)

// WithTable sets the name of the inet table (default DefaultTable).
func WithTable(name string) KernelOption { return func(k *Kernel) { k.table.Name = name } }

// WithNetNS programs the network namespace behind fd instead of the current one.
// The caller keeps ownership of fd and must keep it open while the Kernel lives.
func WithNetNS(fd int) KernelOption { return func(k *Kernel) { k.netns = fd } }

// WithSocketBuffer sets the initial send and receive buffer size of the batch
// socket (default 64 MiB). A batch is one sendmsg, so the send buffer must
// hold it; Kernel grows the buffers for larger batches on its own.
func WithSocketBuffer(bytes int) KernelOption { return func(k *Kernel) { k.bufSize = bytes } }

const (
	defaultSocketBuffer = 64 << 20
	// Elements per netlink message (elementmsgs.go). A message's element
	// list is one netlink attribute, whose length field is 16 bits. The
	// messages of a batch stay one atomic batch.
	maxElemsPerMsg = 2000
	maxBytesPerMsg = 60000
)

// NewKernel opens a netlink connection to nf_tables.
func NewKernel(opts ...KernelOption) (*Kernel, error) {
	k := &Kernel{
		table:      &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet},
		sets:       map[string]setDef{},
		bufSize:    defaultSocketBuffer,
		tamper:     newTamperLog(),
		monitorBuf: defaultMonitorBuffer,
		bufLimit:   1 << 30,
	}
	for _, o := range opts {
		o(k)
	}
	if k.table.Name == "" {
		return nil, fmt.Errorf("nft: empty table name: %w", ErrInvalid)
	}
	if err := k.dial(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Kernel) dial() error {
	var err error
	if k.reader, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns}); err != nil {
		return fmt.Errorf("nft: open netlink connection: %w", err)
	}
	k.rd = newDumper(k.reader)
	if k.batches, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns}); err != nil {
		_ = k.closeConns()
		return fmt.Errorf("nft: open netlink connection: %w", err)
	}
	// The change monitor tells this Kernel's batches from others' by the
	// port ID in their notifications.
	port, err := portID(k.batches)
	if err != nil {
		_ = k.closeConns()
		return fmt.Errorf("nft: prepare netlink connection: %w", err)
	}
	k.tamper.addPort(port)
	// Error answers carry only the failed message's header, not a copy of
	// the message (an element message can be 60 KB).
	if err := k.batches.SetOption(netlink.CapAcknowledge, true); err != nil {
		_ = k.closeConns()
		return fmt.Errorf("nft: prepare netlink connection: %w", err)
	}
	if err := sizeBuffers(k.batches, k.bufSize); err != nil {
		_ = k.closeConns()
		return fmt.Errorf("nft: prepare netlink connection: %w", err)
	}
	if k.builder, err = newBuilder(&k.captured); err != nil {
		_ = k.closeConns()
		return fmt.Errorf("nft: prepare batch builder: %w", err)
	}
	k.recvBuf = make([]byte, 64<<10)
	if err := primeDumpSize(k.reader); err != nil {
		_ = k.closeConns()
		return fmt.Errorf("nft: prepare netlink connection: %w", err)
	}
	return nil
}

// Close releases the netlink connections.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return errors.Join(k.closeConns(), k.closeCounters())
}

func (k *Kernel) closeConns() error {
	var errs []error
	for _, c := range []**netlink.Conn{&k.reader, &k.batches} {
		if *c != nil {
			errs = append(errs, (*c).Close())
			*c = nil
		}
	}
	k.builder, k.rd = nil, nil
	return errors.Join(errs...)
}

// reset replaces the connections after a failure: a failed batch may leave
// unread answers on the socket, and the builder keeps a marshalling error
// forever.
func (k *Kernel) reset() error {
	_ = k.closeConns()
	return k.dial()
}

func (k *Kernel) ready() error {
	if k.reader == nil {
		return k.dial()
	}
	return nil
}

// Table returns the table name.
func (k *Kernel) Table() string { return k.table.Name }

var setIDs atomic.Uint32

// Apply implements Dataplane.
func (k *Kernel) Apply(ctx context.Context, tx *Transaction) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.apply(ctx, tx)
}

// queued is one batch built from a transaction, not yet marshalled.
type queued struct {
	steps []step
	// set definitions created and deleted by the batch, committed to the
	// cache when it succeeds.
	added   map[string]setDef
	deleted map[string]bool
	// objects added (and deleted: nil) by the batch, likewise.
	objects map[string]*kernelObject
	// rules: what the batch does to the rules of chains, for the handles.
	rules *ruleBatch
	// arena holds the bodies of the rule and chain messages.
	arena msgArena
}

// step is the messages of one transaction operation (raw), marshalled by
// Kernel, or the library calls that marshal them (fn: the table and sets).
type step struct {
	op  int
	fn  func(*nftables.Conn) error
	raw []netlink.Message
}

// apply is applyOnce that records a failure for Untouched: the caller's
// record of what it programmed no longer matches the kernel's.
func (k *Kernel) apply(ctx context.Context, tx *Transaction) error {
	err := k.applyOnce(ctx, tx)
	if err != nil {
		k.tamper.touch()
		k.knowHandles(nil)
	}
	return err
}

func (k *Kernel) applyOnce(ctx context.Context, tx *Transaction) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: apply: %w", err)
	}
	if err := k.ready(); err != nil {
		return err
	}
	// Build everything first: a lowering error must not leave half a batch
	// queued on the connection.
	q, err := k.build(tx)
	if err != nil {
		return err
	}
	addTable := step{op: -1, fn: func(cc *nftables.Conn) error { cc.AddTable(k.table); return nil }}
	echoes, err := k.commit(tx, append([]step{addTable}, q.steps...), fmt.Sprintf("apply %d operations", len(tx.opsOrNil())))
	if err != nil {
		return err
	}
	k.commitRules(q.rules, echoes)
	for n := range q.deleted {
		delete(k.sets, n)
	}
	for n, d := range q.added {
		k.sets[n] = d
	}
	k.commitObjects(q.objects)
	return nil
}

// commit marshals steps into one batch and sends it, and returns the rules the
// kernel echoed. On any failure it resets the connections and returns the
// error: what failed to marshal, what the socket refused (wrapped as what),
// or the kernel's answer naming the operation of tx that it refused.
func (k *Kernel) commit(tx *Transaction, steps []step, what string) ([]ruleEcho, error) {
	n := 0
	for _, s := range steps {
		n += len(s.raw)
		if s.fn != nil {
			n += 2 // the library's messages (an AddSet queues one, two for a constant set)
		}
	}
	b := &pendingBatch{msgs: make([]netlink.Message, 0, n), op: make([]int, 0, n)}
	for _, s := range steps {
		if s.fn == nil {
			b.queueRaw(s.op, s.raw)
			continue
		}
		if err := k.queue(b, s); err != nil {
			_ = k.reset()
			return nil, fmt.Errorf("nft: marshal batch for table inet %s: %w", k.table.Name, err)
		}
	}
	muted := k.mute(tx)
	b.echoGen = muted != nil
	if muted != nil && k.mutedHook != nil {
		k.mutedHook()
	}
	errs, err := k.send(b)
	muted.end(b)
	switch {
	case len(errs) > 0:
		_ = k.reset()
		return nil, k.batchErr(tx, b, errs, err)
	case err != nil:
		_ = k.reset()
		return nil, k.wrap(what, err)
	}
	return b.ruleEchoes, nil
}

func (t *Transaction) opsOrNil() []Op {
	if t == nil {
		return nil
	}
	return t.Ops
}

func (k *Kernel) build(tx *Transaction) (*queued, error) {
	ops := tx.opsOrNil()
	q := &queued{added: map[string]setDef{}, deleted: map[string]bool{}, objects: map[string]*kernelObject{}, rules: newRuleBatch(tx)}
	def := func(name string) (setDef, error) {
		if d, ok := q.added[name]; ok {
			return d, nil
		}
		if q.deleted[name] {
			return setDef{}, fmt.Errorf("set %q was deleted earlier in the transaction: %w", name, ErrNotFound)
		}
		return k.setDef(name)
	}
	for _, i := range busySetsFirst(ops) {
		op := ops[i]
		opErr := func(err error) error {
			return fmt.Errorf("nft: table inet %s: %w", k.table.Name, &OpError{Index: i, Op: op, Err: err})
		}
		switch op.Kind {
		case OpAddChain:
			if op.Chain == nil || op.Chain.Name == "" {
				return nil, opErr(fmt.Errorf("chain without a name: %w", ErrInvalid))
			}
			c, err := k.kernelChain(op.Chain)
			if err != nil {
				return nil, opErr(err)
			}
			q.steps = append(q.steps, step{op: i, raw: []netlink.Message{k.newChainMessage(&q.arena, c)}})
		case OpReplaceRules:
			msgs, err := k.replaceRules(&q.arena, q.rules, op)
			if err != nil {
				return nil, opErr(err)
			}
			q.steps = append(q.steps, step{op: i, raw: msgs})
		case OpInsertRule, OpDeleteRule:
			s, err := k.ruleOp(&q.arena, q.rules, op)
			if err != nil {
				return nil, opErr(err)
			}
			s.op = i
			q.steps = append(q.steps, s)
		case OpDeleteChain:
			q.rules.deletedChain(op.Name)
			q.steps = append(q.steps, step{op: i, raw: []netlink.Message{k.delChainMessage(&q.arena, op.Name)}})
		case OpAddSet:
			if op.Set == nil {
				return nil, opErr(fmt.Errorf("no set definition: %w", ErrInvalid))
			}
			ks, err := kernelSet(k.table, op.Set)
			if err != nil {
				return nil, opErr(err)
			}
			ks.ID = setIDs.Add(1)
			q.added[op.Name] = defOf(op.Set)
			delete(q.deleted, op.Name)
			q.steps = append(q.steps, step{op: i, fn: func(cc *nftables.Conn) error { return cc.AddSet(ks, nil) }})
		case OpDeleteSet:
			s := &nftables.Set{Name: op.Name, Table: k.table}
			delete(q.added, op.Name)
			q.deleted[op.Name] = true
			q.steps = append(q.steps, step{op: i, fn: func(cc *nftables.Conn) error { cc.DelSet(s); return nil }})
		case OpAddElements, OpDeleteElements:
			d, err := def(op.Name)
			if err != nil {
				return nil, opErr(err)
			}
			msgs, err := k.elementMessages(op, d)
			if err != nil {
				return nil, opErr(err)
			}
			q.steps = append(q.steps, step{op: i, raw: msgs})
		case OpAddObject, OpDeleteObject:
			m, err := k.objectOp(op, q.objects)
			if err != nil {
				return nil, opErr(err)
			}
			q.steps = append(q.steps, step{op: i, raw: []netlink.Message{m}})
		default:
			return nil, opErr(fmt.Errorf("unknown operation %d: %w", op.Kind, ErrInvalid))
		}
	}
	return q, nil
}

// replaceRules lowers a ReplaceRules operation: flush the chain, add its rules.
func (k *Kernel) replaceRules(a *msgArena, rb *ruleBatch, op Op) ([]netlink.Message, error) {
	if op.Chain == nil {
		return nil, fmt.Errorf("no rules: %w", ErrInvalid)
	}
	rules := op.Chain.Rules
	ids := rb.replacedEntries(op.Name, len(rules))
	msgs := make([]netlink.Message, 0, 1+len(rules))
	msgs = append(msgs, k.flushChainMessage(a, op.Name))
	for j, r := range rules {
		exprs, ud, err := lowerRule(r)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", j, err)
		}
		rm := ruleMsg{chain: op.Name, exprs: exprs, ud: ud}
		if ids != nil {
			rm.id, rm.echo = ids[j], rb.echoAll
		}
		m, err := k.newRuleMessage(a, rm)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", j, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// busySetsFirst returns the order in which to send ops: their own, except
// that each run of consecutive AddSet operations is sorted so that the sets
// the batch's rules refer to most come first. The kernel resolves every set
// reference of a rule by a walk over the table's sets from the oldest, so on
// a node with thousands of sets this order makes programming it about 30%
// cheaper (BenchmarkKernelProgram, 10,000 policies) than name order, which
// put the widely shared port sets last.
func busySetsFirst(ops []Op) []int {
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	refs := map[string]int{}
	for _, op := range ops {
		if op.Kind != OpReplaceRules || op.Chain == nil {
			continue
		}
		for _, r := range op.Chain.Rules {
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case Lookup:
					refs[e.Set]++
				case VerdictMapLookup:
					refs[e.Map]++
				}
			}
		}
	}
	if len(refs) == 0 {
		return order
	}
	for start := 0; start < len(ops); {
		end := start
		for end < len(ops) && ops[end].Kind == OpAddSet {
			end++
		}
		if end-start > 1 {
			slices.SortStableFunc(order[start:end], func(a, b int) int { return refs[ops[b].Name] - refs[ops[a].Name] })
		}
		start = end + 1
	}
	return order
}

var hooks = []struct {
	ours   Hook
	kernel nftables.ChainHook
}{
	{HookForward, *nftables.ChainHookForward},
	{HookInput, *nftables.ChainHookInput},
	{HookOutput, *nftables.ChainHookOutput},
}

func (k *Kernel) kernelChain(c *Chain) (*nftables.Chain, error) {
	kc := &nftables.Chain{Name: c.Name, Table: k.table}
	if c.Base == nil {
		return kc, nil
	}
	var hook *nftables.ChainHook
	for _, h := range hooks {
		if h.ours == c.Base.Hook {
			hook = &h.kernel
		}
	}
	if hook == nil {
		return nil, fmt.Errorf("chain %q: unknown hook %q: %w", c.Name, c.Base.Hook, ErrInvalid)
	}
	var policy nftables.ChainPolicy
	switch c.Base.Policy {
	case VerdictAccept:
		policy = nftables.ChainPolicyAccept
	case VerdictDrop:
		policy = nftables.ChainPolicyDrop
	default:
		return nil, fmt.Errorf("chain %q: policy must be accept or drop: %w", c.Name, ErrInvalid)
	}
	prio := nftables.ChainPriority(c.Base.Priority)
	kc.Hooknum, kc.Priority, kc.Type, kc.Policy = hook, &prio, nftables.ChainTypeFilter, &policy
	return kc, nil
}

// setDef returns the definition of a set in the kernel, from the cache or by
// asking the kernel.
func (k *Kernel) setDef(name string) (setDef, error) {
	if d, ok := k.sets[name]; ok {
		return d, nil
	}
	sets, err := k.dumpSets(name)
	if err != nil {
		return setDef{}, err
	}
	if len(sets) == 0 {
		return setDef{}, fmt.Errorf("set %q: %w", name, ErrNotFound)
	}
	d := sets[0].def
	if d.Key == nil {
		return setDef{}, fmt.Errorf("set %q has a key type nftwarden does not use: %w", name, ErrInvalid)
	}
	k.sets[name] = d
	return d, nil
}

// Sentinel mapping of the errno the kernel answers.
var errnoSentinels = []struct {
	errno    unix.Errno
	sentinel error
}{
	{unix.ENOENT, ErrNotFound},
	{unix.EEXIST, ErrExists},
	{unix.EBUSY, ErrBusy},
	{unix.EINVAL, ErrInvalid},
	{unix.EOPNOTSUPP, ErrInvalid},
}

func (k *Kernel) wrap(what string, err error) error {
	if s := sentinelOf(err); s != nil {
		return fmt.Errorf("nft: %s in table inet %s: %w: %w", what, k.table.Name, s, err)
	}
	return fmt.Errorf("nft: %s in table inet %s: %w", what, k.table.Name, err)
}

// sentinelOf returns the sentinel for the errno in err, or nil.
func sentinelOf(err error) error {
	for _, m := range errnoSentinels {
		if errors.Is(err, m.errno) {
			return m.sentinel
		}
	}
	return nil
}

// Reconcile implements Dataplane: read, diff, apply, in one batch, never
// deleting the table.
func (k *Kernel) Reconcile(ctx context.Context, desired *State) (*Transaction, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cur, err := k.read(ctx)
	missing := IsNotFound(err)
	switch {
	case missing:
		cur = NewState()
	case err != nil:
		return nil, err
	}
	tx := Diff(cur, desired, nil)
	if tx.Empty() && !missing {
		return tx, nil
	}
	if err := k.apply(ctx, tx); err != nil {
		return nil, err
	}
	return tx, nil
}

// Cleanup implements Dataplane: it deletes the table and nothing else.
func (k *Kernel) Cleanup(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: cleanup: %w", err)
	}
	if err := k.ready(); err != nil {
		return err
	}
	k.sets = map[string]setDef{}
	k.objects = nil
	k.knowHandles(nil)
	delTable := step{op: -1, fn: func(cc *nftables.Conn) error { cc.DelTable(k.table); return nil }}
	// A table that is not there is already cleaned up.
	if _, err := k.commit(nil, []step{delTable}, "delete table"); err != nil && !errors.Is(err, unix.ENOENT) {
		k.tamper.touch()
		return err
	}
	return nil
}
