#!/usr/bin/env bash
# Session 3, run 6: where a short MoE prefill step's time goes (64-token prefill profile of
# synthetic Qwen3-Omni-30B-A3B Q8_0 and BF16), and the latency bench repeated for its spread.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
P=$OUT/prefill-profile.txt
for q in "--quant q8_0" ""; do
    echo "== $q" >> $P
    timeout 200 $B/omni bench --synthetic qwen3-omni-30b-a3b $q --backend gpu --adapter NVIDIA --repeats 1 --prompt-len 64 --gen-len 32 >> $P 2>&1; echo "exit $?" >> $P
done
timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
L=$OUT/latency.txt
for i in 1 2 3; do
    echo "== secs 5 try $i" >> $L
    timeout 200 $B/omni bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs 5 --repeats 5 --adapter NVIDIA >> $L 2>&1; echo "exit $?" >> $L
done
ls -la $OUT
