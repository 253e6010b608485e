// Package integration holds nftwarden's end-to-end tests: a real kube-apiserver and
// etcd, nodes and pods as network namespaces, the real nftwarden daemon in each node
// namespace, and real packets (TCP, UDP and SCTP, IPv4 and IPv6) between pods.
//
// The tests need root on Linux and the control plane binaries built by
// scripts/build-control-plane.sh; run them with scripts/test.sh. Test names start with
// TestIntegration. The harness itself lives in ./cluster; the podagent that serves and
// probes inside each pod namespace in ./cmd/podagent; the demo in ./cmd/demo; the
// benchmarks against a large cluster in ./cmd/memload (daemon memory,
// scripts/bench-daemon-memory.sh) and ./cmd/latencybench (API write to kernel,
// scripts/bench-latency.sh, method and figures in LATENCY.md).
//
// The reliability scenarios (restart_test.go, outage_test.go, churn_test.go,
// drift_test.go, revocation_test.go, uninstall_test.go, install_test.go,
// preflight_test.go, oddinput_test.go, rbac_test.go) state their scenario at the top
// of their file and print their figures (run with -v). Their CI size fits the suite's
// time budget; longer runs are a variable away: NFTW_RESTARTS (daemon restarts,
// default 20), NFTW_CHURN_PODS (pods created in the churn, default 1,000),
// NFTW_OUTAGE_SECONDS (length of the API server outage, default 60) and
// NFTW_OUTAGE_MEASURE_SECONDS (how long to wait for changes after it, default 15).
// scripts/reliability.sh runs them all at larger sizes; one alone, e.g.:
//
//	cd integration && NFTW_RESTARTS=100 go test -count=1 -v -run 'TestIntegrationRestarts$' .
//
// cni_test.go creates pods through a real CNI chain (ptp + host-local, then
// nftwarden-cni) and shows first-packet isolation with and without the plugin;
// scripts/bench-cni.sh runs BenchmarkIntegrationCNIAdd (the time ADD takes with and
// without nftwarden-cni, and pod creation to reachable from another node).
//
// This module is separate from the library's (with a replace of the root module) so
// that test-only dependencies never reach programs that embed nftwarden.
package integration
