package enforcer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The cluster model lives in go-memdb. This file is its whole schema: the tables,
// their indexes and the typed indexers that read the Go structs (no reflection, no
// field names as strings).

const (
	tablePods       = "pods"
	tableNamespaces = "namespaces"
	tablePolicies   = "policies"

	indexID        = "id"        // every table: "ns/name" (namespaces: name)
	indexIP        = "ip"        // pods: each IP of an active pod (multi-value, 4 or 16 bytes)
	indexNamespace = "namespace" // policies: namespace
)

// Pods have no index by namespace: their ID "ns/name" starts with it, so the
// ID index finds the pods of a namespace by prefix. Every index costs a radix
// insert per pod, the biggest part of building the model for 100,000 pods.
// (The local pods a new policy may select are the compiler's localByNS.)

// podRecord is what the engine keeps of a pod. Records are immutable once
// inserted: an update inserts a new record.
type podRecord struct {
	ID, Namespace, Name string
	Node                string
	Labels              labelList
	// IPs are the pod's parsed addresses (unmapped, deduplicated, sorted v4 first).
	IPs         []netip.Addr
	HostNetwork bool
	// Finished is true for phase Succeeded or Failed.
	Finished bool
	// Ports are the named container ports, restartable init containers included.
	Ports []namedPort
}

// labelList is a pod's labels sorted by key. It implements labels.Labels for
// selectors. One slice per pod instead of a map: 100,000 small maps were a large
// part of building the model and of the live heap the GC scans; pods have few
// labels, so a scan is as quick as a map lookup.
type labelList []labelPair

type labelPair struct{ Key, Value string }

func makeLabelList(m map[string]string) labelList {
	if len(m) == 0 {
		return nil
	}
	l := make(labelList, 0, len(m))
	for k, v := range m {
		l = append(l, labelPair{k, v})
	}
	slices.SortFunc(l, func(a, b labelPair) int { return strings.Compare(a.Key, b.Key) })
	return l
}

// Lookup returns the value of label k and whether the label exists.
func (l labelList) Lookup(k string) (string, bool) {
	for i := range l {
		if l[i].Key == k {
			return l[i].Value, true
		}
	}
	return "", false
}

// Has reports whether label k exists.
func (l labelList) Has(k string) bool {
	_, ok := l.Lookup(k)
	return ok
}

// Get returns the value of label k ("" if absent).
func (l labelList) Get(k string) string {
	v, _ := l.Lookup(k)
	return v
}

var _ labels.Labels = labelList(nil)

// namedPort is one named container port.
type namedPort struct {
	Name  string
	Proto uint8 // nft.ProtoTCP, ProtoUDP, ProtoSCTP
	Port  uint16
}

// active reports whether the pod takes part in policy at all: it has an address,
// runs in the pod network and has not finished. Inactive pods are neither targets
// nor peers.
func (p *podRecord) active() bool {
	return p != nil && !p.HostNetwork && !p.Finished && len(p.IPs) > 0
}

// namespaceRecord is what the engine keeps of a namespace.
type namespaceRecord struct {
	Name   string
	Labels labels.Set
}

// policyRecord keeps the policy as given (Decide evaluates the raw spec) plus its
// compiled form.
type policyRecord struct {
	ID, Namespace, Name string
	Spec                networkingv1.NetworkPolicySpec
}

func newSchema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tablePods: {
			Name: tablePods,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(p *podRecord) string { return p.ID })},
				indexIP: {Name: indexIP, AllowMissing: true, Indexer: &typedAddrIndex[*podRecord]{
					fn: func(p *podRecord) []netip.Addr {
						if !p.active() {
							return nil
						}
						return p.IPs
					},
					extra: podIDLen,
				}},
			},
		},
		tableNamespaces: {
			Name: tableNamespaces,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(n *namespaceRecord) string { return n.Name })},
			},
		},
		tablePolicies: {
			Name: tablePolicies,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(p *policyRecord) string { return p.ID })},
				indexNamespace: {Name: indexNamespace, Indexer: &typedStringIndex[*policyRecord]{
					fn:    func(p *policyRecord) string { return p.Namespace },
					extra: func(p *policyRecord) int { return len(p.ID) + 1 },
				}},
			},
		},
	}}
}

// podIDLen is the length of a pod's primary key (ID and terminator), which
// memdb appends to the keys of its non-unique indexes.
func podIDLen(p *podRecord) int { return len(p.ID) + 1 }

// typedStringIndex indexes records of type T by one string; an empty string
// means the record is not in the index. A key is built in one allocation with
// room for extra bytes: memdb appends the primary key to the keys of
// non-unique indexes, which then needs no second buffer.
type typedStringIndex[T any] struct {
	fn    func(T) string
	extra func(T) int // nil: nothing is appended (unique index)
}

func stringIndex[T any](fn func(T) string) *typedStringIndex[T] { return &typedStringIndex[T]{fn: fn} }

func (ix *typedStringIndex[T]) FromObject(obj any) (bool, []byte, error) {
	t, ok := obj.(T)
	if !ok {
		return false, nil, fmt.Errorf("index: object is %T, want %T", obj, *new(T))
	}
	v := ix.fn(t)
	if v == "" {
		return false, nil, nil
	}
	size := len(v) + 1
	if ix.extra != nil {
		size += ix.extra(t)
	}
	return true, append(append(make([]byte, 0, size), v...), 0), nil
}

func (ix *typedStringIndex[T]) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

func (ix *typedStringIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	b, err := stringArg(args)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil // no terminator: a prefix
}

// typedAddrIndex indexes records of type T by addresses in binary (short keys
// make radix inserts cheap). The keys of one record share one buffer with room
// for extra bytes after each (see typedStringIndex).
type typedAddrIndex[T any] struct {
	fn    func(T) []netip.Addr
	extra func(T) int
}

func (ix *typedAddrIndex[T]) FromObject(obj any) (bool, [][]byte, error) {
	t, ok := obj.(T)
	if !ok {
		return false, nil, fmt.Errorf("index: object is %T, want %T", obj, *new(T))
	}
	addrs := ix.fn(t)
	if len(addrs) == 0 {
		return false, nil, nil
	}
	extra := 0
	if ix.extra != nil {
		extra = ix.extra(t)
	}
	size := 0
	for _, a := range addrs {
		size += addrKeyLen(a) + extra
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, 0, len(addrs))
	for _, a := range addrs {
		start := len(buf)
		buf = appendAddrKey(buf, a)
		// Capped so that an append to this key cannot run into the next one.
		out = append(out, buf[start:len(buf):len(buf)+extra])
		buf = buf[:len(buf)+extra]
	}
	return true, out, nil
}

func (ix *typedAddrIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index: want one argument, got %d", len(args))
	}
	a, ok := args[0].(netip.Addr)
	if !ok {
		return nil, fmt.Errorf("index: argument is %T, want netip.Addr", args[0])
	}
	return appendAddrKey(nil, a), nil
}

// appendAddrKey appends a family byte and the address: fixed length per
// family, so no key is a prefix of another (memdb looks non-unique indexes up by
// prefix).
func appendAddrKey(b []byte, a netip.Addr) []byte {
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		return append(append(b, 4), v[:]...)
	}
	v := a.As16()
	return append(append(b, 6), v[:]...)
}

func addrKeyLen(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 5
	}
	return 17
}

func stringArg(args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index: want one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index: argument is %T, want string", args[0])
	}
	return append([]byte(s), 0), nil
}

// model wraps the memdb with typed accessors. Writes go into one write
// transaction that stays open for a burst of changes and is committed at the
// next Flush or Reconcile: a memdb transaction per object costs tens of
// microseconds (radix path copies), one per burst costs almost nothing per
// object. Range reads see the open transaction. The engine's mutex serializes all of
// it.
//
// Lookups by ID do not read the open write transaction: memdb serves every
// read of a write transaction from a clone of the index, and cloning drops the
// index's cache of nodes already copied in this transaction, so the next insert
// copies the whole radix path again (a read before every upsert made the first
// build of a 100,000-pod cluster copy each path twice over). written records
// what this burst put or removed by table and ID; everything else is read from
// the last committed state, which the burst has not touched.
type model struct {
	db      *memdb.MemDB
	w       *memdb.Txn
	written map[string]map[string]any // table -> ID -> record (nil: removed) since the last commit
	// committed reads the last committed state (nil until needed);
	// committedEmpty caches, per table, whether that state has no record (a
	// cold start: then a lookup of every new record costs nothing).
	committed      *memdb.Txn
	committedEmpty map[string]bool
}

func newModel() (*model, error) {
	db, err := memdb.NewMemDB(newSchema())
	if err != nil {
		return nil, fmt.Errorf("cluster model: %w", err)
	}
	return &model{db: db}, nil
}

func (m *model) read() *memdb.Txn {
	if m.w != nil {
		return m.w
	}
	return m.db.Txn(false)
}

func (m *model) writer() *memdb.Txn {
	if m.w == nil {
		m.w = m.db.Txn(true)
	}
	return m.w
}

// commit ends the current burst.
func (m *model) commit() {
	if m.w != nil {
		m.w.Commit()
		m.w = nil
	}
	// Dropped rather than cleared: after a full build it holds every pod.
	m.written = nil
	m.committed = nil
	m.committedEmpty = nil
}

// put inserts or replaces the record obj whose ID is id.
func (m *model) put(table, id string, obj any) error {
	// Our indexers fail only on a wrong type, before anything is written.
	if err := m.writer().Insert(table, obj); err != nil {
		return fmt.Errorf("cluster model: insert into %s: %w", table, err)
	}
	m.wrote(table, id, obj)
	return nil
}

func (m *model) remove(table, id string) {
	_, _ = m.writer().DeleteAll(table, indexID, id)
	m.wrote(table, id, nil)
}

func (m *model) wrote(table, id string, obj any) {
	if m.written == nil {
		m.written = map[string]map[string]any{}
	}
	t := m.written[table]
	if t == nil {
		t = map[string]any{}
		m.written[table] = t
	}
	t[id] = obj
}

// byID returns the record with the given ID, as the open write transaction
// would, without reading the write transaction (see model).
func byID[T any](m *model, table, id string) T {
	var zero T
	if obj, ok := m.written[table][id]; ok {
		if obj == nil {
			return zero
		}
		return obj.(T)
	}
	if m.committed == nil {
		m.committed = m.db.Txn(false)
		m.committedEmpty = map[string]bool{}
	}
	empty, known := m.committedEmpty[table]
	if !known {
		raw, err := m.committed.First(table, indexID)
		empty = err == nil && raw == nil
		m.committedEmpty[table] = empty
	}
	if empty {
		return zero
	}
	raw, err := m.committed.First(table, indexID, id)
	if err != nil || raw == nil {
		return zero
	}
	return raw.(T)
}

func all[T any](m *model, table, index string, args ...any) []T {
	it, err := m.read().Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out
}

func (m *model) pod(id string) *podRecord { return byID[*podRecord](m, tablePods, id) }
func (m *model) namespace(name string) *namespaceRecord {
	return byID[*namespaceRecord](m, tableNamespaces, name)
}
func (m *model) policy(id string) *policyRecord {
	return byID[*policyRecord](m, tablePolicies, id)
}
func (m *model) podsByIP(a netip.Addr) []*podRecord {
	return all[*podRecord](m, tablePods, indexIP, a)
}
func (m *model) podsInNamespace(ns string) []*podRecord {
	pods := all[*podRecord](m, tablePods, indexID+"_prefix", ns+"/")
	// The prefix also finds a namespace "ns/x" (not a valid name, but the
	// engine does not reject it).
	return slices.DeleteFunc(pods, func(p *podRecord) bool { return p.Namespace != ns })
}
func (m *model) policiesInNamespace(ns string) []*policyRecord {
	return all[*policyRecord](m, tablePolicies, indexNamespace, ns)
}
func (m *model) namespaces() []*namespaceRecord {
	return all[*namespaceRecord](m, tableNamespaces, indexID)
}
func (m *model) pods() []*podRecord        { return all[*podRecord](m, tablePods, indexID) }
func (m *model) policies() []*policyRecord { return all[*policyRecord](m, tablePolicies, indexID) }
