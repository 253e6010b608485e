#!/usr/bin/env bash
# Benchmarks of the kernel dataplane (nft.Kernel) in throwaway network
# namespaces: the floor (100,000 elements into one set), programming a whole
# node state (single-stack and dual-stack), one-element deltas with that
# state loaded (p50/p99 latency), a no-op reconcile, and the new-connection
# rate between two pods with that state loaded. Needs root
# (CAP_NET_ADMIN). Usage: scripts/bench-nft.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "bench-nft: needs root (CAP_NET_ADMIN) to create network namespaces" >&2
	exit 1
fi

echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
go test ./nft/ -run '^$' -bench 'BenchmarkKernelElements' -benchtime 5x -count 1 "$@"
go test ./nft/ -run '^$' -bench 'BenchmarkKernelProgram' -benchtime 3x -count 1 "$@"
go test ./nft/ -run '^$' -bench 'BenchmarkKernelDelta' -benchtime 2000x -count 1 "$@"
go test ./nft/ -run '^$' -bench 'BenchmarkKernelReconcileNoop' -benchtime 3x -count 1 "$@"
# What the engine compiles for one node of generated clusters (1,000 to
# 100,000 pods, 10 policies per 100 pods), programmed into the kernel.
go test ./enforcer/ -run '^$' -bench 'BenchmarkKernelEngineProgram' -benchtime 3x -count 1 "$@"
# New TCP connections/s between two pods of a routed node: no nftables vs the
# skeleton vs 10,000 policies (~100,000 elements) loaded, single-stack and
# dual-stack, measured in alternating batches of 250; reports the
# loaded/no-table ratios.
go test ./nft/ -run '^$' -bench 'BenchmarkKernelConnRate' -benchtime 20000x -count 1 "$@"
# The per-packet cost of the program's fixed part: no table, the conntrack
# floor (one base chain, one rule), the skeleton in its old two-chain shape
# and in its one-chain shape, and the engine's 10,000-policy node in both
# shapes, for TCP from one and four clients and UDP flows, all interleaved;
# reports the medians of the per-round ratios with 95% intervals.
go test ./enforcer/ -run '^$' -bench 'BenchmarkKernelSkeletonConnRate' -benchtime 40000x -count 1 -v "$@"
