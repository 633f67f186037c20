#!/usr/bin/env bash
# Session 3, run 5: the grouped expert matvec for short MoE prefill steps against the grouped
# matmul (OMNI_SMALL_T=0): kernel tests on the card, end of speech -> first token
# (bench-latency, full-size encoder + synthetic Qwen3-Omni-30B-A3B Q8_0) and 64-token prefill.
# Expects device-bin/ and .gl/ carried; OUT set.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels gpu_moe
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
L=$OUT/latency.txt
for v in "X=1" "OMNI_SMALL_T=0"; do
    for s in 2 5; do
        echo "== $v secs $s" >> $L
        env $v timeout 200 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
    done
done
P=$OUT/prefill.txt
for v in "X=1" "OMNI_SMALL_T=0"; do
    echo "== $v" >> $P
    env $v timeout 200 $B/omni bench --synthetic qwen3-omni-30b-a3b --quant q8_0 --backend gpu --adapter NVIDIA --repeats 3 --prompt-len 64 --gen-len 32 >> $P 2>&1; echo "exit $?" >> $P
done
ls -la $OUT
