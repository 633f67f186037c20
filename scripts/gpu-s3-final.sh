#!/usr/bin/env bash
# Session 3's closing device run: the GPU tests on the card, the daemon's latency from the end
# of speech to the first token (full-size audio encoder + synthetic Qwen3-Omni-30B-A3B thinker),
# the audio front end, and the decode benchmarks with the final kernels.
# Expects device-bin/ (omni + test binaries) and .gl/ carried; OUT set. Every step is timed out.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
mkdir -p target/release && cp $B/omni target/release/omni
run_gpu_tests gpu_kernels gpu_model gpu_moe gpu_audio_encoder omni_thinker
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
L=$OUT/latency.txt
for q in "--quant q8_0" ""; do
    for s in 2 5; do
        echo "== $q secs $s" >> $L
        timeout 200 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b $q --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
    done
done
AU=$OUT/audio.txt
timeout 150 $B/omni bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-omni-30b-a3b" "qwen3-8b --quant q8_0" "qwen3-8b"; do
    echo "== $p" >> $D
    timeout 200 $B/omni bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 >> $D 2>&1; echo "exit $?" >> $D
done
ls -la $OUT
