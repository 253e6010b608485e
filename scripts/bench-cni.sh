#!/usr/bin/env bash
# What the chained CNI plugin costs and what it buys (run as root): adds PODS pods
# (default 500) per chain to a simulated node of a real kube-apiserver and etcd,
# through ptp + host-local (containernetworking/plugins) with and without
# nftwarden-cni, pair by pair in alternating order, each run by libcni in the node's
# network namespace as a runtime runs it, and prints p50/p99 of the time ADD takes
# per chain, their difference, and the time from pod creation to reachable by an
# allowed peer on another node. Everything it creates is removed at the end.
#
# Usage: scripts/bench-cni.sh [PODS]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [[ $(id -u) != 0 ]]; then
	echo "scripts/bench-cni.sh must run as root (network namespaces, nftables)" >&2
	exit 1
fi

PODS=${1:-500}
scripts/build-control-plane.sh
cd integration
NFTW_CNI_BENCH_PODS=$PODS go test -count=1 -timeout 90m -run '^$' \
	-bench '^BenchmarkIntegrationCNIAdd$' -benchtime 1x ./
