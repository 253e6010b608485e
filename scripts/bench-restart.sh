#!/usr/bin/env bash
# Time to ready of nftwarden in a large cluster held by a real kube-apiserver
# and etcd (run as root): creates the cluster of scripts/bench-daemon-memory.sh
# (namespaces, 10 NetworkPolicies each, PODS pods with realistic specs and
# status over 500 node names), then, in interleaved rounds, starts each daemon
# binary on a node without a table ("fresh") and again on the table its first
# run left ("restart"), and prints the time from start to /readyz (median and
# range), the daemon's and the control plane's CPU until then, and the
# daemon's log lines of its start. `floor` prints what bare client-go lists of
# the same pods cost. Everything it creates is removed at the end, also on
# Ctrl-C. With NFTW_BENCH_LOCK=FILE, loading and each measurement hold that
# file (flock), so that other heavy jobs on the machine wait.
#
# Usage: scripts/bench-restart.sh [PODS] [ROUNDS] [NAME=BINARY ...]
#   (PODS default 100000, ROUNDS default 3; without binaries: this checkout's
#   daemon, built the way users build it)
# e.g.   scripts/bench-restart.sh 100000 5 before=/tmp/nftw-main after=/tmp/nftw-branch
#
# To measure many binaries against one loaded cluster (loading 100,000 pods
# takes about ten minutes), run integration/cmd/readybench with -commands FIFO
# and write commands to FIFO (see its package doc).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [[ $(id -u) != 0 ]]; then
	echo "scripts/bench-restart.sh must run as root (network namespaces, nftables)" >&2
	exit 1
fi

PODS=${1:-100000}
ROUNDS=${2:-3}
shift 2 || shift $# || true

scripts/build-control-plane.sh
BIN=${NFTW_CACHE:-$REPO/.cache/bin}
# Binaries of this run only: runs side by side must not remove each other's.
RUN=$(mktemp -d "$BIN/readybench-XXXXXX")
trap 'rm -rf "$RUN"' EXIT
(cd integration && go build -o "$RUN/readybench" ./cmd/readybench)
DAEMONS=("$@")
if [[ ${#DAEMONS[@]} == 0 ]]; then
	# The daemon is built the way users build it (static, stripped).
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$RUN/nftwarden" ./daemon/cmd/nftwarden
	DAEMONS=("this=$RUN/nftwarden")
fi
LIST=$(IFS=,; echo "${DAEMONS[*]}")
NFTW_REPO=$REPO "$RUN/readybench" -pods "$PODS" -rounds "$ROUNDS" -lock "${NFTW_BENCH_LOCK:-}" -daemon "$LIST"
