#!/usr/bin/env bash
# Memory of one nftwarden daemon watching a large cluster held by a real
# kube-apiserver and etcd (run as root): creates namespaces (1 per 100 pods),
# 10 NetworkPolicies per namespace and N pods with realistic specs and status,
# measures the daemon (RSS, Go heap, time to /readyz) with 0 pods and with N
# pods, and prints RSS and heap per pod. Everything it creates is removed at
# the end, also on Ctrl-C.
#
# Usage: scripts/bench-daemon-memory.sh [PODS] [memload flags...]   (PODS default 100000)
# e.g.   scripts/bench-daemon-memory.sh 10000 -settle 60s -json /tmp/mem.json
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [[ $(id -u) != 0 ]]; then
	echo "scripts/bench-daemon-memory.sh must run as root (network namespaces, nftables)" >&2
	exit 1
fi

PODS=${1:-100000}
shift || true

scripts/build-control-plane.sh
BIN=${NFTW_CACHE:-$REPO/.cache/bin}
# Binaries of this run only: runs side by side must not remove each other's.
RUN=$(mktemp -d "$BIN/memload-XXXXXX")
trap 'rm -rf "$RUN"' EXIT
(cd integration && go build -o "$RUN/memload" ./cmd/memload)
# The daemon is built the way users build it (static, stripped).
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$RUN/nftwarden" ./daemon/cmd/nftwarden
NFTW_REPO=$REPO NFTW_DAEMON="$RUN/nftwarden" "$RUN/memload" -pods "$PODS" "$@"
