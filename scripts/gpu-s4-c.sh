#!/usr/bin/env bash
# Session 4, device run C: the audio encoder by kernel (bench-audio's new profile); the Q8_0
# matvec's prefetch of the first weight blocks before the x prologue (OMNI_Q8_PREFETCH=0
# against the default); a 500-token prefill as matvecs over the tokens (OMNI_SMALL_T=512)
# against the tiled matmuls.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
AU=$OUT/audio.txt
timeout 100 $B/omni bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
V=$OUT/variants.txt
for p in "qwen3-8b --quant q8_0" "qwen3-omni-30b-a3b --quant q8_0"; do
    for v in "X=1" "OMNI_Q8_PREFETCH=0" "OMNI_SMALL_T=512"; do
        echo "== $v $p" >> $V
        env $v timeout 100 $B/omni bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 >> $V 2>&1; echo "exit $?" >> $V
    done
done
ls -la $OUT
