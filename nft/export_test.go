package nft

import (
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Test hooks, compiled only into this package's tests.

// WithMonitorBuffer sets the change monitor's receive buffer, so that a test
// can make it overflow.
func WithMonitorBuffer(bytes int) KernelOption { return func(k *Kernel) { k.monitorBuf = bytes } }

// WithBufferLimit bounds the batch socket buffers, so that a test can send a
// batch that cannot fit without building a gigabyte of messages.
func WithBufferLimit(bytes int) KernelOption { return func(k *Kernel) { k.bufLimit = bytes } }

// SetMutedHook makes f run before each batch sent with the change monitors
// unsubscribed, so that a test can commit another batch in that window.
func (k *Kernel) SetMutedHook(f func()) { k.mutedHook = f }

// HoldLock takes the lock an Apply holds for its whole batch, as a long
// batch in flight would, until release is called.
func (k *Kernel) HoldLock() (release func()) {
	k.mu.Lock()
	return k.mu.Unlock
}

// RuleHandles returns the handles Kernel records for the rules of chain (nil
// when it does not know them) and those a dump of the chain lists now.
func (k *Kernel) RuleHandles(chain string) (recorded, dumped []uint64, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h, ok := k.handles[chain]; ok {
		recorded = append([]uint64{}, h...)
	}
	msgs, err := k.dumpRuleMessages(chain)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range msgs {
		_, h, err := ruleHandleOf(m)
		if err != nil {
			return nil, nil, err
		}
		dumped = append(dumped, h)
	}
	return recorded, dumped, nil
}

// RuleExpressions returns the NFTA_RULE_EXPRESSIONS of each rule of chain,
// as the kernel lists them.
func (k *Kernel) RuleExpressions(chain string) ([][]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	msgs, err := k.dumpRuleMessages(chain)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, m := range msgs {
		var exprs []byte
		for a := (attrs{b: m.Data[4:]}); a.next(); {
			if a.typ == unix.NFTA_RULE_EXPRESSIONS {
				exprs = a.val
			}
		}
		out = append(out, exprs)
	}
	return out, nil
}

// DecodeExprs decodes a rule's expressions as Kernel does (ours) and as
// google/nftables' decoders do (library), for tests that compare them.
func DecodeExprs(b []byte) (ours, library []expr.Any, oursErr, libraryErr error) {
	ours, oursErr = decodeExprs(b)
	library, libraryErr = libraryDecodeExprs(unix.NFPROTO_INET, b)
	return ours, library, oursErr, libraryErr
}

// ListRaw sends the requests of a full Read and reads their answers without
// decoding them (but the set names it needs), the floor under Read's cost:
// the kernel's work and the system calls. It returns how many messages the
// kernel answered.
func (k *Kernel) ListRaw() (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	msgs := 0
	count := func(uint16, []byte) error { msgs++; return nil }
	fam := byte(k.table.Family)
	var sets []string
	for _, r := range []struct {
		msg  uint16
		fam  byte
		dump bool
		attr []netlink.Attribute
		fn   func(uint16, []byte) error
	}{
		{unix.NFT_MSG_GETGEN, unix.AF_UNSPEC, false, nil, count},
		{unix.NFT_MSG_GETTABLE, fam, false, k.nameAttr(unix.NFTA_TABLE_NAME), count},
		{unix.NFT_MSG_GETCHAIN, fam, true, nil, count},
		{unix.NFT_MSG_GETRULE, fam, true, k.nameAttr(unix.NFTA_RULE_TABLE), count},
		{unix.NFT_MSG_GETSET, fam, true, k.nameAttr(unix.NFTA_SET_TABLE), func(typ uint16, data []byte) error {
			msgs++
			for a := (attrs{b: data}); a.next(); {
				if a.typ == unix.NFTA_SET_NAME {
					sets = append(sets, a.str())
				}
			}
			return nil
		}},
		{unix.NFT_MSG_GETOBJ, fam, true, k.nameAttr(unix.NFTA_OBJ_TABLE), count},
		{unix.NFT_MSG_GETGEN, unix.AF_UNSPEC, false, nil, count},
	} {
		if err := k.rd.request(r.msg, r.fam, r.dump, r.attr, r.fn); err != nil {
			return msgs, err
		}
	}
	for _, s := range sets {
		if err := k.rd.request(unix.NFT_MSG_GETSETELEM, fam, true, k.nameAttr(unix.NFTA_SET_ELEM_LIST_TABLE, s), count); err != nil {
			return msgs, err
		}
	}
	return msgs, nil
}

// RuleMessagesMismatch describes the first rule or chain message Kernel
// marshals for tx differently from google/nftables (nil: none), for tests
// with the programs of package nft_test (rulemsgs_oracle_test.go).
func RuleMessagesMismatch(tx *Transaction) error { return ruleMessagesMismatch(tx, nil) }
