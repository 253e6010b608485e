// Package daemon is the nftwarden command, which enforces Kubernetes
// NetworkPolicy, and ClusterNetworkPolicy while its CRD is installed
// (--cluster-network-policy=auto|experimental|off; experimental adds nodes
// peers and named ports), on one node with nftables:
//
//	nftwarden run      watch the API server and program the table (the daemon)
//	nftwarden cleanup  delete the table
//	nftwarden dump     print the programmed table (or, with --desired, the one
//	                   the API server's objects compile to)
//	nftwarden explain  say whether a flow is allowed and which policies decide it
//	nftwarden version  print the version
//
// With --log-denied, --log-allowed, --audit or a policy annotated for audit
// mode, the daemon reads the NFLOG group its program's log rules copy packets
// to (nft/nflog) and writes one line per packet naming the pods and the
// policy or rule that decided (flowlog*.go); with --policy-counters it exports
// the program's named counters per policy (policycounters*.go).
//
// The daemon serves Prometheus metrics on /metrics and health on /healthz and
// /readyz (ready once the first full reconcile has programmed the table), notifies
// systemd (READY, WATCHDOG, STOPPING) when NOTIFY_SOCKET is set, and on SIGTERM or
// SIGINT stops and leaves the rules in place, so that the next start takes over
// without a window in which traffic passes or breaks.
//
// Packaging lives beside the code: nftwarden.service (systemd) and deploy/
// (RBAC and DaemonSet manifests); README.md says how to install either.
//
// The binary is built from cmd/nftwarden, whose main only calls Main (so that
// `go install .../daemon/cmd/nftwarden` installs a binary named nftwarden);
// only that main exits the process, everything here returns errors.
package daemon
