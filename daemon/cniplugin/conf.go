package cniplugin

import (
	"encoding/json"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
)

// DefaultTimeout bounds a call to the daemon when the configuration does not
// say: below the kubelet's and containerd's own CNI deadlines, and long enough
// for the daemon to wait for a pod's labels and a kernel batch.
const DefaultTimeout = 10 * time.Second

// netConf is the plugin's configuration on stdin: the spec's fields
// (prevResult among them) and nftwarden's.
type netConf struct {
	types.PluginConf
	Socket  string `json:"socket,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// conf is a checked configuration.
type conf struct {
	netConf
	socket  string
	timeout time.Duration
}

// parseConf decodes stdin and parses prevResult (into the configuration's
// version, as ParsePrevResult does), filling the defaults.
func parseConf(stdin []byte) (*conf, error) {
	var nc netConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, errorf(types.ErrDecodingFailure, "nftwarden-cni: decode the network configuration: %v", err)
	}
	if err := version.ParsePrevResult(&nc.PluginConf); err != nil {
		return nil, errorf(types.ErrDecodingFailure, "nftwarden-cni: %v", err)
	}
	c := &conf{netConf: nc, socket: nc.Socket, timeout: DefaultTimeout}
	if c.socket == "" {
		c.socket = cniwire.DefaultSocket
	}
	if nc.Timeout != "" {
		d, err := time.ParseDuration(nc.Timeout)
		if err != nil || d <= 0 {
			return nil, errorf(types.ErrInvalidNetworkConfig, "nftwarden-cni: \"timeout\" %q: want a positive Go duration such as \"10s\"", nc.Timeout)
		}
		c.timeout = d
	}
	return c, nil
}

// requirePrevResult fails the command when the plugin runs without the main
// plugin's result: it is chained, never first.
func (c *conf) requirePrevResult() error {
	if c.PrevResult == nil {
		return errorf(types.ErrInvalidNetworkConfig,
			"nftwarden-cni: no prevResult: the plugin must come after the plugin that assigns the pod's addresses in a conflist")
	}
	return nil
}
