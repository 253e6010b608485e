package nft

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
