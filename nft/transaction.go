package nft

import (
	"context"
	"errors"
	"fmt"
)

// OpKind says what one operation of a transaction does.
type OpKind int

// Operations of a transaction. Their semantics are the kernel's, and Fake enforces
// the same ones so that an engine bug shows up in unit tests:
//   - AddChain creates the chain (without rules) if it does not exist; adding an
//     existing chain with the same definition is a no-op.
//   - ReplaceRules flushes the chain and adds Rules (an empty list just flushes).
//   - DeleteChain deletes an existing chain that has no rules and is not referenced;
//     deleting a missing chain is ErrNotFound.
//   - AddSet creates the set (without elements) if it does not exist.
//   - DeleteSet deletes an existing set that no rule references.
//   - AddElements adds elements; adding one that exists with the same verdict is a
//     no-op, with another verdict ErrExists.
//   - DeleteElements deletes elements; deleting a missing one is ErrNotFound.
//   - AddObject creates a named counter or limit; adding an existing object
//     with the same definition (Counter values and the comment aside) is a
//     no-op, with another definition ErrExists: objects are never changed in
//     place, a different definition takes a different name.
//   - DeleteObject deletes an existing object that no rule names (ErrBusy
//     otherwise); deleting a missing object is ErrNotFound.
//   - InsertRule inserts Rule into an existing chain so that it becomes rule
//     Position (from 0) of the chain as it is at that point of the
//     transaction: 0 puts it first, the chain's length last. A position
//     beyond that is ErrInvalid, a missing chain ErrNotFound.
//   - DeleteRule deletes rule Position (from 0) of the chain as it is at that
//     point of the transaction; a position the chain does not have is
//     ErrNotFound. Rule, if set, is the rule deleted, for Format only: the
//     kernel deletes by position (Kernel keeps each chain's rule handles).
//
// The two rule operations change one rule of a chain where ReplaceRules
// rewrites all of them: a chain of 2,000 rules gains a rule in one message,
// not 2,001.
const (
	OpAddChain OpKind = iota + 1
	OpReplaceRules
	OpDeleteChain
	OpAddSet
	OpDeleteSet
	OpAddElements
	OpDeleteElements
	OpAddObject
	OpDeleteObject
	OpInsertRule
	OpDeleteRule
)

func (k OpKind) String() string {
	switch k {
	case OpAddChain:
		return "add chain"
	case OpReplaceRules:
		return "replace rules"
	case OpDeleteChain:
		return "delete chain"
	case OpAddSet:
		return "add set"
	case OpDeleteSet:
		return "delete set"
	case OpAddElements:
		return "add elements"
	case OpDeleteElements:
		return "delete elements"
	case OpAddObject:
		return "add object"
	case OpDeleteObject:
		return "delete object"
	case OpInsertRule:
		return "insert rule"
	case OpDeleteRule:
		return "delete rule"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one operation. Which fields are used depends on Kind: Chain for AddChain
// (definition, Rules ignored) and ReplaceRules (Name and Rules); Set for AddSet
// (definition, Elements ignored); Name for DeleteChain, DeleteSet, AddElements and
// DeleteElements, with Elements for the last two. AddElements and
// DeleteElements may carry their set's definition in Set (Diff's do), which
// only Format reads: it writes the keys in the set's types. Dataplanes go by
// the definition the table holds. Object for AddObject (the definition) and,
// optionally, DeleteObject (Diff's carry the deleted object's definition,
// which Format needs to name its kind; a dataplane without it looks the
// kind up in the table). Name, Position and Rule for InsertRule and
// DeleteRule (Rule optional there).
type Op struct {
	Kind     OpKind
	Name     string
	Chain    *Chain
	Set      *Set
	Elements []Element
	Object   *Object
	Position int
	Rule     *Rule
}

// Transaction is an ordered list of operations that a Dataplane applies as one
// atomic batch: either all of it takes effect or none of it does. The table itself
// is created implicitly when missing.
type Transaction struct {
	Ops []Op
}

// AddChain adds a chain definition (its Rules are ignored: use ReplaceRules).
func (t *Transaction) AddChain(c Chain) {
	c.Rules = nil
	t.Ops = append(t.Ops, Op{Kind: OpAddChain, Name: c.Name, Chain: &c})
}

// ReplaceRules sets the complete rule list of chain name.
func (t *Transaction) ReplaceRules(name string, rules []Rule) {
	t.Ops = append(t.Ops, Op{Kind: OpReplaceRules, Name: name, Chain: &Chain{Name: name, Rules: rules}})
}

// InsertRule inserts r into chain name as its rule at position (from 0).
func (t *Transaction) InsertRule(name string, position int, r Rule) {
	t.Ops = append(t.Ops, Op{Kind: OpInsertRule, Name: name, Position: position, Rule: &r})
}

// DeleteRule deletes the rule at position (from 0) of chain name; r is that
// rule, for Format (nil: not known).
func (t *Transaction) DeleteRule(name string, position int, r *Rule) {
	if r != nil {
		c := *r // the caller's rule slice may change under a pointer into it
		r = &c
	}
	t.Ops = append(t.Ops, Op{Kind: OpDeleteRule, Name: name, Position: position, Rule: r})
}

// DeleteChain deletes chain name.
func (t *Transaction) DeleteChain(name string) {
	t.Ops = append(t.Ops, Op{Kind: OpDeleteChain, Name: name})
}

// AddSet adds a set definition (its Elements are ignored: use AddElements).
func (t *Transaction) AddSet(s Set) {
	s.Elements = ElementMap{}
	t.Ops = append(t.Ops, Op{Kind: OpAddSet, Name: s.Name, Set: &s})
}

// DeleteSet deletes set name.
func (t *Transaction) DeleteSet(name string) {
	t.Ops = append(t.Ops, Op{Kind: OpDeleteSet, Name: name})
}

// AddElements adds elements to set name.
func (t *Transaction) AddElements(name string, elems ...Element) {
	if len(elems) == 0 {
		return
	}
	t.Ops = append(t.Ops, Op{Kind: OpAddElements, Name: name, Elements: elems})
}

// elementsOp is an AddElements or DeleteElements operation on set name that carries
// the set's definition, without its elements.
func elementsOp(kind OpKind, name string, set *Set, elems []Element) Op {
	def := *set
	def.Elements = ElementMap{}
	return Op{Kind: kind, Name: name, Set: &def, Elements: elems}
}

// DeleteElements deletes elements from set name.
func (t *Transaction) DeleteElements(name string, elems ...Element) {
	if len(elems) == 0 {
		return
	}
	t.Ops = append(t.Ops, Op{Kind: OpDeleteElements, Name: name, Elements: elems})
}

// AddObject adds a named counter or limit (a counter's values are ignored:
// a new counter starts at zero).
func (t *Transaction) AddObject(o Object) {
	t.Ops = append(t.Ops, Op{Kind: OpAddObject, Name: o.Name, Object: cloneObject(&o)})
}

// DeleteObject deletes the named object name.
func (t *Transaction) DeleteObject(name string) {
	t.Ops = append(t.Ops, Op{Kind: OpDeleteObject, Name: name})
}

// deleteObjectOp is a DeleteObject operation that carries the object's
// definition.
func deleteObjectOp(o *Object) Op {
	return Op{Kind: OpDeleteObject, Name: o.Name, Object: cloneObject(o)}
}

// Empty reports whether the transaction does nothing.
func (t *Transaction) Empty() bool { return t == nil || len(t.Ops) == 0 }

// Size counts the operations, each element counting as one.
func (t *Transaction) Size() int {
	if t == nil {
		return 0
	}
	n := 0
	for _, op := range t.Ops {
		switch op.Kind {
		case OpAddElements, OpDeleteElements:
			n += len(op.Elements)
		case OpReplaceRules:
			n += 1 + len(op.Chain.Rules)
		default:
			n++
		}
	}
	return n
}

// Dataplane programs one nftables table. Implementations: Kernel (netlink) and Fake
// (memory); both are also TamperEvident.
//
// Concurrency contract:
//   - Every method may be called from any goroutine, also while another call
//     runs; an implementation serialises what needs it. Each call sees the
//     table before or after a batch, never a part of one: Read during an
//     Apply returns the table as it was before the Apply or as it is after.
//   - Apply and Reconcile may take long (a kernel batch of a whole node takes
//     seconds), so a caller must not hold a lock that others need while it
//     calls them. The engine calls them from one caller at a time, in the
//     order of its record of what it programmed; concurrent Applies are not
//     an error, but their order is the implementation's.
//   - A call whose context has ended when it starts fails without touching
//     the table. A batch already sent is committed or refused whole.
//   - No method calls back into its caller.
//   - TamperEvident.Untouched answers without waiting for a batch in flight.
type Dataplane interface {
	// Apply applies tx as one atomic batch. On error nothing of tx took effect and
	// the caller should fall back to Reconcile.
	Apply(ctx context.Context, tx *Transaction) error
	// Reconcile reads what the table holds and converges it to desired in one
	// atomic transaction, without deleting the table (so no packet sees a missing
	// or half-built table). It returns the transaction it applied (empty when the
	// table already matched).
	Reconcile(ctx context.Context, desired *State) (*Transaction, error)
	// Read returns what the table holds now; a missing table reads as ErrNotFound.
	Read(ctx context.Context) (*State, error)
	// Cleanup deletes the table and nothing else; a missing table is not an error.
	Cleanup(ctx context.Context) error
}

// TamperEvident is implemented by a Dataplane that can prove nobody else changed
// its table (Kernel, with its change monitor running; Fake). A caller that keeps
// its own record of what it programmed may, on a periodic resync, diff that
// record against its desired state instead of calling Reconcile, which reads the
// whole table, when Untouched reports true.
type TamperEvident interface {
	// Untouched reports whether the table holds exactly what this Dataplane last
	// read from it (Read, Reconcile) or wrote to it since. False is always safe:
	// it only costs a Reconcile. Implementations say what they rely on.
	Untouched() bool
}

// CounterReader reads the values of the table's named counters (State.Objects
// with a Counter) cheaply, for metrics: Kernel in one netlink dump of the
// counters alone, Fake from memory. It is no full read and no change: it
// leaves TamperEvident.Untouched as it is, and may run beside Apply.
type CounterReader interface {
	// Counters returns the values of every named counter of the table by
	// name; a missing table has none (an empty map).
	Counters(ctx context.Context) (map[string]CounterObject, error)
}

// Sentinel errors, matched with errors.Is (or the Is* predicates).
var (
	// ErrNotFound: an object the operation needs does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the object exists with another definition or verdict.
	ErrExists = errors.New("already exists")
	// ErrInvalid: the operation or object is malformed (bad key length, unknown
	// set in a rule, verdict to a missing chain, ...).
	ErrInvalid = errors.New("invalid")
	// ErrBusy: the object is still in use (a set referenced by a rule, a chain
	// with rules or referenced by a jump, a named object a rule names).
	ErrBusy = errors.New("in use")
)

// IsNotFound reports whether err is or wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsExists reports whether err is or wraps ErrExists.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// IsInvalid reports whether err is or wraps ErrInvalid.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) }

// OpError says which operation of a transaction failed.
type OpError struct {
	Index int
	Op    Op
	Err   error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("operation %d (%s %q): %v", e.Index, e.Op.Kind, e.Op.Name, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }
