#!/usr/bin/env bash
# Session 4, device run H: 32-token tiles for the Q8_0 grouped expert matmul (default) against
# 64 (OMNI_GATHER_TILE=64), 500-token prefill by kernel; gpu_moe on the card.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests gpu_moe
D=$OUT/bench.txt
for v in "OMNI_GATHER_TILE=64" "X=1"; do
    for p in "qwen3-omni-30b-a3b --quant q8_0"; do
        echo "== $v $p" >> $D
        env $v timeout 100 $B/omni bench --synthetic $p $A --repeats 3 --prompt-len 500 --gen-len 128 --profile-prefill 500 >> $D 2>&1; echo "exit $?" >> $D
    done
done
ls -la $OUT
