package enforcer_test

import (
	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// trace sends the first packet of a flow through the forward hook of a node's
// Fake and reports whether it gets through, with the path for failure messages.
func trace(f *nft.Fake, fl enforcer.Flow) (bool, string) { return enforcer.TraceFlow(f, fl) }
