#!/usr/bin/env bash
# The GPU session in one command, on a GPU host with a copy of the project that `npm run
# gpu:prepare` made ready (.gpu-bundle/ brings node, which the host lacks; .peers/mamba/ brings
# mamba_ssm's kernels):
#
#   bash .gpu-bundle/enter.sh bash bench/gpu-session.sh            on the GPU (H100/H200, sm_90)
#   bash .gpu-bundle/enter.sh bash bench/gpu-session.sh --dry-run  without one: every step on the CPU
#
# Steps, each with a time limit, within SESSION_BUDGET_S (default 315 s; with the bundle's unpacking
# and the kills' grace, under 6 minutes: a rerun and two machine start-ups fit in 15 minutes of
# device time):
#   0. preflight   the addon must have CUDA for sm_90 and see a GPU: else it stops at once (exit 2)
#   1. tests       vitest run test/gpu.test.ts: the kernels against the CPU backend            (80 s)
#   2. bench       S1-S4, the step, the conv rows, Mamba-2's ssdScan at M2-S1 and M2-S2 (forward,
#                  forward+backward; beside PyTorch's ssd_minimal, and mamba_ssm's Triton kernels
#                  where they import: --torch-only ssd) and packed sequences (cuSeqlens beside
#                  plain and padded) in bf16, agreement checks, peak memory                  (105 s)
#   3. mamba_ssm   its kernels (.peers/mamba/mamba-peer, with --check) at S1-S4, bf16, z, D,
#                  softplus, on the same call and GPU; the report puts its times beside ours   (40 s)
#   4. sanitizers  compute-sanitizer memcheck and racecheck over bench/sanitizer-case.mjs;
#                  skipped, with the reason, where it is missing or the device refuses it     (30 s each)
#   5. report      bench/results/YYYY-MM-DD-<gpu>-{tests,sanitizer,bench,session}.json, the bench's
#                  and the session's .md; each copied into $OUT (when set) as soon as it is written,
#                  with the logs so far (7 files in all)
# The last lines printed are the session's report (ours beside mamba_ssm, the goals).
# Exit status: 0 all passed, 1 something failed (see the report), 2 stopped at the preflight.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0
case "${1:-}" in
"") ;;
--dry-run) dry=1 ;;
-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
*) echo "gpu-session: unknown argument $1 (--dry-run, --help)" >&2 && exit 2 ;;
esac
budget=${SESSION_BUDGET_S:-315}
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
say() { echo "== gpu-session [$(elapsed) s]: $*" >&2; }
# limit WANT RESERVE: WANT seconds, or fewer so that RESERVE seconds stay for the later steps.
limit() {
  local left=$((budget - $(elapsed) - $2))
  local want=$(($1 < left ? $1 : left))
  echo $((want < 15 ? 15 : want))
}
results=bench/results
logs=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
mkdir -p "$results"
steps=() # NAME:EXIT:SECONDS, for the report
# step NAME LIMIT LOG COMMAND...: runs COMMAND under timeout, its output in LOG; sets $rc.
step() {
  local name=$1 lim=$2 log=$3 t0
  shift 3
  say "$name (limit $lim s): $*"
  t0=$(date +%s)
  timeout -k 5 "$lim" "$@" >"$log" 2>&1
  rc=$?
  steps+=("$name:$rc:$(($(date +%s) - t0))")
  [ "$rc" = 124 ] && say "$name: timed out after $lim s"
}
# save FILE...: copies the files and the logs so far into $OUT after each step, so that what was
# done comes back even if the call is cut short.
save() {
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
  tar -czf "$OUT/gpu-session-logs.tar.gz" -C "$logs" .
}

# ---- 0. preflight ---------------------------------------------------------------------------------
if ! node bench/session-record.mjs preflight $([ $dry = 1 ] && echo --dry-run) >"$logs/preflight.json" 2>"$logs/preflight.err"; then
  cat "$logs/preflight.err" >&2
  echo "gpu-session: STOPPED before any step: this is not a GPU session (--dry-run runs the steps on the CPU)." >&2
  save
  exit 2
fi
device=cuda
[ $dry = 1 ] && device=cpu
slug=$(node bench/device-info.mjs "$device" --field slug)
[ $dry = 1 ] && slug=simulated-gpu
day=$(date -u +%F)
say "device: $(node bench/device-info.mjs "$device" --field name) ($slug), commit ${BUNDLE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
command -v nvidia-smi >/dev/null && nvidia-smi >"$logs/nvidia-smi.txt" 2>&1
stem="$results/$day-$slug"

# ---- 1. the GPU tests ------------------------------------------------------------------------------
cmd=(npx vitest run test/gpu.test.ts --reporter=default --reporter=json "--outputFile.json=$logs/vitest.json")
step tests "$(limit 80 220)" "$logs/tests.log" "${cmd[@]}"
t=${steps[-1]}
node bench/session-record.mjs tests --out "$stem-tests.json" --vitest-json "$logs/vitest.json" --exit "$rc" \
  --seconds "${t##*:}" --log "$logs/tests.log" --command "${cmd[*]}"
tail -n 6 "$logs/tests.log" >&2
save "$stem-tests.json"

# ---- 2. the benchmark ------------------------------------------------------------------------------
b_limit=$(limit 105 115)
if [ $dry = 1 ]; then
  bench_args=(--simulate-gpu --shapes S1,S3,S4,step,conv,conv-step,ssd,packed --reps 3 --max-case-ms 300)
else
  bench_args=(--device cuda --shapes S1,S2,S3,S4,step,conv,conv-step,ssd,packed --reps 10 --max-case-ms 1500)
fi
# --deadline-s: no new case after it, so that the results are written before the timeout.
bench_args+=(--dtypes bfloat16 --torch-only ssd --deadline-s $((b_limit - 25)) --json "$stem-bench.json")
rm -f "$stem-bench.json"
step bench "$b_limit" "$logs/bench.log" node bench/bench.mjs "${bench_args[@]}"
grep -E '^bench:' "$logs/bench.log" >&2
save "$stem-bench.json" "$stem-bench.md"

# ---- 3. mamba_ssm ------------------------------------------------------------------------------------
peer=.peers/mamba/mamba-peer
peer_missing=
if [ ! -x "$peer" ] && [ -f "$peer.xz" ]; then
  if command -v xz >/dev/null; then xz -dkf "$peer.xz"; else
    python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$peer.xz" "$peer"
  fi
  chmod +x "$peer"
fi
if [ -x "$peer" ]; then
  # Ours has no deltaBias and does not flush the L2 between calls: the same for mamba_ssm. Then S1
  # and S3 with its own default, the L2 flushed before each call (S3's inputs are near the L2's size).
  p_limit=$(limit 40 75)
  p_start=$(date +%s)
  "$peer" --version >"$logs/mamba-peer.jsonl" 2>"$logs/mamba-peer.err"
  for run in "S1 --check --no-flush-l2" "S2 --check --no-flush-l2" "S3 --check --no-flush-l2" \
    "S4 --check --no-flush-l2" "S1" "S3"; do
    left=$((p_limit - ($(date +%s) - p_start)))
    [ "$left" -lt 5 ] && { echo "{\"error\":\"not run: the step's $p_limit s were spent\",\"run\":\"$run\"}" >>"$logs/mamba-peer.jsonl"; continue; }
    # shellcheck disable=SC2086
    timeout -k 5 "$((left < 30 ? left : 30))" "$peer" --shape $run --dtype bf16 --op both --z --softplus \
      --no-delta-bias --iters 20 --warmup 5 >>"$logs/mamba-peer.jsonl" 2>>"$logs/mamba-peer.err" ||
      echo "{\"run\":\"$run\",\"exit\":$?}" >>"$logs/mamba-peer.jsonl"
  done
  steps+=("mamba_ssm:0:$(($(date +%s) - p_start))")
  peer_args=(--peer-jsonl "$logs/mamba-peer.jsonl")
  save
else
  peer_missing="no $peer or $peer.xz (npm run gpu:prepare -- --peer DIR copies it)"
  say "mamba_ssm: skipped: $peer_missing"
  steps+=("mamba_ssm:0:0")
  peer_args=(--peer-missing "$peer_missing")
fi

# ---- 4. compute-sanitizer ----------------------------------------------------------------------------
sanitizer=${SANITIZER:-$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)}
runs=()
refused=
for tool in memcheck racecheck; do
  if [ -z "$sanitizer" ]; then
    runs+=(--skip "$tool:compute-sanitizer not found on this machine")
    steps+=("$tool:0:0")
    continue
  fi
  if [ -n "$refused" ]; then
    runs+=(--skip "$tool:$refused")
    steps+=("$tool:0:0")
    continue
  fi
  # racecheck looks at shared memory within a block and is the slower tool: two dtypes suffice.
  extra=()
  case_args=()
  [ "$tool" = racecheck ] && extra=(--racecheck-report all) && case_args=(--quick)
  s_cmd=("$sanitizer" --tool "$tool" "${extra[@]}" --print-limit 100 --error-exitcode 99 node bench/sanitizer-case.mjs "${case_args[@]}")
  step "$tool" "$(limit 30 $([ $tool = memcheck ] && echo 45 || echo 15))" "$logs/sanitizer-$tool.log" "${s_cmd[@]}"
  runs+=(--run "$tool:$rc:${steps[-1]##*:}:$logs/sanitizer-$tool.log:${s_cmd[*]}")
  grep -E "SUMMARY|^\{\"ok\"" "$logs/sanitizer-$tool.log" | tail -n 2 >&2
  # A device that refuses the first tool refuses the second: say why once, skip it.
  refused=$(node bench/session-record.mjs sanitizer-refused "$logs/sanitizer-$tool.log")
done
node bench/session-record.mjs sanitizer --out "$stem-sanitizer.json" "${runs[@]}" \
  --command "compute-sanitizer --tool TOOL ... node bench/sanitizer-case.mjs, TOOL = memcheck, racecheck"
save "$stem-sanitizer.json"

# ---- 5. report ----------------------------------------------------------------------------------------
step_args=()
for s in "${steps[@]}"; do step_args+=(--step "$s"); done
bench_file=()
[ -f "$stem-bench.json" ] && bench_file=(--bench "$stem-bench.json")
echo >&2
node bench/session-record.mjs report --out-json "$stem-session.json" --out-md "$stem-session.md" \
  --tests "$stem-tests.json" --sanitizer "$stem-sanitizer.json" "${bench_file[@]}" "${peer_args[@]}" \
  "${step_args[@]}" --budget "$budget" --seconds "$(elapsed)" $([ $dry = 1 ] && echo --dry-run)
status=$?
save "$stem-session.json" "$stem-session.md"
echo "results: $stem-{tests,sanitizer,bench,session}.json, $stem-{bench,session}.md${OUT:+ (copied to \$OUT with the logs)}"
rm -rf "$logs"
exit "$status"
