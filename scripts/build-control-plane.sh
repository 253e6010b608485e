#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd from Go modules (no prebuilt binaries can be
# downloaded here). Each binary is built once into the cache directory and skipped
# afterwards when its version stamp matches. See /work/shared/CONTROL-PLANE.md.
#
#   NFTW_CACHE   where the binaries go (default: <repo>/.cache/bin, git-ignored)
#   K8S_VERSION  kubernetes release to build (default v1.37.2)
#   ETCD_VERSION etcd release to build (default v3.6.16)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${NFTW_CACHE:-$REPO/.cache/bin}
K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
# Staging modules (k8s.io/api, ...) are released as v0.X.Y for kubernetes v1.X.Y.
STAGING_VERSION=v0.${K8S_VERSION#v1.}

mkdir -p "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nftw-cpbuild-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# up_to_date NAME VERSION: the binary exists and was built from VERSION.
up_to_date() {
	[[ -x $CACHE/$1 && -f $CACHE/$1.version && "$(cat "$CACHE/$1.version")" == "$2" ]]
}

build_etcd() {
	if up_to_date etcd "$ETCD_VERSION"; then
		echo "etcd $ETCD_VERSION: up to date in $CACHE"
		return
	fi
	echo "etcd $ETCD_VERSION: building"
	local start=$SECONDS dir=$WORK/etcd
	mkdir -p "$dir"
	cat >"$dir/go.mod" <<MOD
module nftwarden.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
	cat >"$dir/main.go" <<'SRC'
// Command etcd is etcd's server entry point built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
SRC
	(cd "$dir" && go mod tidy && go build -trimpath -o "$CACHE/etcd.new" .)
	mv "$CACHE/etcd.new" "$CACHE/etcd"
	echo "$ETCD_VERSION" >"$CACHE/etcd.version"
	echo "etcd $ETCD_VERSION: built in $((SECONDS - start)) s"
}

build_kube_apiserver() {
	if up_to_date kube-apiserver "$K8S_VERSION"; then
		echo "kube-apiserver $K8S_VERSION: up to date in $CACHE"
		return
	fi
	echo "kube-apiserver $K8S_VERSION: building (about 5 minutes cold on 2 cores)"
	local start=$SECONDS dir=$WORK/kube-apiserver
	mkdir -p "$dir"
	# k8s.io/kubernetes replaces its staging modules with local directories; a module
	# that requires it must point each of them at the released version instead.
	local gomod
	gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	if [[ -z $gomod || ! -f $gomod ]]; then
		echo "cannot find go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2
		exit 1
	fi
	{
		printf 'module nftwarden.local/kube-apiserver\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		grep -oE 'k8s\.io/[A-Za-z0-9._-]+ => \./staging/src/k8s\.io/[A-Za-z0-9._-]+' "$gomod" |
			awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
		printf ')\n'
	} >"$dir/go.mod"
	echo "  $(grep -c ' => ' "$dir/go.mod") staging replaces"
	(cd "$dir" && GOFLAGS=-mod=mod go build -trimpath -o "$CACHE/kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver)
	mv "$CACHE/kube-apiserver.new" "$CACHE/kube-apiserver"
	echo "$K8S_VERSION" >"$CACHE/kube-apiserver.version"
	echo "kube-apiserver $K8S_VERSION: built in $((SECONDS - start)) s"
}

build_etcd
build_kube_apiserver
echo "control plane binaries in $CACHE"
