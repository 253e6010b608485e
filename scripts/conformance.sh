#!/usr/bin/env bash
# Runs the whole conformance suite: the ported upstream NetworkPolicy e2e cases, the
# ported network-policy-api ClusterNetworkPolicy conformance tests and generated cases
# (NetworkPolicies mixed with ClusterNetworkPolicies of both tiers), at model level (reference evaluator + compiled ruleset traced in
# nft.Fake) and with real packets in every variant (IPv4, IPv6, bridged; pods are dual-stack in all of them).
# Needs root and the control plane (scripts/build-control-plane.sh).
#
#   GENERATED  generated cases per packet variant (default 300; issue #13 asks for at
#              least 200 generated mixed cases with packets)
#   SEED       generator seed (default 1)
#   VARIANTS   packet variants (default all: ipv4,ipv6,bridged)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO/integration"

start=$SECONDS
NFTW_CONFORMANCE=${VARIANTS:-all} NFTW_CONFORMANCE_GENERATED=${GENERATED:-300} \
	go test -count=1 -timeout 6h -v ./conformance -seed "${SEED:-1}" |
	grep -E '^(PASS|FAIL) |^[0-9]+ passed, [0-9]+ failed$|^--- conformance summary|^=== RUN   TestGenerated|^--- (PASS|FAIL)|^(ok|FAIL)[[:space:]]'
echo "conformance: $((SECONDS - start)) s"
