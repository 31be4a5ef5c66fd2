#!/usr/bin/env bash
# Everything a GPU session needs done on this (development) host, before any device time is spent:
#
#   npm run gpu:prepare -- [--peer DIR] [--no-build] [--dry-run]
#
#   1. build     the addon with CUDA for sm_90 (H100, H200) and dist/; checks buildInfo()
#   2. bundle    .gpu-bundle/ (bench/gpu-bundle.sh): node, npm, node_modules and the build for a
#                host without Node
#   3. peer      mamba_ssm's kernels: DIR/mamba-peer.xz (an sm_90 binary, or $MAMBA_PEER_DIR) copied
#                into .peers/mamba/ (ignored); without one the session runs without mamba_ssm
#   4. size      what travels to the device (the checkout, .gpu-bundle, .peers) must fit in 64 MiB
#   --dry-run    5. the whole session here on the CPU (bench/gpu-session.sh --dry-run), in a copy of
#                exactly what travels, unpacked by the bundle as on the device; checks that it ends
#                within its budget and leaves at most 8 files in $OUT (copied to bench/out/dry-run/)
#   --no-build   skips step 1 (the build is still checked)
#
# Then, on the device: bash .gpu-bundle/enter.sh bash bench/gpu-session.sh, carrying .gpu-bundle
# and .peers (the last lines printed say so).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
build=1
dry=0
peer_src=${MAMBA_PEER_DIR:-}
while [ $# -gt 0 ]; do
  case "$1" in
  --peer) peer_src=${2:?--peer needs a folder} && shift ;;
  --no-build) build=0 ;;
  --dry-run) dry=1 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
  *) echo "gpu:prepare: unknown argument $1 (--peer DIR, --no-build, --dry-run)" >&2 && exit 2 ;;
  esac
  shift
done
say() { echo "== gpu:prepare: $*" >&2; }
MAX_TRAVEL=$((64 * 1024 * 1024))
MAX_OUT_FILES=8

# ---- 1. build ----------------------------------------------------------------------------------------
if [ $build = 1 ]; then
  say "building the addon for sm_90 (CUDA required) and dist/"
  npm run build:native -- --CDSELECTIVE_SCAN_CUDA=ON --CDCMAKE_CUDA_ARCHITECTURES=90 >&2
  npm run build:ts >&2
fi
archs=$(node -e "const b = require('selective-scan').buildInfo(); console.log(b.cuda ? b.cudaArchitectures.join(' ') : '')")
case " $archs " in
*" sm_90 "*) say "addon: CUDA for $archs" ;;
*) say "STOP: the addon has ${archs:+CUDA for $archs, }no sm_90 code (rebuild without --no-build)" && exit 1 ;;
esac

# ---- 2. bundle -----------------------------------------------------------------------------------------
bash bench/gpu-bundle.sh >&2

# ---- 3. mamba_ssm's peer -------------------------------------------------------------------------------
peer=.peers/mamba
git check-ignore -q "$peer/" || { say "STOP: $peer/ is not ignored by git (.gitignore has .peers/)" && exit 1; }
if [ -n "$peer_src" ]; then
  [ -f "$peer_src/mamba-peer.xz" ] || { say "STOP: no mamba-peer.xz in $peer_src" && exit 1; }
  rm -rf "$peer" && mkdir -p "$peer"
  # The compressed binary travels (13 MB rather than 34); the session unpacks it on the device.
  for f in mamba-peer.xz README.txt LICENSE build-info.txt; do [ -f "$peer_src/$f" ] && cp "$peer_src/$f" "$peer/"; done
  say "peer: $(du -h "$peer/mamba-peer.xz" | cut -f1) copied from $peer_src into $peer/"
elif [ -f "$peer/mamba-peer.xz" ]; then
  say "peer: $peer/mamba-peer.xz as copied before"
else
  say "peer: none (--peer DIR or \$MAMBA_PEER_DIR): the session will run without mamba_ssm"
fi
rm -f "$peer/mamba-peer" # unpacked by a dry run: it must not travel

# ---- 4. what travels ------------------------------------------------------------------------------------
travelling() { # NUL-separated: tracked and untracked-not-ignored files that exist, and the carried folders
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
  find .gpu-bundle "$peer" -type f -print0 2>/dev/null
}
bytes=$(travelling | xargs -0 stat -c %s | awk '{ s += $1 } END { print s + 0 }')
say "what travels: $((bytes / 1024 / 1024)) MiB of $((MAX_TRAVEL / 1024 / 1024))"
[ "$bytes" -le "$MAX_TRAVEL" ] || { say "STOP: more than 64 MiB would travel" && exit 1; }

# ---- 5. the dry run -------------------------------------------------------------------------------------
if [ $dry = 1 ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-dry-run.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/root" "$work/OUT" "$work/tmp"
  travelling | tar --null -T - -cf - | tar -C "$work/root" -xf -
  say "dry run in $work/root (what travels, no .git, no node_modules): bash .gpu-bundle/enter.sh bash bench/gpu-session.sh --dry-run"
  t0=$(date +%s)
  set +e
  (cd "$work/root" && OUT="$work/OUT" TMPDIR="$work/tmp" bash .gpu-bundle/enter.sh bash bench/gpu-session.sh --dry-run)
  rc=$?
  set -e
  seconds=$(($(date +%s) - t0))
  files=$(find "$work/OUT" -type f | wc -l)
  bad_names=$(find "$work/OUT" -type f -printf '%f\n' | grep -cv '^[A-Za-z0-9._-]*$' || true)
  rm -rf bench/out/dry-run && mkdir -p bench/out/dry-run && cp "$work"/OUT/* bench/out/dry-run/
  say "dry run: exit $rc in $seconds s (unpacking the bundle included); $files files in \$OUT (at most $MAX_OUT_FILES), copied to bench/out/dry-run/"
  [ "$rc" -le 1 ] || { say "FAILED: the session stopped (exit $rc)" && exit 1; }
  [ "$files" -le "$MAX_OUT_FILES" ] && [ "$bad_names" = 0 ] || { say "FAILED: \$OUT holds $files files ($bad_names badly named)" && exit 1; }
  [ "$rc" = 0 ] || say "the dry run's report lists failures (above): look before spending device time"
fi

carry='".gpu-bundle"'
[ -f "$peer/mamba-peer.xz" ] && carry+=', ".peers"'
say "ready. On the device, one call: command \"bash .gpu-bundle/enter.sh bash bench/gpu-session.sh\", carry [$carry], timeout_s 360"
