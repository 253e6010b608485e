#!/usr/bin/env bash
# The one test command: go vet, the unit tests of the library module, then the
# integration suite (real kube-apiserver + etcd, network namespaces, real packets).
# Run it as root on Linux with Go, nftables and iproute2. Before the integration
# suite it builds the control plane binaries when they are missing or stale, as
# scripts/demo.sh does (scripts/build-control-plane.sh: several minutes the first
# time, cached afterwards). It installs no packages (.ci/run does).
#
#   NFTW_CACHE        where the control plane binaries are (default .cache/bin)
#   INTEGRATION_RUN   a -run pattern for the integration suite (default: all)
#   SKIP_INTEGRATION  set to 1 to stop after the unit tests
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

section() { printf '\n==== %s\n' "$*"; }

section "go vet (library module)"
go vet ./...

section "dependency direction (nft <- enforcer <- podwatch <- daemon)"
# The layering of DESIGN.md: a package may import only the layers below it.
check_deps() {
	local pkg=$1
	shift
	local deps
	deps=$(go list -deps "./$pkg/..." 2>/dev/null | grep '^github.com/nftwarden/nftwarden/' || true)
	for forbidden in "$@"; do
		if grep -q "^github.com/nftwarden/nftwarden/$forbidden\(/\|$\)" <<<"$deps"; then
			echo "$pkg must not import $forbidden" >&2
			exit 1
		fi
	done
}
[[ -d nft ]] && check_deps nft enforcer podwatch daemon
[[ -d enforcer ]] && check_deps enforcer podwatch daemon
[[ -d podwatch ]] && check_deps podwatch daemon
if [[ -d enforcer ]] && go list -deps ./enforcer/... | grep -q '^k8s.io/client-go'; then
	echo "enforcer must not import client-go" >&2
	exit 1
fi
echo ok

section "staticcheck (library and integration modules)"
# honnef.co/go/tools, installed by .ci/run; skipped with a note where it is missing.
if command -v staticcheck >/dev/null; then
	staticcheck ./...
	(cd integration && staticcheck ./...)
	echo ok
else
	echo "staticcheck not installed (go install honnef.co/go/tools/cmd/staticcheck@v0.8.2): skipped"
fi

section "unit tests (library module, race detector)"
go test -count=1 -race ./...

if [[ ${SKIP_INTEGRATION:-0} == 1 ]]; then
	echo "SKIP_INTEGRATION=1: integration suite not run"
	exit 0
fi

section "control plane (kube-apiserver and etcd, built once into ${NFTW_CACHE:-.cache/bin})"
scripts/build-control-plane.sh

section "go vet (integration module)"
(cd integration && go vet ./...)

section "integration suite (needs root)"
start=$SECONDS
# -p 1: one test binary at a time; each runs its own control plane and daemons, and
# probes that time out under CPU contention would make denied and allowed look alike.
pkgs=$(cd integration && go list ./... | grep -v '/conformance$')
(cd integration && go test -count=1 -p 1 -timeout 40m ${INTEGRATION_RUN:+-run "$INTEGRATION_RUN"} $pkgs)
echo "integration suite: $((SECONDS - start)) s"

if [[ -n ${INTEGRATION_RUN:-} ]]; then
	exit 0
fi

section "conformance: upstream NetworkPolicy e2e, network-policy-api ClusterNetworkPolicy and generated cases"
# The ported upstream cases (49 NetworkPolicy e2e, 2 named-port, 24 ClusterNetworkPolicy
# conformance tests, then the 6 experimental-channel ones with the experimental CRD and
# daemons) with real packets over IPv4 and over IPv6 (the pods are
# dual-stack: both addresses are in the API and in the sets), plus a
# sample of generated cases mixing NetworkPolicies and ClusterNetworkPolicies;
# scripts/conformance.sh runs every variant and 300 generated cases per variant.
# Model-level runs (evaluator + compiled ruleset) cover all of them.
start=$SECONDS
export NFTW_CONFORMANCE=${NFTW_CONFORMANCE:-ipv4,ipv6}
export NFTW_CONFORMANCE_GENERATED=${NFTW_CONFORMANCE_GENERATED:-30}
log=$(mktemp "${TMPDIR:-/tmp}/nftw-conformance-XXXXXX.log")
set +e
(cd integration && go test -count=1 -timeout 60m -v ./conformance) >"$log" 2>&1
rc=$?
set -e
# One line per case and the totals, the way conformance results are read; the
# whole log only when something failed.
grep -E '^(PASS|FAIL) |^[0-9]+ passed, [0-9]+ failed$|^--- conformance summary|^(ok|FAIL)[[:space:]]' "$log" || true
if [[ $rc != 0 ]]; then
	echo "conformance failed; full log follows" >&2
	cat "$log" >&2
fi
rm -f "$log"
echo "conformance: $((SECONDS - start)) s"
exit $rc
