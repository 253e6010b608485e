package enforcer_test

import (
	"strings"

	"github.com/nftwarden/nftwarden/enforcer"
	"github.com/nftwarden/nftwarden/nft"
)

// trace sends the first packet of a flow through the forward hook of a node's
// Fake and reports whether it gets through, with the path for failure messages.
func trace(f *nft.Fake, fl enforcer.Flow) (bool, string) {
	r := f.Trace(nft.Packet{Hook: nft.HookForward, Src: fl.Src, Dst: fl.Dst, Proto: protoNum(fl.Protocol), Dport: fl.Port})
	return r.Accepted(), strings.Join(r.Path, "; ")
}
