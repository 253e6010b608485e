#!/usr/bin/env bash
# The nftwarden demo on one Linux machine (run as root): a real kube-apiserver and etcd,
# two simulated nodes and four pods as network namespaces, the nftwarden daemon on each
# node, the reachability matrix before and after a default-deny and an allow policy, the
# table restored at once after someone deletes it behind the daemon's back, and a new pod
# brought up through the CNI chain ptp + host-local + nftwarden-cni (built by the demo),
# isolated as policy says the moment ADD returns, before its status is written.
# Everything it creates is removed at the end, also on Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [[ $(id -u) != 0 ]]; then
	echo "scripts/demo.sh must run as root (network namespaces, nftables)" >&2
	exit 1
fi

scripts/build-control-plane.sh
BIN=${NFTW_CACHE:-$REPO/.cache/bin}
(cd integration && go build -o "$BIN/nftwarden-demo" ./cmd/demo)
# The Go program cleans up after itself (also on SIGINT); the trap only removes the binary.
trap 'rm -f "$BIN/nftwarden-demo"' EXIT
NFTW_REPO=$REPO "$BIN/nftwarden-demo"
