package cniplugin

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nftwarden/nftwarden/daemon/cniwire"
)

// VersionInfo is the CNI spec versions the plugin speaks (VERSION).
var VersionInfo = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// Plugin runs the CNI commands; Stdout gets ADD's result, Stderr the
// warnings of a DEL that could not reach the daemon. skel prints errors.
type Plugin struct {
	Stdout, Stderr io.Writer
}

// Main is the plugin binary: skel reads the environment and stdin, calls the
// command and prints its error as the spec says (and exits 1).
func Main() {
	p := &Plugin{Stdout: os.Stdout, Stderr: os.Stderr}
	skel.PluginMainFuncs(p.Funcs(), VersionInfo, about())
}

func about() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "nftwarden-cni " + v + ": holds a pod's start until nftwarden has programmed its network policy"
}

// Funcs are the commands for skel.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status}
}

// call is one command's parsed input.
type call struct {
	conf   *conf
	client *daemonClient
	req    cniwire.Request
}

// parse reads the configuration and, with pod set, the pod's identity (a
// missing one is an error) and prevResult's addresses (required).
func parse(args *skel.CmdArgs, pod bool) (*call, error) {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	cl := &call{
		conf:   c,
		client: newDaemonClient(c.socket, c.timeout),
		req:    cniwire.Request{ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName},
	}
	if !pod {
		return cl, nil
	}
	id, err := parseArgs(args.Args)
	if err != nil {
		return nil, err
	}
	cl.req.Namespace, cl.req.Name, cl.req.UID = id.namespace, id.name, id.uid
	if err := c.requirePrevResult(); err != nil {
		return nil, err
	}
	if cl.req.IPs, err = podAddresses(c.PrevResult); err != nil {
		return nil, err
	}
	return cl, nil
}

// Add has the daemon program the pod and passes prevResult on unchanged.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	cl, err := parse(args, true)
	if err != nil {
		return err
	}
	if err := cl.client.call(cniwire.PathAdd, cl.req); err != nil {
		return err
	}
	res, err := cl.conf.PrevResult.GetAsVersion(cl.conf.CNIVersion)
	if err != nil {
		return errorf(types.ErrIncompatibleCNIVersion, "nftwarden-cni: prevResult as CNI %s: %v", cl.conf.CNIVersion, err)
	}
	return res.PrintTo(p.Stdout)
}

// Check asks the daemon whether prevResult's addresses are programmed for
// the pod.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	cl, err := parse(args, true)
	if err != nil {
		return err
	}
	return cl.client.call(cniwire.PathCheck, cl.req)
}

// Del asks the daemon to release the pod's addresses (prevResult's when it
// has any, all of the pod's otherwise). Only a configuration that does not
// parse fails it; see the package documentation for why.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	cl, err := parse(args, false)
	if err != nil {
		return err
	}
	id, err := parseArgs(args.Args)
	if err != nil {
		// Not a Kubernetes pod, or one whose ADD failed on the same
		// arguments: nftwarden programmed nothing for it.
		p.warn("DEL of container %s: nothing to release: %v", args.ContainerID, err)
		return nil
	}
	cl.req.Namespace, cl.req.Name, cl.req.UID = id.namespace, id.name, id.uid
	if cl.conf.PrevResult != nil {
		// Without usable addresses the daemon releases all of the pod's.
		cl.req.IPs, _ = podAddresses(cl.conf.PrevResult)
	}
	if err := cl.client.call(cniwire.PathDel, cl.req); err != nil {
		p.warn("DEL of pod %s/%s (container %s): %v; the daemon removes the pod when the API server says it is gone",
			id.namespace, id.name, args.ContainerID, err)
	}
	return nil
}

// Status reports whether the daemon is listening (CNI 1.1): without it no
// ADD can succeed.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	cl, err := parse(args, false)
	if err != nil {
		return err
	}
	if err := cl.client.reachable(); err != nil {
		return errorf(types.ErrPluginNotAvailable, "nftwarden-cni: %v", err)
	}
	return nil
}

func (p *Plugin) warn(format string, args ...any) {
	if p.Stderr != nil {
		fmt.Fprintf(p.Stderr, "nftwarden-cni: warning: "+format+"\n", args...)
	}
}
