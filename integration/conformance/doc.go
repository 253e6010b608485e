// Package conformance runs the connectivity cases of the upstream Kubernetes
// NetworkPolicy e2e suite (k8s.io/kubernetes test/e2e/network/netpol, v1.37.2),
// the ClusterNetworkPolicy conformance tests of sigs.k8s.io/network-policy-api
// v0.3.0 (standard channel: Admin and Baseline tiers, ingress and egress per
// protocol, combined rules, pod selectors, port ranges, inline CIDR egress,
// priority and same priority, integration with NetworkPolicy; 24 tests,
// UpstreamCNPCases in upstream_cnp.go (Admin tier), upstream_cnp_baseline.go and
// upstream_cnp_steps.go (the subtests both tiers share), on the topology mapping of houses.go;
// and the experimental channel's 6 node-peer and named-port tests,
// UpstreamCNPExperimentalCases in upstream_cnp_experimental.go) and a
// Cyclonus-style generator that mixes NetworkPolicies and ClusterNetworkPolicies
// of both tiers against nftwarden, plus nftwarden's own cases for egress named
// ports with ipBlock peers (NamedPortIPBlockCases, issue #6: the name resolves
// on the pod at the destination address, as in Cyclonus and Calico).
//
// A case is data: the pods it needs (upstream's per-test topology over the
// namespaces x, y, z (and w for the ClusterNetworkPolicy cases) and pods a, b,
// c), and steps. A step applies actions (create, update or delete a
// NetworkPolicy or a ClusterNetworkPolicy; relabel a pod or a namespace) and
// then probes the pod matrix on one port and protocol against an expected
// reachability table. Expectations of ported cases are written the way upstream
// writes them (Expect, ExpectPeer, ExpectAllIngress, ExpectAllEgress on a table
// that starts all-allowed; for network-policy-api, its PokeServer calls, one
// flow each, NewPokes, and NodePokes for its pokes of hostNetwork servers,
// which probe a server in a node's own network namespace on the node's
// address); they are never derived from nftwarden itself.
// Generated cases take their expectations from a model-only engine's reference
// evaluator (enforcer.Engine.Decide), which the dataplane must then agree with,
// and which a naive reading of both APIs (semantics.go) cross-checks. SCTP
// runs with packets too: the test kernel has no SCTP sockets, so the pod agent
// speaks SCTP's handshake over raw IP sockets.
//
// Cases run against a Cluster. This package provides an in-process Cluster
// (NewModelCluster) with one engine per node, each programming an nft.Fake: a
// flow is allowed when the source node's ruleset and the destination node's
// ruleset both accept it, and the reference evaluator must agree. Its engines
// (and the Oracle's) run ClusterNetworkPolicy's experimental channel and know
// the two nodes as Node objects with their addresses (NodeAddrs). The packet
// harness in integration/cluster implements the same interface with network
// namespaces and real packets.
//
// Running (from the integration module):
//
//	go test ./conformance                              # model level: 49 ported NetworkPolicy + 2 named-port + 24 ported CNP + 6 experimental CNP cases × 3 families, 320 generated mixed cases
//	go test ./conformance -run TestGenerated -seed 7 -gen-cases 1000
//	go test ./conformance -run TestGenerated -seed N -case K -v   # rerun one generated case
//	sudo NFTW_CONFORMANCE=all go test ./conformance -run TestConformancePackets -v -timeout 2h
//	sudo NFTW_CONFORMANCE=ipv4,ipv6 go test ./conformance -run 'TestConformancePackets/ipv./CNP' -v  # the CNP cases only
//	sudo NFTW_CONFORMANCE=ipv4,ipv6 go test ./conformance -run 'TestConformancePackets/experimental-' -v  # the experimental CNP cases only
//
// With packets (TestConformancePackets) every variant runs all 75 ported
// cases (NetworkPolicy, named-port, ClusterNetworkPolicy) and
// NFTW_CONFORMANCE_GENERATED generated ones; the ClusterNetworkPolicy CRD
// (standard channel) is installed into the API server for the run. Then the
// experimental channel runs: its CRD replaces the standard one,
// daemon/deploy/rbac-node-peers.yaml is applied, and each routed variant
// (ipv4, ipv6) runs the 6 experimental cases as experimental-<variant> on a
// fresh environment whose daemons run with --cluster-network-policy=experimental
// and whose nodes serve NodeServerPorts in their own network namespaces.
// scripts/test.sh runs ipv4 and ipv6 with a sample of generated cases,
// scripts/conformance.sh every variant with 200 or more.
//
// Each run prints one line per case (PASS|FAIL name duration) and closes with
// "N passed, M failed".
//
// What this package must not do: touch the kernel (the model cluster never
// does; packet clusters own their namespaces), or compute an upstream case's
// expected table from the engine under test.
package conformance
