#!/usr/bin/env bash
# Session 4, device run K: the prefill attention fetching the next key/value tile during this
# tile's work (device-bin/omni) against run I's kernels (device-bin/omni-prev); tests.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels gpu_audio_encoder gpu_model gpu_moe
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-8b"; do
    for bin in omni-prev omni omni-prev omni; do
        echo "== $bin $p" >> $D
        timeout 100 $B/$bin bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 32 --profile-prefill 500 >> $D 2>&1; echo "exit $?" >> $D
    done
done
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
AU=$OUT/audio.txt
for bin in omni-prev omni; do
    echo "== $bin" >> $AU
    timeout 100 $B/$bin bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
done
ls -la $OUT
