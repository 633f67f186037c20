#!/usr/bin/env bash
# Session 3, run 8: the MoE router kept in BF16 (exact routing) — decode and latency at
# Qwen3-Omni-30B-A3B Q8_0 with the final kernels.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
D=$OUT/bench.txt
echo "== qwen3-omni-30b-a3b q8_0" >> $D
timeout 200 $B/omni bench --synthetic qwen3-omni-30b-a3b --quant q8_0 --backend gpu --adapter NVIDIA --repeats 3 --prompt-len 500 --gen-len 128 >> $D 2>&1; echo "exit $?" >> $D
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
L=$OUT/latency.txt
for s in 2 5; do
    echo "== secs $s" >> $L
    timeout 200 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
done
ls -la $OUT
