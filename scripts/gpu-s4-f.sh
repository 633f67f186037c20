#!/usr/bin/env bash
# Session 4, device run F: split-K for the thinker's prefill matmuls (device-bin/omni) against
# run E's binary (device-bin/omni-prev): 500-token prefill and the 64-token step by kernel.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
D=$OUT/bench.txt
for p in "qwen3-omni-30b-a3b --quant q8_0" "qwen3-omni-30b-a3b" "qwen3-8b"; do
    for bin in omni-prev omni; do
        echo "== $bin $p" >> $D
        timeout 100 $B/$bin bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 64 >> $D 2>&1; echo "exit $?" >> $D
    done
done
ls -la $OUT
