package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rule operations by position (InsertRule, DeleteRule) in the kernel.
//
// The kernel addresses a rule by its handle, a number it assigns when it adds
// the rule (one counter per table, never reused), or, within one batch, by an
// ID the batch gives it (NFTA_RULE_ID). Kernel therefore keeps the handles of
// the rules of each chain, in order (handles): filled by every full read, by
// a dump of the one chain when a batch edits a chain whose handles it does
// not know, and after each batch from the handles the kernel echoes for the
// rules it inserted (the NEWRULE notifications of the batch's own messages,
// which arrive before the batch's sync answer). The rules of a ReplaceRules
// are echoed too in a batch smaller than muteMinSize (a delta); in a larger
// one (a node program, whose answers the echoes would double) the chain is
// forgotten and dumped when next edited. Any failed batch, and any event
// that may have changed the table behind Kernel's back (the tamper log's
// epoch), forgets all of them.
//
// Lowering: a rule inserted at position 0 is inserted before the chain's
// first rule; else it is added after its predecessor, by the predecessor's
// handle or, when the predecessor is new in the batch, by its ID
// (NFTA_RULE_POSITION_ID). A deleted rule is deleted by handle, or by ID
// when the batch added it.

// nftaRulePositionID is NFTA_RULE_POSITION_ID, which golang.org/x/sys lacks.
const nftaRulePositionID = 0xa

var ruleIDs atomic.Uint32

// ruleEntry is one rule of a chain as a batch being built sees it: its
// handle, or (handle 0) the ID of the batch's message that adds it.
type ruleEntry struct {
	handle uint64
	id     uint32
}

// ruleEcho is a NEWRULE notification the kernel echoed for a batch.
type ruleEcho struct {
	chain  string
	handle uint64
}

// ruleBatch is what a batch being built does to the rules of the chains it
// edits.
type ruleBatch struct {
	// echoAll: the batch asks for the echo of every rule it adds.
	echoAll bool
	edited  map[string]bool        // chains with InsertRule or DeleteRule in the transaction
	entries map[string][]ruleEntry // their rules as the batch leaves them
	forget  map[string]bool        // chains whose handles are unknown after the batch
	// inserted: the chain and ID of each echoed message, in batch order.
	inserted []insertedRule
}

// insertedRule is a rule a batch inserts, whose handle the kernel echoes.
type insertedRule struct {
	chain string
	id    uint32
}

func newRuleBatch(tx *Transaction) *ruleBatch {
	ops := tx.opsOrNil()
	rb := &ruleBatch{echoAll: tx.Size() < muteMinSize, edited: map[string]bool{}, entries: map[string][]ruleEntry{}, forget: map[string]bool{}}
	for _, op := range ops {
		if op.Kind == OpInsertRule || op.Kind == OpDeleteRule {
			rb.edited[op.Name] = true
		}
	}
	return rb
}

// knowHandles replaces what Kernel knows of its rule handles (a full read's);
// nil forgets everything.
func (k *Kernel) knowHandles(h map[string][]uint64) {
	k.handles = h
	k.handlesEpoch = k.tamper.currentEpoch()
}

// chainEntries returns the rules of chain as the batch rb sees them so far:
// its own, else Kernel's record of the handles, else a dump of the chain
// (a chain the kernel does not have has none).
func (k *Kernel) chainEntries(rb *ruleBatch, chain string) ([]ruleEntry, error) {
	if e, ok := rb.entries[chain]; ok {
		return e, nil
	}
	if k.handlesEpoch != k.tamper.currentEpoch() {
		k.knowHandles(nil)
	}
	handles, known := k.handles[chain]
	if !known {
		msgs, err := k.dumpRuleMessages(chain)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		for _, m := range msgs {
			_, h, err := ruleHandleOf(m)
			if err != nil {
				return nil, fmt.Errorf("nft: table inet %s: chain %q: %w", k.table.Name, chain, err)
			}
			handles = append(handles, h)
		}
	}
	e := make([]ruleEntry, len(handles))
	for i, h := range handles {
		e[i].handle = h
	}
	return e, nil
}

// ruleHandleOf reads the chain and handle of a rule message.
func ruleHandleOf(m netlink.Message) (string, uint64, error) {
	if len(m.Data) < 4 {
		return "", 0, fmt.Errorf("short rule message")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return "", 0, fmt.Errorf("rule message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	var chain string
	var handle uint64
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			handle = ad.Uint64()
		}
	}
	if err := ad.Err(); err != nil {
		return "", 0, fmt.Errorf("rule message: %w", err)
	}
	if handle == 0 {
		return "", 0, fmt.Errorf("rule message without a handle")
	}
	return chain, handle, nil
}

// ruleOp lowers an InsertRule or DeleteRule operation.
func (k *Kernel) ruleOp(a *msgArena, rb *ruleBatch, op Op) (step, error) {
	entries, err := k.chainEntries(rb, op.Name)
	if err != nil {
		return step{}, err
	}
	p := op.Position
	if op.Kind == OpDeleteRule {
		if p < 0 || p >= len(entries) {
			return step{}, fmt.Errorf("chain %q has no rule %d: %w", op.Name, p, ErrNotFound)
		}
		e := entries[p]
		rb.entries[op.Name] = append(entries[:p:p], entries[p+1:]...)
		if e.handle != 0 {
			return step{raw: []netlink.Message{k.delRuleMessage(a, op.Name, e.handle, 0)}}, nil
		}
		return step{raw: []netlink.Message{k.delRuleMessage(a, op.Name, 0, e.id)}}, nil
	}
	if op.Rule == nil || p < 0 || p > len(entries) {
		return step{}, fmt.Errorf("chain %q: no rule, or position %d beyond its %d rules: %w", op.Name, p, len(entries), ErrInvalid)
	}
	exprs, ud, err := lowerRule(*op.Rule)
	if err != nil {
		return step{}, err
	}
	id := ruleIDs.Add(1)
	rm := ruleMsg{chain: op.Name, exprs: exprs, ud: ud, id: id, echo: true}
	switch {
	case p == 0:
		rm.insert = true // before the first
	case entries[p-1].handle != 0:
		rm.position = entries[p-1].handle
	default:
		rm.positionID = entries[p-1].id
	}
	m, err := k.newRuleMessage(a, rm)
	if err != nil {
		return step{}, err
	}
	rb.entries[op.Name] = append(entries[:p:p], append([]ruleEntry{{id: id}}, entries[p:]...)...)
	rb.inserted = append(rb.inserted, insertedRule{chain: op.Name, id: id})
	return step{raw: []netlink.Message{m}}, nil
}

// replacedEntries records that a ReplaceRules adds n rules to chain, and
// returns the IDs their messages carry (nil: none). They get IDs when the
// batch echoes them (echoAll) or edits the chain later; else the chain's
// handles are forgotten.
func (rb *ruleBatch) replacedEntries(chain string, n int) []uint32 {
	if !rb.echoAll {
		rb.forget[chain] = true
		if !rb.edited[chain] {
			return nil
		}
	}
	entries := make([]ruleEntry, n)
	ids := make([]uint32, n)
	for i := range entries {
		entries[i].id = ruleIDs.Add(1)
		ids[i] = entries[i].id
		if rb.echoAll {
			rb.inserted = append(rb.inserted, insertedRule{chain: chain, id: entries[i].id})
		}
	}
	rb.entries[chain] = entries
	return ids
}

// deletedChain records a DeleteChain: the chain has no rules after it.
func (rb *ruleBatch) deletedChain(chain string) {
	rb.entries[chain] = nil
}

// commitRules updates what Kernel knows of its rule handles after the batch
// of rb committed and the kernel echoed echoes.
func (k *Kernel) commitRules(rb *ruleBatch, echoes []ruleEcho) {
	if k.handles == nil {
		k.knowHandles(map[string][]uint64{})
	}
	for chain := range rb.forget {
		delete(k.handles, chain)
	}
	byID := map[uint32]uint64{}
	if len(echoes) == len(rb.inserted) {
		for i, e := range echoes {
			if e.chain == rb.inserted[i].chain {
				byID[rb.inserted[i].id] = e.handle
			}
		}
	}
	for chain, entries := range rb.entries {
		if rb.forget[chain] {
			continue
		}
		handles := make([]uint64, len(entries))
		for i, e := range entries {
			if handles[i] = e.handle; e.handle == 0 {
				handles[i] = byID[e.id]
			}
			if handles[i] == 0 {
				handles = nil
				break
			}
		}
		if handles == nil {
			delete(k.handles, chain)
			continue
		}
		k.handles[chain] = handles
	}
}
