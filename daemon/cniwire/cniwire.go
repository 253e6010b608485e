// Package cniwire is the protocol between the chained CNI plugin nftwarden-cni
// and the nftwarden daemon on the same node: HTTP/1.1 over a unix socket that
// only root can open, one JSON request per CNI command.
//
// The plugin sends ADD, DEL and CHECK as POSTs of a Request to PathAdd,
// PathDel and PathCheck. The daemon answers 200 with a Response when it has
// done what the command asks (ADD: the pod's addresses are programmed in the
// kernel with the pod's policy; DEL: they are gone; CHECK: they are there),
// and an error status with Response.Error otherwise:
//
//	400 Bad Request          the request is malformed (a bug in the plugin or a version skew)
//	404 Not Found            the pod is not known to the API server (ADD, CHECK)
//	409 Conflict             CHECK: the pod's addresses are not programmed as asked
//	422 Unprocessable Entity the daemon cannot program this pod as asked: the API server
//	                         puts it on another node, it uses the host's network or has
//	                         finished, or an address is one no pod can have
//	503 Service Unavailable  the daemon cannot do it now (not ready yet, the pod's labels
//	                         not seen in time, the kernel batch failed, the bound ran out);
//	                         Response.Retry is set and the runtime should try again
//
// The daemon answers within Request.Timeout (it stops waiting there, and the
// plugin fails the command: a pod never starts unprotected).
package cniwire

import (
	"net/netip"
	"time"
)

// DefaultSocket is where the daemon listens unless told otherwise
// (`nftwarden run --cni-socket`, the plugin's "socket" setting).
const DefaultSocket = "/run/nftwarden/cni.sock"

// The request paths, one per CNI command.
const (
	PathAdd   = "/v1/cni/add"
	PathDel   = "/v1/cni/del"
	PathCheck = "/v1/cni/check"
)

// Request is what the plugin sends for one CNI command.
type Request struct {
	// Namespace, Name and UID identify the pod (CNI_ARGS K8S_POD_NAMESPACE,
	// K8S_POD_NAME, K8S_POD_UID; UID may be empty when the runtime does not
	// pass it).
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// ContainerID, Netns and IfName are the CNI call's, for the daemon's log.
	ContainerID string `json:"containerID"`
	Netns       string `json:"netns,omitempty"`
	IfName      string `json:"ifName,omitempty"`
	// IPs are the pod's addresses from the previous plugin's result
	// (prevResult.ips). DEL may carry none (no prevResult): then the pod's
	// addresses as the daemon knows them are released.
	IPs []netip.Addr `json:"ips"`
	// Timeout is how long the plugin waits for the answer; the daemon gives
	// up a little before it.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	// Error says what failed; empty on success.
	Error string `json:"error,omitempty"`
	// Retry marks a transient failure: the runtime should try again later
	// (the plugin returns CNI error code 11, "try again later").
	Retry bool `json:"retry,omitempty"`
	// Programmed is how long the daemon took, from the request to the end
	// of the kernel batch that carried the pod (ADD, DEL).
	Programmed time.Duration `json:"programmed,omitempty"`
}
