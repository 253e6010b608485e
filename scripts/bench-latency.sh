#!/usr/bin/env bash
# Programming latency, API write -> kernel (run as root): a real kube-apiserver
# and etcd hold N pods and M NetworkPolicies (10,000 / 1,000 by default), one
# simulated node runs the real daemon, and for each kind of change (pod label,
# namespace label, pod IP appearing, pod deleted, policy create, policy
# delete, and a policy created or deleted on a pod 2,000 others select) the
# time from the API write to the end of the kernel batch that carried it is
# observed through the nf_tables notifications of the node's namespace (never
# by sleeping): writes one at a time, 20 ms apart, and in a burst of 1,000.
# Prints p50/p90/p99 per kind, the API server's own part (a watch of the
# benchmark's) and the messages per batch, and first what a burst takes the
# API server alone (no daemon running).
# Everything it creates is removed at the end, also on Ctrl-C. Method:
# integration/LATENCY.md.
#
# Usage: scripts/bench-latency.sh [large] [latencybench flags...]
#   scripts/bench-latency.sh                   10,000 pods, 1,000 policies
#   scripts/bench-latency.sh large             100,000 pods, 10,000 policies
#   scripts/bench-latency.sh -samples 500 -json /tmp/lat.json
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [[ $(id -u) != 0 ]]; then
	echo "scripts/bench-latency.sh must run as root (network namespaces, nftables)" >&2
	exit 1
fi

SIZE=()
if [[ ${1:-} == large ]]; then
	SIZE=(-pods 100000 -policies 10000)
	shift
fi

scripts/build-control-plane.sh
BIN=${NFTW_CACHE:-$REPO/.cache/bin}
# Binaries of this run only: runs side by side must not remove each other's.
RUN=$(mktemp -d "$BIN/latencybench-XXXXXX")
trap 'rm -rf "$RUN"' EXIT
(cd integration && go build -o "$RUN/latencybench" ./cmd/latencybench)
# The daemon is built the way users build it (static, stripped).
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$RUN/nftwarden" ./daemon/cmd/nftwarden
NFTW_REPO=$REPO NFTW_DAEMON="$RUN/nftwarden" "$RUN/latencybench" "${SIZE[@]}" "$@"
