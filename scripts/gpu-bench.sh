#!/usr/bin/env bash
# The GPU measurement run (docs/benchmarks.md): on a machine with a real GPU, from the repo
# root, with release binaries in device-bin/ (omni, gpu_kernels, gpu_model test binaries):
#   adapter info, synthetic Qwen3-0.6B and Qwen3-8B (BF16, written to /tmp) benchmarked on the
#   GPU engine, then the GPU tests on that adapter. Every step has a time limit so one stuck
#   kernel cannot eat the whole lease. Results go to $OUT (default: ./gpu-out).
set -uo pipefail
OUT="${OUT:-gpu-out}"; mkdir -p "$OUT"
B=device-bin
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
ADAPTER="${ADAPTER:-NVIDIA}"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; timeout 30 "$B/omni" devices; } > "$OUT/devices.txt" 2>&1
for preset in ${PRESETS:-qwen3-0.6b qwen3-8b}; do
    timeout 120 "$B/omni" synth --preset "$preset" --out "/tmp/$preset" > /dev/null 2>&1 || true
    timeout "${BENCH_TIMEOUT:-150}" "$B/omni" bench --model "/tmp/$preset" --backend gpu --adapter "$ADAPTER" ${BENCH_ARGS:-} > "$OUT/bench-$preset.txt" 2>&1
    echo "exit $?" >> "$OUT/bench-$preset.txt"
done
# The test binaries find their fixtures through the path they were built in.
[ -e /work/main/tests ] || { mkdir -p /work && ln -sfn "$PWD" /work/main; }
for t in gpu_kernels gpu_model; do
    OMNI_TEST_ADAPTER="$ADAPTER" timeout "${TEST_TIMEOUT:-90}" "$B/$t" --test-threads=1 > "$OUT/tests-$t.txt" 2>&1
    echo "exit $?" >> "$OUT/tests-$t.txt"
done
