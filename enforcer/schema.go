package enforcer

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"unique"

	memdb "github.com/hashicorp/go-memdb"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The cluster model lives in go-memdb. This file is its whole schema: the tables,
// their indexes and the typed indexers that read the Go structs (no reflection, no
// field names as strings).

const (
	tableNamespaces = "namespaces"
	tablePolicies   = "policies"
	// tableClusterPolicies holds ClusterNetworkPolicies by name (cnp.go).
	tableClusterPolicies = "clusterpolicies"
	// tableNodes holds Nodes by name (nodes.go).
	tableNodes = "nodes"

	indexID = "id" // every table: "ns/name" (namespaces, nodes, cluster policies: name)
)

// Every table has only the ID index; the secondary indexes are typed maps of
// the model (indexes.go). Pods are not in memdb at all but in a map by
// namespace and name (podIndex): a memdb index costs a radix insert per
// record (it was the biggest part of building the model for 100,000 pods)
// and a radix leaf and node per record for as long as it lives, about 480
// bytes, against about 40 for a map entry; and a node agent holds every pod
// of the cluster. memdb keeps the tables of which a cluster has thousands at
// most (namespaces, policies, cluster policies, nodes).

// podRecord is what the engine keeps of a pod. Records are immutable once
// inserted: an update inserts a new record.
type podRecord struct {
	// ID is "namespace/name"; Namespace and Name return its parts.
	ID string
	// Node is spec.nodeName, interned (the pods of a node share it).
	Node   unique.Handle[string]
	Labels labelList
	// IPs are the pod's parsed addresses (unmapped, deduplicated, sorted v4 first).
	IPs []netip.Addr
	// Ports are the named container ports, restartable init containers
	// included, shared with the pods that have the same (portlists.go).
	Ports *portList
	// nsLen is the length of the namespace at the start of ID.
	nsLen       uint32
	HostNetwork bool
	// Finished is true for phase Succeeded or Failed.
	Finished bool
}

// Namespace returns the pod's namespace.
func (p *podRecord) Namespace() string { return p.ID[:p.nsLen] }

// Name returns the pod's name.
func (p *podRecord) Name() string { return p.ID[p.nsLen+1:] }

// labelList is a pod's labels sorted by key. It implements labels.Labels for
// selectors. One slice per pod instead of a map: 100,000 small maps were a large
// part of building the model and of the live heap the GC scans; pods have few
// labels, so a scan is as quick as a map lookup. Keys and values are interned
// (unique.Handle: 8 bytes instead of a 16-byte string header, and one copy of
// each string however many pods carry it); reading a handle's value is one
// pointer load. A list is immutable: pods parsed with the same labels share
// one (interner.labels).
type labelList []labelPair

type labelPair struct{ Key, Value unique.Handle[string] }

func makeLabelList(in *interner, m map[string]string) labelList {
	if len(m) == 0 {
		return nil
	}
	if len(m) > sharedLabelsMax {
		return appendLabels(in, make(labelList, 0, len(m)), m)
	}
	var set labelSet
	set.n = uint8(len(appendLabels(in, set.pairs[:0], m)))
	return in.labels(&set)
}

// appendLabels appends the labels of m, interned, to l and sorts l by key.
func appendLabels(in *interner, l labelList, m map[string]string) labelList {
	for k, v := range m {
		l = append(l, labelPair{in.make(k), in.make(v)})
	}
	slices.SortFunc(l, func(a, b labelPair) int { return strings.Compare(a.Key.Value(), b.Key.Value()) })
	return l
}

// Lookup returns the value of label k and whether the label exists.
func (l labelList) Lookup(k string) (string, bool) {
	for i := range l {
		if l[i].Key.Value() == k {
			return l[i].Value.Value(), true
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

// selectable returns p's labels for a selector's Matches: a pointer to the
// list, because a slice converted to an interface is copied to the heap, and
// the hot paths (a new peer group over every pod of its namespaces, a pod
// change over the groups of its namespace) match many times.
func (p *podRecord) selectable() labels.Labels { return &p.Labels }

// namedPort is one named container port. The name is interned: pods of a
// workload repeat the same few names.
type namedPort struct {
	Name  unique.Handle[string]
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
	// Audit: annotated for audit mode; Enforcement is the annotation's
	// value as written (EnforcementAnnotation).
	Audit       bool
	Enforcement string
}

func newSchema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
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
			},
		},
		tableClusterPolicies: {
			Name: tableClusterPolicies,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(c *cnpRecord) string { return c.ID })},
			},
		},
		tableNodes: {
			Name: tableNodes,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: stringIndex(func(n *nodeRecord) string { return n.Name })},
			},
		},
	}}
}

// typedStringIndex indexes records of type T by one unique string; an empty
// string means the record is not in the index.
type typedStringIndex[T any] struct {
	fn func(T) string
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
	return true, append(append(make([]byte, 0, len(v)+1), v...), 0), nil
}

func (ix *typedStringIndex[T]) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

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
	// pods holds and numbers every pod (podindex.go, see newSchema).
	pods podIndex
	// The secondary indexes (indexes.go): the active pods by address (their
	// numbers in pods), the parsed policies by namespace, the local pods by
	// namespace.
	ips      ipIndex
	policies policyIndex
	local    localIndex
}

func newModel() (*model, error) {
	db, err := memdb.NewMemDB(newSchema())
	if err != nil {
		return nil, fmt.Errorf("cluster model: %w", err)
	}
	m := &model{db: db}
	m.ips.pods = &m.pods
	return m, nil
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

func (m *model) pod(id string) *podRecord { return m.pods.get(id) }
func (m *model) namespace(name string) *namespaceRecord {
	return byID[*namespaceRecord](m, tableNamespaces, name)
}
func (m *model) policy(id string) *policyRecord {
	return byID[*policyRecord](m, tablePolicies, id)
}

// podsByIP returns the active pods with address a (usually one; several
// while an address is reused).
func (m *model) podsByIP(a netip.Addr) []*podRecord { return m.ips.get(a) }

// putPod inserts or replaces pod rec (old is the record it replaces, or nil)
// and returns its number (podindex.go).
func (m *model) putPod(old, rec *podRecord) podNum {
	n := m.pods.put(rec)
	m.ips.update(n, old, rec)
	return n
}

// removePod removes pod old and returns the number it had.
func (m *model) removePod(old *podRecord) podNum {
	n := m.pods.remove(old)
	m.ips.update(n, old, nil)
	return n
}

// podsInNamespace yields the pods of namespace ns with their numbers, in no
// order.
func (m *model) podsInNamespace(ns string) iter.Seq2[podNum, *podRecord] {
	return m.pods.inNamespace(ns)
}

func (m *model) namespaces() []*namespaceRecord {
	return all[*namespaceRecord](m, tableNamespaces, indexID)
}
