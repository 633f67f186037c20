#!/usr/bin/env bash
# Session 4, device run B: the audio encoder (flash windowed attention) and the latency from
# the end of speech to the first token, old binary against new; then the Q8_0 matvec with its
# row length read at run time (OMNI_Q8_FIXED_K=0) against the default pipeline constant, and
# moe_route's expert count at run time (OMNI_ROUTE_E=0). omni_thinker's CLI tests need the
# binary at target/release/omni (run A lacked it).
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
mkdir -p target/release && cp $B/omni target/release/omni
run_gpu_tests omni_thinker gpu_moe
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
AU=$OUT/audio.txt
for bin in omni-base omni; do
    echo "== $bin" >> $AU
    timeout 100 $B/$bin bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $AU 2>&1; echo "exit $?" >> $AU
done
L=$OUT/latency.txt
for bin in omni-base omni; do
    for s in 2 5; do
        echo "== $bin q8_0 secs $s" >> $L
        timeout 100 $B/$bin bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
    done
done
V=$OUT/fixed-k.txt
for p in "qwen3-8b --quant q8_0" "qwen3-omni-30b-a3b --quant q8_0"; do
    echo "== OMNI_Q8_FIXED_K=0 $p" >> $V
    OMNI_Q8_FIXED_K=0 timeout 100 $B/omni bench --synthetic $p $A --repeats 3 --prompt-len 64 --gen-len 128 >> $V 2>&1; echo "exit $?" >> $V
    echo "== default $p" >> $V
    timeout 100 $B/omni bench --synthetic $p $A --repeats 3 --prompt-len 64 --gen-len 128 >> $V 2>&1; echo "exit $?" >> $V
done
echo "== OMNI_ROUTE_E=0 qwen3-omni-30b-a3b --quant q8_0" >> $V
OMNI_ROUTE_E=0 timeout 100 $B/omni bench --synthetic qwen3-omni-30b-a3b --quant q8_0 $A --repeats 3 --prompt-len 64 --gen-len 128 >> $V 2>&1; echo "exit $?" >> $V
ls -la $OUT
