package cniplugin

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// The plugin's own error codes (the spec leaves 100 and up to plugins); see
// the package documentation.
const (
	// ErrNoPodAddresses: prevResult holds no address on the pod's interfaces.
	ErrNoPodAddresses uint = 100
	// ErrDaemonRejected: the daemon found the request malformed (400).
	ErrDaemonRejected uint = 101
	// ErrPodNotFound: the API server does not know the pod (404).
	ErrPodNotFound uint = 102
	// ErrNotProgrammed: CHECK found the pod's addresses not programmed (409).
	ErrNotProgrammed uint = 103
	// ErrDaemonAnswer: the daemon answered with an unexpected status or a
	// body that does not parse.
	ErrDaemonAnswer uint = 104
	// ErrPodRefused: the daemon cannot program this pod as asked (422): the
	// API server puts it on another node, it uses the host's network or has
	// finished, or an address is one no pod can have.
	ErrPodRefused uint = 105
)

// errorf is a CNI error with code and a formatted message.
func errorf(code uint, format string, args ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, args...), "")
}
