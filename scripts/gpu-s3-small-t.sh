#!/usr/bin/env bash
# Session 3, run 7: short prefill steps as matvecs over the tokens (dense + experts) against
# tiled matmuls (OMNI_SMALL_T=0) and thresholds 32 / 64; end of speech -> first token; the
# 64-token prefill profile; decode with the router on f32 activations.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels gpu_moe gpu_model
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
L=$OUT/latency.txt
for v in "X=1" "OMNI_SMALL_T=0"; do
    for s in 2 5; do
        echo "== $v secs $s" >> $L
        env $v timeout 200 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
    done
done
P=$OUT/prefill.txt
for v in "X=1" "OMNI_SMALL_T=0" "OMNI_SMALL_T=32"; do
    for m in qwen3-omni-30b-a3b qwen3-8b; do
        echo "== $m $v" >> $P
        env $v timeout 200 $B/omni bench --synthetic $m --quant q8_0 $A --repeats 3 --prompt-len 64 --gen-len 128 >> $P 2>&1; echo "exit $?" >> $P
    done
done
ls -la $OUT
