#!/usr/bin/env bash
# Session 4, device run N (final binary): decode / prefill benchmarks with the lm_head matvec's
# own bandwidth, the end of speech -> first token latency, the audio encoder.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
mkdir -p target/release && cp $B/omni target/release/omni
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-8b --quant q8_0" "qwen3-8b"; do
    echo "== $p" >> $D
    timeout 100 $B/omni bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 >> $D 2>&1; echo "exit $?" >> $D
done
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
L=$OUT/latency.txt
for s in 2 5; do
    echo "== q8_0 secs $s" >> $L
    timeout 100 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
done
AU=$OUT/audio.txt
timeout 100 $B/omni bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
ls -la $OUT
