// Package cluster runs a small, real Kubernetes environment on one Linux machine for
// nftwarden's integration tests and demo:
//
//   - a control plane: etcd and kube-apiserver built from Go modules
//     (scripts/build-control-plane.sh), on 127.0.0.1 with random ports, fresh certificates,
//     static tokens and a temporary data directory (ControlPlane);
//   - simulated nodes: one network namespace per node, joined by a bridge in an "underlay"
//     namespace, with IP forwarding enabled only inside the node namespaces (Env, Node);
//   - simulated pods: one network namespace per pod, wired to its node with a routed
//     point-to-point veth or, in the bridged variant, to a Linux bridge in the node
//     namespace with br_netfilter on; each pod runs the podagent helper, which serves
//     TCP, UDP and SCTP ports and answers probes (Pod, Probe, ProbeMatrix);
//   - API-only pods (AddAPIPod): Pod objects with status Running and addresses, but no
//     network namespace, for cheap churn and large peer sets;
//   - a host server in a node's namespace (Node.StartHostServer), as a hostNetwork
//     pod's, so that pods can probe the node's addresses (Env.ProbeAddr);
//   - long-lived flows between pods (OpenSession): one TCP connection or UDP 5-tuple
//     with an exchange every 100 ms, to see whether established traffic survives;
//   - the real nftwarden daemon, one per node namespace, talking to the API server
//     through a TCP relay whose listener lives inside the node namespace (StartDaemons),
//     as the service account of daemon/deploy/rbac.yaml with that file applied as
//     written; it can be stopped (SIGTERM) or killed (SIGKILL), and its kernel table
//     compared with the one the API server's objects compile to (WaitConverged);
//   - the nf_tables batches committed to a node's table, read from the kernel's
//     notifications in the node's namespace (Node.WatchNFTBatches, nftbatches.go), to
//     time when an API change is in force without sleeping or polling;
//   - outages of the control plane (StopAPIServer, StartAPIServer), and a node's loss
//     of the API server, with its connections closed (Node.CutAPI) or silently
//     (Node.BlackholeAPI: packets dropped, as with a dead host or a partition);
//   - the ClusterNetworkPolicy CRD of sigs.k8s.io/network-policy-api, standard or
//     experimental channel, installed from the module's own manifests and waited for
//     until served (InstallClusterNetworkPolicyCRD);
//   - pods whose network a real CNI chain makes (AddCNIPod, CNIPod): ptp with host-local
//     IPAM from github.com/containernetworking/plugins (the version integration/go.mod
//     pins as tools), optionally followed by nftwarden-cni with the node's daemon socket,
//     run by libcni inside the node namespace as a kubelet's runtime runs it, with the
//     kubelet's CNI_ARGS; ADD is timed, the status follows at once, later or never, and
//     DEL runs when the pod goes (cniconf.go, cnipod.go);
//   - as an option, the admission of a managed cluster that limits critical pods to
//     namespaces with a matching ResourceQuota (ControlPlaneOptions.LimitCriticalPods).
//
// Tests get an Env with StartForTest, which removes it when the test ends and logs its
// Diagnostics first if the test failed.
//
// Pods and nodes are also written to the API server the way a kubelet would (spec.nodeName
// at creation, status through the pods/status subresource), so the daemon sees the same
// cluster that the packets travel through.
//
// Address plan (only the test ranges 198.18.0.0/15 and 2001:db8::/32 are used):
//
//	node i underlay          198.18.0.(i+1)/24        2001:db8::(i+1)/64
//	pods of node i           198.18.(16+i).n/32       2001:db8:1:i::n/128   (routed)
//	                         198.18.(16+i).n/24       2001:db8:1:i::n/64    (bridged)
//	bridge gateway (bridged) 198.18.(16+i).254        2001:db8:1:i::fffe
//	CNI pods (host-local)    198.18.(16+i).128-250    2001:db8:1:i::1:80-1:fa
//	ptp gateway (CNI pods)   198.18.(16+i).251        2001:db8:1:i::1:fb
//	API-only pods, unrouted  198.18.224.0/19          2001:db8:ff::/64      (UnroutedAddrs)
//	service range            198.19.0.0/16 (given to the API server, unused)
//
// with i < 200, so that the node ranges end below the unrouted one. Pods take the
// addresses n = 1, 2, ... of their node unless the test chooses them (PodSpec.IPv4,
// IPv6; a pod with a network namespace only from its own node's ranges, since they are
// routed per node); on a node with CNI pods, n stays below 128.
//
// Everything this package creates is named with the prefix "nftw-it-<pid>-", is
// registered with a Janitor, and is removed by Close, by the Janitor on SIGINT, and
// (for leftovers of a process that died) by RemoveStale. It never changes routes,
// sysctls or nftables in the machine's own network namespace: the only things it starts
// there are etcd, kube-apiserver and the relays' outbound connections. (BlackholeAPI
// adds a table of its own, nftw_it_blackhole, in a node's namespace.)
package cluster
