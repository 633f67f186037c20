#!/usr/bin/env bash
# The session's device run (docs/benchmarks.md): GPU tests on the card, synthetic
# Qwen3-Omni-30B-A3B thinker decoder (Q8_0, BF16, tuning variants), the full-size audio
# encoder on clips of 5 s and 30 s, and the dense Qwen3 benchmarks as a regression check.
# Expects device-bin/ (omni + test binaries) and .gl/ carried; OUT set. Every step is timed out.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
mkdir -p target/release && cp $B/omni target/release/omni  # the CLI tests run the binary they were built with
run_gpu_tests gpu_kernels gpu_model gpu_moe gpu_audio_encoder omni_thinker
M=$OUT/omni-30b.txt
for q in q8_0 bf16; do
    Q=""; [ $q = q8_0 ] && Q="--quant q8_0"
    echo "== $q defaults" >> $M
    timeout 240 $B/omni bench --synthetic qwen3-omni-30b-a3b $Q $A --repeats 3 --prompt-len 500 --gen-len 128 >> $M 2>&1; echo "exit $?" >> $M
done
V=$OUT/variants.txt
IFS=';' read -ra VS <<< "${VARIANTS:-}"
for v in "${VS[@]}"; do
    echo "== q8_0 $v" >> $V
    env $v timeout 120 $B/omni bench --synthetic qwen3-omni-30b-a3b --quant q8_0 $A --repeats 1 --prompt-len 500 --gen-len 64 >> $V 2>&1
done
AU=$OUT/audio.txt
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
for be in gpu cpu; do
    echo "== $be" >> $AU
    timeout 150 $B/omni bench-audio --model /tmp/omni-audio --secs 5,30 --backend $be --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
done
D=$OUT/dense.txt
for p in qwen3-8b qwen3-0.6b; do
    for q in "" "--quant q8_0"; do
        echo "== $p $q" >> $D
        timeout 120 $B/omni bench --synthetic $p $q $A --repeats 3 --gen-len 128 >> $D 2>&1; echo "exit $?" >> $D
    done
done
ls -la $OUT
