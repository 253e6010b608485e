package enforcer

import "github.com/nftwarden/nftwarden/nft"

// Programmed returns a copy of the engine's record of what the dataplane
// holds (after its last successful Flush or Reconcile), for tests that check
// a failure leaves it alone.
func (e *Engine) Programmed() *nft.State {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	return e.programmed.Clone()
}
