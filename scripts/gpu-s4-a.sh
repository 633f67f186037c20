#!/usr/bin/env bash
# Session 4, device run A: the GPU tests on the card with the latency-lean attention kernels,
# then decode / prefill benchmarks of the session-3 binary (device-bin/omni-base, commit
# a53ae52's kernels) against this session's (device-bin/omni) on the same card.
# Expects device-bin/ and .gl/ carried; OUT set. Every step is timed out.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels gpu_model gpu_moe gpu_audio_encoder omni_thinker
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-8b --quant q8_0" "qwen3-8b"; do
    for bin in omni-base omni; do
        echo "== $bin $p" >> $D
        timeout 150 $B/$bin bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 >> $D 2>&1; echo "exit $?" >> $D
    done
done
ls -la $OUT
