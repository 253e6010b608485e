// Package cniplugin is nftwarden-cni, the chained CNI plugin that holds a
// pod's start until the nftwarden daemon on the node has programmed the pod's
// addresses with its policy: no first packet leaves or reaches a new pod
// before its isolation is in the kernel.
//
// It is placed after the main plugin (the one that creates the interface and
// assigns the addresses) in the node's conflist:
//
//	{"type": "nftwarden-cni", "socket": "/run/nftwarden/cni.sock", "timeout": "10s"}
//
// "socket" (default cniwire.DefaultSocket) is the daemon's unix socket and
// "timeout" (a Go duration, default 10s) bounds each call to it. The plugin
// speaks package cniwire to the daemon and holds no state of its own.
//
// ADD reads the pod's identity from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME,
// K8S_POD_UID when given), its addresses from prevResult (the IPs on the
// container's interfaces), asks the daemon to program them and waits for the
// answer, then prints prevResult unchanged in the configuration's cniVersion.
// It never lets a pod start unprotected: when the daemon cannot be asked or
// does not answer in time, ADD fails and the runtime tries again.
//
// DEL asks the daemon to release the pod's addresses and always succeeds once
// its input parses (the errors are written to stderr). The spec asks DEL to
// tolerate what is already gone, and a failed DEL would only stop the
// runtime's cleanup: in a conflist DEL runs from the last plugin back, so an
// error here keeps the main plugin from releasing the pod's addresses and
// interface, and the kubelet retries the whole sandbox teardown for as long as
// the daemon is away. Nothing is lost by succeeding: the daemon's table stays
// as it was (fail closed), and the daemon learns of the pod's end from the API
// server (its watch removes the pod, and a restarted daemon rebuilds its state
// from the API server anyway).
//
// CHECK asks the daemon whether prevResult's addresses are programmed for the
// pod. STATUS (CNI 1.1) reports whether the daemon is listening on the socket.
// VERSION is answered by skel: 0.4.0, 1.0.0 and 1.1.0.
//
// Errors carry the spec's codes where one fits:
//
//	 4  invalid environment variables: CNI_ARGS malformed, or without
//	    K8S_POD_NAMESPACE and K8S_POD_NAME (ADD, CHECK)
//	 6  decoding failure: stdin or prevResult is not what the spec says
//	 7  invalid network configuration: a bad "socket" or "timeout", or no
//	    prevResult (the plugin is not chained after a main plugin)
//	11  try again later: the daemon is not listening, answered 503 or did not
//	    answer within the timeout
//	50  plugin not available (STATUS): the daemon is not listening
//
// and the plugin's own, from 100 on:
//
//	100  ErrNoPodAddresses   prevResult holds no address on the pod's interfaces
//	101  ErrDaemonRejected   the daemon found the request malformed (400): a version skew
//	102  ErrPodNotFound      the API server does not know the pod (404)
//	103  ErrNotProgrammed    CHECK: the pod's addresses are not programmed as asked (409)
//	104  ErrDaemonAnswer     the daemon answered with another status or an unreadable body
//	105  ErrPodRefused       the daemon cannot program this pod as asked (422): on another
//	                         node, hostNetwork, finished, or an address no pod can have
//
// The package must not panic on any input, must not keep state between
// calls, and must not import the daemon (the plugin binary stays small).
package cniplugin
