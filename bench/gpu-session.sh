#!/usr/bin/env bash
# The GPU session in one go, on the GPU host (a copy of the project with .gpu-bundle/):
#
#   bash .gpu-bundle/enter.sh bash bench/gpu-session.sh
#
#   1. the GPU test suite          npx vitest run test/gpu.test.ts
#   2. compute-sanitizer           memcheck and racecheck over bench/sanitizer-case.mjs
#   3. the benchmark               node bench/bench.mjs --device cuda (fewer repetitions), then a
#                                  quick CPU run (the CPU ratio on this host's cores)
#
# Writes bench/results/YYYY-MM-DD-<device>-{tests,sanitizer,bench}.json (+ the bench's .md and .svg,
# and the CPU run's files), copies them into $OUT when it is set (with the logs packed into
# gpu-session-logs.tar.gz: at most 8 files come back), and prints a short summary last.
# Every step has a time limit so that the whole stays within SESSION_BUDGET_S (default 480 s: a
# session gets 15 minutes of device time, start-up included, and a rerun must still fit).
#
# Environment:
#   SESSION_BUDGET_S   total seconds (default 480)
#   BENCH_ARGS         arguments of the GPU benchmark (default below)
#   SESSION_CPU_BENCH  0 skips the quick CPU benchmark
#   SANITIZER_TOOLS    default "memcheck racecheck" (synccheck, initcheck also work)
#   TESTS              default test/gpu.test.ts
# Exit status: 0 when the tests, the sanitizer runs and the benchmark's checks all passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
budget=${SESSION_BUDGET_S:-480}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
# limit WANTED RESERVE: WANTED seconds, or less so that RESERVE seconds remain for the later steps.
limit() {
  local want=$1 reserve=$2 left
  left=$(( budget - $(elapsed) - reserve ))
  [ "$left" -lt "$want" ] && want=$left
  [ "$want" -lt 20 ] && want=20
  echo "$want"
}
say() { echo "== gpu-session [$(elapsed) s]: $*" >&2; }

results=bench/results
mkdir -p "$results"
logs=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
day=$(date -u +%F)

gpu=1
if ! node -e "process.exit(require('selective-scan').cuda.isAvailable() ? 0 : 1)" 2>/dev/null; then
  gpu=0
  say "WARNING: cuda.isAvailable() is false ($(node -e "console.log(require('selective-scan').cuda.unavailableReason)")): the GPU steps will fail or be skipped"
fi
slug=$(node bench/device-info.mjs "$([ $gpu = 1 ] && echo cuda || echo cpu)" --field slug 2>/dev/null || echo unknown-device)
[ "$gpu" = 0 ] && slug=simulated-gpu  # no GPU: the harness runs its GPU code path on the CPU (a test of this script)
say "device: $(node bench/device-info.mjs "$([ $gpu = 1 ] && echo cuda || echo cpu)" --field name 2>/dev/null) ($slug), commit ${BUNDLE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,temperature.gpu,clocks.sm --format=csv >"$logs/nvidia-smi.txt" 2>&1

tests_json="$results/$day-$slug-tests.json"
sanitizer_json="$results/$day-$slug-sanitizer.json"
status=0

# ---- 1. the GPU tests ----------------------------------------------------------------------------
tests=${TESTS:-test/gpu.test.ts}
t_limit=$(limit 180 330)
say "tests: vitest run $tests (limit ${t_limit} s)"
t0=$(date +%s)
cmd="npx vitest run $tests --reporter=default --reporter=json --outputFile.json=$logs/vitest.json"
timeout -k 10 "$t_limit" $cmd >"$logs/tests.log" 2>&1
t_exit=$?
tail -n 15 "$logs/tests.log" >&2
node bench/session-record.mjs tests --out "$tests_json" --vitest-json "$logs/vitest.json" --exit "$t_exit" \
  --seconds "$(( $(date +%s) - t0 ))" --log "$logs/tests.log" --command "$cmd" || status=1
[ "$t_exit" = 0 ] || status=1

# ---- 2. compute-sanitizer --------------------------------------------------------------------------
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
runs=()
for tool in ${SANITIZER_TOOLS:-memcheck racecheck}; do
  s_limit=$(limit 120 240)
  log="$logs/sanitizer-$tool.log"
  if [ -z "$sanitizer" ] || [ "$gpu" = 0 ]; then
    say "sanitizer $tool: skipped (compute-sanitizer: ${sanitizer:-not found}; GPU: $gpu)"
    runs+=(--run "$tool:skipped:0:$log:")
    status=1
    continue
  fi
  say "sanitizer: $tool (limit ${s_limit} s)"
  t0=$(date +%s)
  extra=()
  case_args=()
  # racecheck looks at shared memory within a block: two dtypes are enough, and it is the slower tool.
  [ "$tool" = racecheck ] && { extra=(--racecheck-report all); case_args=(--quick); }
  s_cmd="compute-sanitizer --tool $tool ${extra[*]} --print-limit 100 --error-exitcode 99 node bench/sanitizer-case.mjs ${case_args[*]}"
  timeout -k 10 "$s_limit" "$sanitizer" --tool "$tool" "${extra[@]}" --print-limit 100 --error-exitcode 99 \
    node bench/sanitizer-case.mjs "${case_args[@]}" >"$log" 2>&1
  s_exit=$?
  grep -E "SUMMARY|^\{\"ok\"" "$log" | tail -n 3 >&2
  runs+=(--run "$tool:$s_exit:$(( $(date +%s) - t0 )):$log:$s_cmd")
done
node bench/session-record.mjs sanitizer --out "$sanitizer_json" \
  --command "compute-sanitizer --tool TOOL ... node bench/sanitizer-case.mjs, for TOOL in ${SANITIZER_TOOLS:-memcheck racecheck}" \
  "${runs[@]}" || status=1
node -e "process.exit(JSON.parse(require('fs').readFileSync('$sanitizer_json','utf8')).pass ? 0 : 1)" || status=1

# ---- 3. the benchmark -------------------------------------------------------------------------------
# Full shape set, fewer repetitions; PyTorch's sequential reference up to L=8192 (its loop is slow).
bench_args=${BENCH_ARGS:---device cuda --reps 10 --max-case-ms 1500 --torch-max-l 8192 --torch-reps 3}
[ "$gpu" = 0 ] && bench_args="--simulate-gpu --reps 3"
b_limit=$(limit 300 45)
bench_json="$results/$day-$slug-bench.json"
say "bench: node bench/bench.mjs $bench_args (limit ${b_limit} s)"
rm -f "$bench_json"
# --deadline-s: stop starting cases in time to write the results (timeout is the backstop).
timeout -k 15 "$b_limit" node bench/bench.mjs $bench_args --deadline-s $(( b_limit > 120 ? b_limit - 60 : b_limit / 2 )) \
  --json "$bench_json" >"$logs/bench.log" 2>"$logs/bench.err"
b_exit=$?
tail -n 5 "$logs/bench.err" >&2
[ "$b_exit" = 0 ] || status=1
[ -f "$bench_json" ] || bench_json=""

cpu_json=""
if [ "${SESSION_CPU_BENCH:-1}" != 0 ] && [ $(( budget - $(elapsed) )) -gt 50 ]; then
  c_limit=$(limit 90 5)
  cpu_json="$results/$day-$(node bench/device-info.mjs cpu --field slug)-bench.json"
  say "bench (CPU, quick): limit ${c_limit} s"
  rm -f "$cpu_json"
  timeout -k 10 "$c_limit" node bench/bench.mjs --device cpu --quick --deadline-s $(( c_limit * 2 / 3 )) \
    --json "$cpu_json" >"$logs/bench-cpu.log" 2>"$logs/bench-cpu.err"
  tail -n 2 "$logs/bench-cpu.err" >&2
  [ -f "$cpu_json" ] || cpu_json=""
fi

# ---- results, copies, summary ----------------------------------------------------------------------
summary_files=("$tests_json" "$sanitizer_json")
[ -n "$bench_json" ] && summary_files+=("$bench_json")
[ -n "$cpu_json" ] && [ "$cpu_json" != "$bench_json" ] && summary_files+=("$cpu_json")
node bench/session-record.mjs summary "${summary_files[@]}" >"$logs/summary.txt" 2>&1
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  for f in "$tests_json" "$sanitizer_json" "$bench_json" "${bench_json%.json}.svg" "${bench_json%.json}.md" "$cpu_json"; do
    [ -n "$f" ] && [ -f "$f" ] && cp "$f" "$OUT/"
  done
  [ -n "$cpu_json" ] && cp "${cpu_json%.json}.md" "${cpu_json%.json}.svg" "$logs/" 2>/dev/null
  tar -czf "$OUT/gpu-session-logs.tar.gz" -C "$logs" .
fi
echo
echo "== gpu-session summary ($(elapsed) s; $slug; commit ${BUNDLE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}) =="
cat "$logs/summary.txt"
echo "results: ${summary_files[*]}${OUT:+ (copied to \$OUT)}"
[ "$status" = 0 ] && echo "status: all passed" || echo "status: FAILURES (see above and the JSON files)"
rm -rf "$logs"
exit "$status"
