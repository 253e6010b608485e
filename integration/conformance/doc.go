// Package conformance runs the connectivity cases of the upstream Kubernetes
// NetworkPolicy e2e suite (k8s.io/kubernetes test/e2e/network/netpol, v1.37.2)
// and a Cyclonus-style generator against nftwarden, plus nftwarden's own cases
// for egress named ports with ipBlock peers (NamedPortIPBlockCases, issue #6:
// the name resolves on the pod at the destination address, as in Cyclonus and
// Calico).
//
// A case is data: the pods it needs (upstream's per-test topology over the
// namespaces x, y, z and pods a, b, c), and steps. A step applies actions
// (create, update or delete a policy; relabel a pod or a namespace) and then
// probes the pod matrix on one port and protocol against an expected
// reachability table. Expectations of ported cases are written the way upstream
// writes them (Expect, ExpectPeer, ExpectAllIngress, ExpectAllEgress on a table
// that starts all-allowed); they are never derived from nftwarden itself.
// Generated cases take their expectations from a model-only engine's reference
// evaluator (enforcer.Engine.Decide), which the dataplane must then agree with.
//
// Cases run against a Cluster. This package provides an in-process Cluster
// (NewModelCluster) with one engine per node, each programming an nft.Fake: a
// flow is allowed when the source node's ruleset and the destination node's
// ruleset both accept it, and the reference evaluator must agree. The packet
// harness in integration/cluster implements the same interface with network
// namespaces and real packets.
//
// Running (from the integration module):
//
//	go test ./conformance                              # model level: 49 ported + 2 named-port cases × 3 families, 320 generated
//	go test ./conformance -run TestGenerated -seed 7 -gen-cases 1000
//	go test ./conformance -run TestGenerated -seed N -case K -v   # rerun one generated case
//	sudo NFTW_CONFORMANCE=all go test ./conformance -run TestConformancePackets -v -timeout 2h
//
// Each run prints one line per case (PASS|FAIL name duration) and closes with
// "N passed, M failed".
//
// What this package must not do: touch the kernel (the model cluster never
// does; packet clusters own their namespaces), or compute an upstream case's
// expected table from the engine under test.
package conformance
