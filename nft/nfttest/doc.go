// Package nfttest helps privileged tests of nftwarden's nftables code: it
// creates throwaway network namespaces (so no test touches the machine's own
// ruleset), wires them into node and pod topologies over netlink (veth pairs,
// routed or bridged, addresses, routes and per-namespace sysctls; see
// ConnectRouted and ConnectBridged), lists tables in them with the real nft
// binary, normalizes nft listings so that golden comparisons do not depend on
// element or block order, and reads (or, on -update, writes) golden files.
// For benchmarks it measures the new-connection rate between two pods of a
// routed node against other setups in interleaved batches (NewConnRateSetup,
// RunConnRateRounds), whatever programs the node: nft's synthetic states and
// enforcer's compiled programs alike, with what each batch cost beside its
// wall time (CPU, context switches, wake-up interrupts, packets forwarded);
// PerfWindow limits a perf recording of the machine to the measured part.
//
// It is for tests only; the library never runs the nft binary.
package nfttest
