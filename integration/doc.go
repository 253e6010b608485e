// Package integration holds nftwarden's end-to-end tests: a real kube-apiserver and
// etcd, nodes and pods as network namespaces, the real nftwarden daemon in each node
// namespace, and real packets (TCP, UDP and SCTP, IPv4 and IPv6) between pods.
//
// The tests need root on Linux and the control plane binaries built by
// scripts/build-control-plane.sh; run them with scripts/test.sh. Test names start with
// TestIntegration. The harness itself lives in ./cluster; the podagent that serves and
// probes inside each pod namespace in ./cmd/podagent; the demo in ./cmd/demo.
//
// This module is separate from the library's (with a replace of the root module) so
// that test-only dependencies never reach programs that embed nftwarden.
package integration
