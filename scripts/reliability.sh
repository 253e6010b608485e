#!/usr/bin/env bash
# The reliability scenarios of the integration suite (README "Reliability"), verbose,
# with their figures, at sizes beyond what CI runs every time. Run as root after
# scripts/build-control-plane.sh (or .ci/run). Each test prints its scenario's figures.
#
#   NFTW_RESTARTS               daemon restarts under probes       (here 100; CI 20)
#   NFTW_CHURN_PODS             pods created and deleted in churn  (here 5,000; CI 1,000)
#   NFTW_OUTAGE_SECONDS         API server outage                  (here 300; CI 60)
#   RELIABILITY_RUN             a -run pattern (default: every reliability test)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO/integration"

if [[ $(id -u) != 0 ]]; then
	echo "scripts/reliability.sh must run as root (network namespaces, nftables)" >&2
	exit 1
fi

export NFTW_RESTARTS=${NFTW_RESTARTS:-100}
export NFTW_CHURN_PODS=${NFTW_CHURN_PODS:-5000}
export NFTW_OUTAGE_SECONDS=${NFTW_OUTAGE_SECONDS:-300}
run=${RELIABILITY_RUN:-'^TestIntegration(Restarts|APIOutage|Churn|Drift|Revocation|Uninstall|InstallQuota|Preflight|OddObjects|RBAC)$'}
# One test at a time: probes that time out under CPU contention would make denied and
# allowed look alike.
set +e
go test -count=1 -p 1 -timeout 120m -v -run "$run" . 2>&1 |
	grep -E '^(=== RUN|--- (PASS|FAIL)|PASS|FAIL|ok)|_test\.go:[0-9]+:'
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
