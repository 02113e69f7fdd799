#!/bin/sh
# Builds the binaries of flotilla's real-cluster harness (kube-apiserver and etcd; on request
# kube-controller-manager, and kubectl for the apply benchmark) from the Go module proxy into a
# per-machine cache, once:
#
#   ~/.cache/flotilla/testbin/<first 16 hex digits of sha256(go.sum)>/{kube-apiserver,etcd}
#
# Usage: build.sh [--print-dir] [EXTRA_BINARY...]
#   --print-dir       print the cache directory and exit (no Go needed, nothing built)
#   EXTRA_BINARY      also build ./cmd/EXTRA_BINARY (kube-controller-manager, kubectl)
#
# Progress goes to stderr; the last line on stdout is the directory holding the binaries. Used by
# `cargo xtask testbins` and by the Rust harness (tests/src/cluster/bins.rs), so both agree on the
# cache key. Changing go.mod/go.sum changes the key, so stale binaries are never reused. The cache
# root can be moved with FLOTILLA_TESTBIN_CACHE. Concurrent builds (several test binaries at once)
# are serialised with flock(1); the binaries are written to a scratch directory first and renamed
# into place, so a reader never sees half a binary.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${FLOTILLA_TESTBIN_CACHE:-${HOME:?HOME is not set}/.cache/flotilla/testbin}

if [ ! -f "$here/go.sum" ]; then
	echo "build.sh: $here/go.sum is missing; run 'GOWORK=off go mod tidy' in $here" >&2
	exit 2
fi
key=$(sha256sum "$here/go.sum" | cut -c1-16)
dir="$cache_root/$key"

if [ "${1:-}" = "--print-dir" ]; then
	echo "$dir"
	exit 0
fi

wanted="kube-apiserver etcd${*:+ $*}"
have_all() {
	for b in $wanted; do
		[ -x "$dir/$b" ] || return 1
	done
	return 0
}

if have_all; then
	echo "$dir"
	exit 0
fi

if ! command -v go >/dev/null 2>&1; then
	cat >&2 <<EOF
build.sh: the Go toolchain ('go', 1.25 or newer) is not on PATH.
flotilla's cluster tests run real kube-apiservers and etcd, built from the Go module proxy once per
machine into $dir.
Install Go (https://go.dev/dl/), or set FLOTILLA_SKIP_CLUSTER=1 to skip the cluster tests on purpose.
EOF
	exit 3
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
if command -v flock >/dev/null 2>&1; then
	echo "build.sh: waiting for the build lock $cache_root/.build.lock" >&2
	flock 9
fi
if have_all; then # built by someone else while we waited
	echo "$dir"
	exit 0
fi

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
cd "$here"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=$(echo "$version" | cut -d. -f2)
major=$(echo "$version" | cut -d. -f1 | tr -d v)

scratch=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# Only what is missing: asking for kubectl once kube-apiserver and etcd are cached builds kubectl alone.
missing=""
pkgs=""
for b in $wanted; do
	if [ ! -x "$dir/$b" ]; then
		missing="$missing $b"
		pkgs="$pkgs ./cmd/$b"
	fi
done
start=$(date +%s)
echo "build.sh: building$pkgs (kubernetes $version) into $dir" >&2
echo "build.sh: the first build on a machine takes about 5 minutes on 2 cores (downloads about 500 MB of modules); later ones reuse the cache" >&2
base=k8s.io/component-base/version
# shellcheck disable=SC2086 # $pkgs is a list of package paths
go build -trimpath -v -o "$scratch/" \
	-ldflags "-s -w -X $base.gitVersion=$version -X $base.gitMajor=$major -X $base.gitMinor=$minor -X $base.gitTreeState=clean -X $base.buildDate=1970-01-01T00:00:00Z" \
	$pkgs >&2

mkdir -p "$dir"
for b in $missing; do
	mv -f "$scratch/$b" "$dir/$b"
done
echo "build.sh: built$missing in $(($(date +%s) - start)) s" >&2
echo "$dir"
