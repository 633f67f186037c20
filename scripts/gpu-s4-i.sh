#!/usr/bin/env bash
# Session 4, device run I: the prefill attention with the longest rows first and vec4 reads of scores and probabilities
# (device-bin/omni) against run H's binary
# (device-bin/omni-prev): 500-token prefill by kernel, the audio encoder, the tests.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels gpu_audio_encoder gpu_model gpu_moe
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-8b --quant q8_0" "qwen3-8b"; do
    for bin in omni-prev omni; do
        echo "== $bin $p" >> $D
        timeout 100 $B/$bin bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 --profile-prefill 500 >> $D 2>&1; echo "exit $?" >> $D
    done
done
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
AU=$OUT/audio.txt
for bin in omni-prev omni; do
    echo "== $bin" >> $AU
    timeout 100 $B/$bin bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
done
ls -la $OUT
