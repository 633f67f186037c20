#!/usr/bin/env bash
# Session 4, device run E: split-K for the audio encoder's short matmuls and register double buffering for 16-bit weights only
# (device-bin/omni) against the code before both (device-bin/omni-prev), on the audio
# encoder (mostly short-T matmuls), the 500-token prefill and decode; then the latency from the
# end of speech to the first token with the new binary.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_kernels gpu_moe gpu_audio_encoder gpu_model
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
AU=$OUT/audio.txt
for bin in omni-prev omni; do
    echo "== $bin" >> $AU
    timeout 100 $B/$bin bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
done
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-8b --quant q8_0" "qwen3-8b"; do
    for bin in omni-prev omni; do
        echo "== $bin $p" >> $D
        timeout 100 $B/$bin bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 >> $D 2>&1; echo "exit $?" >> $D
    done
done
L=$OUT/latency.txt
for s in 2 5; do
    echo "== omni q8_0 secs $s" >> $L
    timeout 100 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
done
ls -la $OUT
